// The kernel launchers as TypeScript calls them and as the addon binds them: each TSGPT_LAUNCHER's argument names
// (native/launchers.h) and its C++ function's parameter types against the method the TypeScript side declares for it
// (CoreDevice in backend-cuda/device.ts, or an op's *Native interface in ops/<op>/kernel.ts). The TypeScript calls
// and the host reference device (host.ts) follow those declarations, so an argument out of order or of another kind
// in a launcher would otherwise show only on a GPU: as a JS Error from the addon's argument checks, or, where two
// numbers trade places, as wrong results. Read from the sources, without nvcc or a GPU.
import assert from 'node:assert/strict';
import { readdirSync, readFileSync } from 'node:fs';
import { join, relative } from 'node:path';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';
import ts from 'typescript';

const REPO = fileURLToPath(new URL('..', import.meta.url)), BACKEND = join(REPO, 'backend-cuda');
const opFolders = readdirSync(join(BACKEND, 'ops'), { withFileTypes: true }).filter(d => d.isDirectory()).map(d => join(BACKEND, 'ops', d.name));
const filesIn = (dirs: string[], suffix: string) => dirs.flatMap(d => readdirSync(d).filter(f => f.endsWith(suffix)).map(f => join(d, f)));

interface Source { path: string; text: string }
const read = (path: string): Source => ({ path: relative(REPO, path), text: readFileSync(path, 'utf8') });

/** An argument's kind as JavaScript passes it: the addon reads bool as a boolean, NumberTable as a Float64Array,
 * and pointers, integers and floats as numbers (LaunchArgs). */
type Kind = 'number' | 'boolean' | 'Float64Array';
function cxxKind(param: string): Kind {
  if (param.includes('*')) return 'number';
  if (/^(const\s+)?bool\b/.test(param)) return 'boolean';
  if (/\bNumberTable\b/.test(param)) return 'Float64Array';
  return 'number';
}

interface Signature { names: string[]; kinds: string[]; where: string }

/** Each registered launcher: its JavaScript name, argument names and kinds (its C++ function's parameters after the
 * stream). */
