// npm install hook: builds the cuda backend's addon where the CUDA toolkit with cuBLAS and NCCL
// headers is present, and otherwise says why it skipped and succeeds, so that `npm ci` works on
// any machine. (nvcc alone is not enough: the CPU machines here have nvcc and cudart only.)
// The backend then reports itself unavailable with the reason (see backend-cuda/index.ts).
// TSGPT_SKIP_CUDA_BUILD=1 skips the build; `npm run build:cuda` builds by hand.
import { existsSync } from 'node:fs';
import { spawnSync } from 'node:child_process';
import { join } from 'node:path';

const cudaHome = process.env.CUDA_HOME || process.env.CUDA_PATH || '/usr/local/cuda';
const ncclDirs = [process.env.NCCL_HOME && join(process.env.NCCL_HOME, 'include'), join(cudaHome, 'include'),
  '/usr/include', '/usr/local/include'].filter(Boolean);

function skip(reason) {
  console.log(`backend-cuda: native build skipped (${reason}); the 'cuda' backend will report itself unavailable.`);
  process.exit(0);
}

if (process.env.TSGPT_SKIP_CUDA_BUILD === '1') skip('TSGPT_SKIP_CUDA_BUILD=1');
if (!existsSync(join(cudaHome, 'include', 'cublasLt.h'))) skip(`no cuBLASLt header under ${cudaHome}/include`);
if (!ncclDirs.some(d => existsSync(join(d, 'nccl.h')))) skip(`no nccl.h in ${ncclDirs.join(', ')}`);
if (spawnSync('cmake', ['--version']).status !== 0) skip('cmake not found');

console.log('backend-cuda: CUDA toolkit with cuBLAS and NCCL found; building the addon (npm run build:cuda)');
const r = spawnSync('npm', ['run', 'build:cuda'], { stdio: 'inherit' });
if (r.status !== 0) {
  // Keep the install usable (CPU backends still work); say loudly what failed and how to retry.
  console.error('backend-cuda: the native build FAILED (see above); the cuda backend is unavailable until `npm run build:cuda` succeeds.');
}
