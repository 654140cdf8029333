// Runs a wasm32-wasip1 program (filter/core/examples/v8_cost.rs) in Node's V8.
// The filter's proxy-wasm imports are stubbed: the program never calls them (its host
// answers from memory); they only have to exist for the module to instantiate.
import { readFile } from 'node:fs/promises';
import { WASI } from 'node:wasi';

const wasi = new WASI({ version: 'preview1', args: [], env: {} });
const module = await WebAssembly.compile(await readFile(process.argv[2]));
const imports = wasi.getImportObject();
imports.env = {};
for (const entry of WebAssembly.Module.imports(module)) {
  if (entry.module === 'env') imports.env[entry.name] = () => 0;
}
const instance = await WebAssembly.instantiate(module, imports);
// The filter exports `_initialize` (a reactor, as proxy-wasm wants); run `_start` as a
// command with only what WASI needs.
wasi.start({ exports: { memory: instance.exports.memory, _start: instance.exports._start } });
