// Builds a Node-free benchmark (bench/*_native.cu) and the kernel files it calls for the CPU, through the SIMT emulator
// (simt.h), so that the kernels' logic runs against the benchmark's float64 reference where there is no GPU (CI). The
// sources are copied, not changed in place: in the copies each launch `k<<<blocks, threads, shared, stream>>>(args)`
// becomes simt::launch(...), each `extern __shared__` array points at the emulator's buffer, each other __shared__
// array is a `static` that the block registers (simt::sharedStatic: its bytes counted, NaN until written), and
// async_copy.cuh is test/simt's. A C++ compiler (g++) and the CUDA toolkit's headers are all it needs (no GPU, no cudart).
import { execFile, execFileSync } from 'node:child_process';
import { copyFileSync, existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';

const root = fileURLToPath(new URL('../..', import.meta.url));
const run = promisify(execFile);

/** The CUDA toolkit's include folder (beside nvcc, or /usr/local/cuda's), or null. */
export function cudaInclude(): string | null {
  const candidates = [process.env.CUDA_HOME, ...(process.env.PATH ?? '').split(':').filter((p) => existsSync(join(p, 'nvcc'))).map((p) => dirname(p)), '/usr/local/cuda']
    .filter((p): p is string => !!p).map((p) => join(p, 'include'));
  return candidates.find((p) => existsSync(join(p, 'cuda_runtime.h'))) ?? null;
}

/** Why the emulated kernels cannot be built here, or null. */
export async function unavailable(): Promise<string | null> {
  if (!cudaInclude()) return 'no CUDA headers (cuda_runtime.h: set CUDA_HOME or put nvcc on PATH)';
  try {
    await run('g++', ['--version']);
    return null;
  } catch {
    return 'no g++';
  }
}

/** Whether g++ links with AddressSanitizer here (its runtime library is a separate package on some systems). */
export async function sanitizerAvailable(): Promise<boolean> {
  const dir = mkdtempSync(join(tmpdir(), 'simt-asan-'));
  writeFileSync(join(dir, 'probe.cpp'), 'int main() { return 0; }\n');
  try {
    await run('g++', ['-fsanitize=address', join(dir, 'probe.cpp'), '-o', join(dir, 'probe')]);
    return true;
  } catch {
    return false;
  }
}

/** The end of the balanced bracket group that opens at s[open] ('(' … ')'). */
function closing(s: string, open: number): number {
  let depth = 0;
  for (let i = open; i < s.length; i++) {
    if ('([{'.includes(s[i])) depth++;
    else if (')]}'.includes(s[i]) && --depth === 0) return i;
  }
  throw new Error(`simt: unbalanced brackets from offset ${open}`);
}

/** s's top-level comma-separated parts. */
function topLevelParts(s: string): string[] {
  const parts: string[] = [];
  let depth = 0, start = 0;
  for (let i = 0; i < s.length; i++) {
    if ('([{'.includes(s[i])) depth++;
    else if (')]}'.includes(s[i])) depth--;
    else if (s[i] === ',' && depth === 0) {
      parts.push(s.slice(start, i));
      start = i + 1;
    }
  }
  return [...parts, s.slice(start)];
}

/** A kernel source with its launches and shared arrays made the emulator's. */
export function emulated(source: string): string {
  let out = '', at = 0;
  for (let open = source.indexOf('<<<'); open >= 0; open = source.indexOf('<<<', at)) {
    // the kernel: the name (and template arguments) just before <<<
    let start = open, angle = 0;
    while (start > 0) {
      const c = source[start - 1];
      if (c === '>') angle++;
      else if (c === '<') angle--;
      else if (angle === 0 && !/[\w:]/.test(c)) break;
      start--;
    }
    const close = source.indexOf('>>>', open), argsOpen = close + 3;
    if (source[argsOpen] !== '(') throw new Error(`simt: a launch without arguments at offset ${open}`);
    const argsClose = closing(source, argsOpen);
    const [blocks, threads, shared = '0'] = topLevelParts(source.slice(open + 3, close));
    // a lambda: a kernel template whose arguments are deduced at the call has no address before it
    out += `${source.slice(at, start)}::simt::launch([=](auto... a) { ${source.slice(start, open)}(a...); }, dim3(${blocks}), dim3(${threads}), `
      + `size_t(${shared}), ${source.slice(argsOpen + 1, argsClose)})`;
    at = argsClose + 1;
  }
  return (out + source.slice(at))
    .replace(/extern __shared__[^;\n]*?\b(\w+)\[\];/g, 'unsigned char* $1 = ::simt::dynamicShared;')
    .replace(/__shared__[ \t]+([^;\n]*);/g, (_, declaration: string) => {  // one line each (a comment's words are not)
      // `static`, and each declarator (the name before its first `[`, or the last name) registered with the block
      const names = topLevelParts(declaration).map((part) => (/(\w+)\s*\[/.exec(part) ?? /(\w+)\s*$/.exec(part))![1]);
      return `static ${declaration};${names.map((n) => ` ::simt::sharedStatic(&${n}, sizeof(${n}));`).join('')}`;
    });
}

/** Copies backend-cuda's native and ops sources and bench/'s shared header into a new folder (the headers emulated; the
 * kernel files are when they are built). */
function copySources(): string {
  const dir = mkdtempSync(join(tmpdir(), 'simt-'));
  const copyFolder = (rel: string) => {
    mkdirSync(join(dir, rel), { recursive: true });
    for (const name of readdirSync(join(root, rel), { withFileTypes: true })) {
      const from = join(root, rel, name.name), to = join(dir, rel, name.name);
      if (name.isDirectory()) copyFolder(join(rel, name.name));
      else if (/\.(cu|cuh|h)$/.test(name.name)) writeFileSync(to, name.name.endsWith('.cuh') ? emulated(readFileSync(from, 'utf8')) : readFileSync(from));
    }
  };
  copyFolder('backend-cuda/native');
  copyFolder('backend-cuda/ops');
  copyFileSync(join(root, 'test/simt/async_copy.cuh'), join(dir, 'backend-cuda/native/async_copy.cuh'));
  mkdirSync(join(dir, 'bench'));
  copyFileSync(join(root, 'bench/native_bench.h'), join(dir, 'bench/native_bench.h'));
  return dir;
}

/**
 * Benchmarks (paths under bench/) built with kernel files (paths under backend-cuda/) for the CPU, from one copy of the
 * sources, each kernel file compiled once for all of them; with `sanitize`, under AddressSanitizer (a read or write
 * outside an allocation stops the run). Unoptimised: the templates compile in a fifth of -O1's time, and the runs are
 * small.
 */
export class CpuBuild {
  private readonly dir = copySources();
  private readonly objects = new Map<string, Promise<string>>();
  private readonly flags: string[];
  constructor(private readonly sanitize = false) {
    const include = cudaInclude();
    if (!include) throw new Error('simt: no CUDA headers');
    this.flags = ['-std=c++17', '-O0', '-w', '-include', join(root, 'test/simt/simt.h'), '-I', include,
      ...(sanitize ? ['-fsanitize=address', '-fno-omit-frame-pointer'] : [])];
  }
  /** source (a path under the repository) compiled; `text`: its text where not the file's, copied beside it as `as`. */
  private object(source: string, text?: string, as = source): Promise<string> {
    let object = this.objects.get(as);
    if (!object) {
      const path = join(this.dir, `${this.objects.size}.o`);
      mkdirSync(dirname(join(this.dir, as)), { recursive: true });
      writeFileSync(join(this.dir, as), emulated(text ?? readFileSync(join(root, source), 'utf8')));
      object = run('g++', [...this.flags, '-x', 'c++', '-c', join(this.dir, as), '-o', path], { maxBuffer: 1 << 24 }).then(() => path);
      this.objects.set(as, object);
    }
    return object;
  }
  /**
   * The benchmark `bench` (a path under the repository, bench/*_native.cu or a test's) linked with `kernels`: the binary's
   * path. With `revision` (git's), the kernel files are as they were there (`git show`), beside today's (their includes
   * resolve alike), and the benchmark and the headers as they are now.
   */
  async binary(bench: string, kernels: string[], revision?: string): Promise<string> {
    const tag = revision ? `_at_${revision.replace(/\W/g, '_')}` : '';
    const kernelObjects = kernels.map((k) => join('backend-cuda', k)).map((source) => {
      if (!revision) return this.object(source);
      const text = execFileSync('git', ['show', `${revision}:${source}`], { cwd: root, encoding: 'utf8', maxBuffer: 1 << 26, stdio: ['ignore', 'pipe', 'pipe'] });
      return this.object(source, text, source.replace(/(\.\w+)$/, `${tag}$1`));
    });
    const objects = await Promise.all([this.object(bench), ...kernelObjects]);
    const binary = join(this.dir, `${bench.replace(/\W/g, '_')}${tag}.bin`);
    await run('g++', [...(this.sanitize ? ['-fsanitize=address'] : []), ...objects, '-o', binary]);
    return binary;
  }
}