function launchersOf(sources: Source[]): { launchers: Map<string, Signature>; problems: string[] } {
  const launchers = new Map<string, Signature>(), problems: string[] = [];
  for (const { path, text } of sources) {
    for (const m of text.matchAll(/^TSGPT_LAUNCHER\(\s*(\w+)\s*,\s*(\w+)((?:\s*,\s*"[^"]*")*)\s*\);/gm)) {
      const [, name, fn, list] = m, where = `${path}: TSGPT_LAUNCHER(${name}, ${fn}, …)`;
      const definition = new RegExp(`cudaError_t\\s+${fn}\\s*\\(([^)]*)\\)\\s*\\{`).exec(text);
      if (!definition) { problems.push(`${where}: no definition of ${fn} in that file`); continue; }
      const params = definition[1].split(',').map(p => p.trim().replace(/\s+/g, ' '));
      if (!/^cudaStream_t\b/.test(params[0] ?? '')) { problems.push(`${where}: ${fn}'s first parameter is not the stream`); continue; }
      if (launchers.has(name)) problems.push(`${where}: ${name} is registered twice`);
      launchers.set(name, { names: [...list.matchAll(/"([^"]*)"/g)].map(x => x[1]!), kinds: params.slice(1).map(cxxKind), where });
    }
  }
  return { launchers, problems };
}

/** Each method of the interfaces declared in these TypeScript files: its parameters' names and types as written. */
function methodsOf(sources: Source[]): Map<string, Signature & { iface: string }> {
  const methods = new Map<string, Signature & { iface: string }>();
  for (const { path, text } of sources) {
    const file = ts.createSourceFile(path, text, ts.ScriptTarget.Latest, true);
    file.forEachChild(node => {
      if (!ts.isInterfaceDeclaration(node)) return;
      for (const member of node.members) {
        if (!ts.isMethodSignature(member)) continue;
        const name = member.name.getText(file);
        methods.set(name, {
          iface: node.name.text, where: `${path}: ${node.name.text}.${name}`,
          names: member.parameters.map(p => p.name.getText(file)), kinds: member.parameters.map(p => p.type?.getText(file) ?? 'untyped'),
        });
      }
    });
  }
  return methods;
}

/** Where the launchers and the TypeScript declarations disagree, a line each (none: they agree). */
export function launcherMismatches(cxx: Source[], typescript: Source[]): string[] {
  const { launchers, problems } = launchersOf(cxx), methods = methodsOf(typescript);
  for (const [name, launcher] of launchers) {
    const method = methods.get(name);
    if (!method) { problems.push(`${launcher.where}: no TypeScript declaration of ${name}`); continue; }
    if (method.names.join() !== launcher.names.join()) {
      problems.push(`${name}: arguments (${launcher.names.join(', ')}) in ${launcher.where}, (${method.names.join(', ')}) in ${method.where}`);
    } else if (method.kinds.join() !== launcher.kinds.join()) {
      const at = method.kinds.findIndex((k, i) => k !== launcher.kinds[i]);
      problems.push(`${name}: argument ${at + 1} (${method.names[at]}) is ${launcher.kinds[at] ?? 'missing'} in ${launcher.where}, ${method.kinds[at]} in ${method.where}`);
    }
  }
  // an op's launchers are its *Native interface, all of it (CoreDevice also declares the addon's own bindings: alloc, …)
  for (const [name, method] of methods) {
    if (method.iface.endsWith('Native') && !launchers.has(name)) problems.push(`${method.where}: no TSGPT_LAUNCHER(${name}, …) registers it`);
  }
  return problems;
}

const cxxSources = () => filesIn([join(BACKEND, 'native'), ...opFolders], '.cu').map(read);
const tsSources = () => [join(BACKEND, 'device.ts'), ...filesIn(opFolders, 'kernel.ts')].map(read);

test('every kernel launcher takes the arguments, in the order and of the kinds, that TypeScript declares for it', () => {
  const cxx = cxxSources();
  assert.ok(launchersOf(cxx).launchers.size >= 40, 'the launchers were found');
  assert.deepEqual(launcherMismatches(cxx, tsSources()), []);
});

test('the check names a launcher whose arguments trade places, change kind, or lack a declaration', () => {
  const cxx = cxxSources(), typescript = tsSources();
  const swap = (from: string, to: string) => cxx.map(s => ({ ...s, text: s.text.replace(from, to) }));
  // two arguments of Canon's gradient swapped in the registration only
  const swapped = swap('"dw", "dwAcc"', '"dwAcc", "dw"');
  assert.notDeepEqual(swapped, cxx, 'the mutation applies');
  assert.match(launcherMismatches(swapped, typescript).join('\n'), /^canonAttentionInputsGrad: arguments \(.*dwAcc, dw,/m);
  // a bool where TypeScript passes a number
  const retyped = swap('float* delta, int64_t rows', 'float* delta, bool rows');
  assert.notDeepEqual(retyped, cxx, 'the mutation applies');
  assert.match(launcherMismatches(retyped, typescript).join('\n'), /^headGateGrad: argument 10 \(rows\) is boolean in .*head_gate\.cu.*, number in /m);
  // a TypeScript method without its launcher, and a launcher without its method
  const renamed = swap('TSGPT_LAUNCHER(headGate,', 'TSGPT_LAUNCHER(headGates,');
  const problems = launcherMismatches(renamed, typescript).join('\n');
  assert.match(problems, /head_gate\.cu: TSGPT_LAUNCHER\(headGates, .*no TypeScript declaration of headGates/);
  assert.match(problems, /HeadGateNative\.headGate: no TSGPT_LAUNCHER\(headGate, …\) registers it/);
});
