import { checkDtype } from '../backend.ts';
import { DTYPE } from '../device.ts';
import type { CudaKernel } from './types.ts';

// Same element count and step rules as the CPU backend's rangeImpl; values are start + i·step.
export const rangeConfig: CudaKernel = {
  kernelName: 'Range',
  kernelFunc: ({ backend, attrs }) => {
    const start = attrs.start as number, stop = attrs.stop as number;
    let step = attrs.step as number;
    const dtype = checkDtype(attrs.dtype as 'float32' | 'int32', 'Range');
    const empty = start === stop || (start < stop && step < 0) || (stop < start && step > 1);
    const n = empty ? 0 : Math.abs(Math.ceil((stop - start) / step));
    if (stop < start && step === 1) step = -1;
    const out = backend.makeOutput([n], dtype);
    backend.device.range(DTYPE[dtype], backend.ptr(out), n, start, step);
    return out;
  },
};
