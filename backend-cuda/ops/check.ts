// The input and attribute checks every fused op's kernels start with: a wrong call (a missing input, a wrong
// dtype, a bad attribute) is an Error naming the kernel and the input, before anything reaches the device.
// register_all_kernels.ts adds the kernel's input shapes to the message.
import type { DataType, NamedAttrMap, NamedTensorInfoMap, TensorInfo } from '@tensorflow/tfjs-core';

export const describe = (t: TensorInfo) => `${t.dtype}[${t.shape}]`;

/** The input `name`, present and of `dtype`. */
export function input(kernel: string, inputs: NamedTensorInfoMap, name: string, dtype: DataType = 'float32'): TensorInfo {
  const t = inputs[name] as TensorInfo | undefined;
  if (t == null) throw new Error(`${kernel}: input ${name} is missing`);
  if (t.dtype !== dtype) throw new Error(`${kernel}: ${name} must be ${dtype}, got ${describe(t)}`);
  return t;
}

/** The inputs `names`, each present and float32, all of the first one's shape. */
export function sameShapeFloat32(kernel: string, inputs: NamedTensorInfoMap, names: string[]): TensorInfo[] {
  const ts = names.map(name => input(kernel, inputs, name));
  for (let i = 1; i < ts.length; i++) {
    if (ts[i].shape.join() !== ts[0].shape.join()) {
      throw new Error(`${kernel}: ${names[i]} [${ts[i].shape}] and ${names[0]} [${ts[0].shape}] differ in shape`);
    }
  }
  return ts;
}

/** The attribute `name`: a finite number. */
export function numberAttr(kernel: string, attrs: NamedAttrMap, name: string): number {
  const a = attrs[name];
  if (typeof a !== 'number' || !Number.isFinite(a)) throw new Error(`${kernel}: attr ${name} must be a finite number, got ${String(a)}`);
  return a;
}

/** The attribute `name`: a boolean. */
export function booleanAttr(kernel: string, attrs: NamedAttrMap, name: string): boolean {
  const a = attrs[name];
  if (typeof a !== 'boolean') throw new Error(`${kernel}: attr ${name} must be a boolean, got ${String(a)}`);
  return a;
}

/** The attribute `name`: a positive integer. */
export function positiveIntAttr(kernel: string, attrs: NamedAttrMap, name: string): number {
  const a = attrs[name];
  if (typeof a !== 'number' || !Number.isInteger(a) || a < 1) throw new Error(`${kernel}: attr ${name} must be a positive integer, got ${String(a)}`);
  return a;
}
