// Runs the verification benchmark in V8 (node's WASI preview1: the engine Envoy embeds) and
// natively, and prints bench/results/verify.md's table to stdout.
//
//   node bench/verify/run.mjs BENCH.wasm NATIVE_BINARY [BUDGET_MS [ONLY]]
//
// ONLY (optional) keeps the cases whose name contains it, in both runs.
//
// The Wasm binary links tokenguard, whose proxy-wasm layer imports Envoy's `env.proxy_*`
// host functions and exports `_initialize`; none of it runs here: the imports are stubs
// and only `_start` is handed to WASI.
import { readFileSync, openSync, closeSync, mkdtempSync, rmSync } from 'node:fs';
import { execFileSync } from 'node:child_process';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { WASI } from 'node:wasi';

// ONLY (optional): run only the cases whose name contains it, for a quick partial look.
const [wasmPath, nativePath, budget = '800', only = ''] = process.argv.slice(2);
if (!wasmPath || !nativePath) {
  console.error('usage: node run.mjs BENCH.wasm NATIVE_BINARY [BUDGET_MS [ONLY]]');
  process.exit(2);
}

function parse(text) {
  const rows = new Map();
  for (const line of text.split('\n')) {
    if (!line || line.startsWith('#')) continue;
    const [name, sig, validate, first] = line.split('\t');
    rows.set(name, { sig, validate, first });
  }
  return rows;
}

async function runWasm() {
  const dir = mkdtempSync(join(tmpdir(), 'tg-bench-'));
  const out = join(dir, 'out.tsv');
  const fd = openSync(out, 'w');
  try {
    const wasi = new WASI({ version: 'preview1', args: ['bench', budget, only], env: {}, stdout: fd, returnOnExit: true });
    const module = await WebAssembly.compile(readFileSync(wasmPath));
    const env = {};
    for (const imp of WebAssembly.Module.imports(module)) {
      if (imp.module === 'env' && imp.kind === 'function') env[imp.name] = () => 0;
    }
    const instance = await WebAssembly.instantiate(module, { wasi_snapshot_preview1: wasi.wasiImport, env });
    const { memory, _start } = instance.exports;
    const code = wasi.start({ exports: { memory, _start } });
    if (code !== 0) throw new Error(`wasm benchmark exited with ${code}`);
  } finally {
    closeSync(fd);
  }
  const text = readFileSync(out, 'utf8');
  rmSync(dir, { recursive: true, force: true });
  return text;
}

const v8 = parse(await runWasm());
const native = parse(execFileSync(nativePath, [budget, only], { encoding: 'utf8' }));

const lines = [
  '# Signature verification cost per token',
  '',
  `Written by \`make bench-verify\` (bench/verify) on ${new Date().toISOString().slice(0, 10)}, node ${process.version} (V8 ${process.versions.v8}).`,
  'Microseconds per operation, median of 7 timed rounds after a warm-up; one 2048-bit RSA key',
  '(e = 65537), P-256, P-384 and Ed25519 keys, the demo issuer\'s. "signature" is',
  '`jwks::Verifier::verify` (or the named crate); "validate" is `verify::validate`, the whole',
  'first-sight check (decode, key lookup, signature, claims). "first call" is the very first',
  'signature check, cold (in V8 it includes compiling the code on first use). The machine is',
  'shared: figures move by 10-20% between runs. The "key table build" rows are what',
  'tokenguard::ecdsa and tokenguard::es384 spend per P-256 or P-384 key at configuration time',
  '(their signature column).',
  '',
  '| algorithm | V8 signature µs | V8 validate µs | V8 first call µs | native signature µs | native validate µs |',
  '| --- | ---: | ---: | ---: | ---: | ---: |',
];
for (const [name, w] of v8) {
  const n = native.get(name) ?? { sig: '?', validate: '?' };
  lines.push(`| ${name} | ${w.sig} | ${w.validate} | ${w.first} | ${n.sig} | ${n.validate} |`);
}
for (const [alg, mod, was] of [
  ['RS256', 'tokenguard::rsa', 'jwt-simple, before'],
  ['PS256', 'tokenguard::rsa', 'jwt-simple, before'],
  ['ES256', 'tokenguard::ecdsa', 'jwt-simple, before'],
  ['ES384', 'tokenguard::es384', 'p384 crate directly, before'],
  ['EdDSA', 'tokenguard::eddsa', 'jwt-simple, before'],
]) {
  const ours = v8.get(`${alg} (${mod})`);
  const before = v8.get(`${alg} (${was})`);
  const nOurs = native.get(`${alg} (${mod})`);
  const nBefore = native.get(`${alg} (${was})`);
  if (ours && before && nOurs && nBefore) {
    const x = (a, b) => (Number(a) / Number(b)).toFixed(1);
    lines.push('');
    lines.push(`${alg} signature check, ${was.replace(', before', '')} (before) -> ${mod}: ${before.sig} -> ${ours.sig} µs in V8 ` +
      `(${x(before.sig, ours.sig)}x), ${nBefore.sig} -> ${nOurs.sig} µs natively (${x(nBefore.sig, nOurs.sig)}x).`);
  }
}
console.log(lines.join('\n'));
