// The hot path inside V8, without Envoy: a small proxy-wasm host in JavaScript drives a
// filter's request and response callbacks the way Envoy does (context create, request
// headers, response headers, log, done, delete) and counts each host call the filter makes.
//
//   node bench/hot/run.mjs FILTER.wasm CONFIG.json TOKEN [REQUESTS [PROFILE.cpuprofile]]
//
// Prints one JSON line: nanoseconds per request (wall clock of this loop, in one process),
// and host calls per request by name. Envoy's own cost (its host-call implementations, the
// HTTP codec, the router) is not in it: what is left is the filter's code and the SDK's
// context handling, in the engine Envoy embeds. `make bench-hot` compares filters with it
// in one run. PROFILE: node's sampling profile of the measured requests only (not of the
// configuration, whose key tables would otherwise show), for where a filter's time goes.
import { readFileSync, writeFileSync } from 'node:fs';
import { Session } from 'node:inspector/promises';
import { WASI } from 'node:wasi';

const [wasmPath, configPath, token, requestsArg = '200000', profilePath] = process.argv.slice(2);
if (!wasmPath || !configPath || !token) {
  console.error('usage: node run.mjs FILTER.wasm CONFIG.json TOKEN [REQUESTS]');
  process.exit(2);
}
const requests = Number(requestsArg);
const config = Buffer.from(readFileSync(configPath, 'utf8'));
const enc = new TextEncoder();
const dec = new TextDecoder();

const OK = 0, NOT_FOUND = 1, CAS_MISMATCH = 2;
const requestHeaders = new Map([
  [':method', 'GET'], [':path', '/'], [':authority', 'bench'], [':scheme', 'http'],
  ['authorization', `Bearer ${token}`], ['x-request-id', 'c0ffee00-0000-4000-8000-000000000000'],
  ['user-agent', 'wrk'],
]);
let headers = { 0: new Map(requestHeaders), 2: new Map() };
const shared = new Map(); // key -> { value: Uint8Array, cas }
let casSeq = 1;
const calls = new Map();
let counting = false;
const metrics = [];

let instance;
const mem = () => new DataView(instance.exports.memory.buffer);
const bytes = (ptr, len) => new Uint8Array(instance.exports.memory.buffer, ptr, len);
const str = (ptr, len) => dec.decode(bytes(ptr, len));
function give(data, dataPtr, sizePtr) {
  const len = data.length;
  const ptr = len ? instance.exports.proxy_on_memory_allocate(len) : 0;
  if (len) bytes(ptr, len).set(data);
  mem().setUint32(dataPtr, ptr, true);
  mem().setUint32(sizePtr, len, true);
}

const host = {
  proxy_log: () => OK,
  proxy_get_log_level: (p) => { mem().setUint32(p, 2, true); return OK; },
  proxy_set_tick_period_milliseconds: () => OK,
  proxy_get_buffer_bytes: (type, start, max, dataPtr, sizePtr) => {
    if (type !== 7 && type !== 6) return NOT_FOUND;
    give(type === 7 ? config : new Uint8Array(0), dataPtr, sizePtr);
    return OK;
  },
  proxy_get_current_time_nanoseconds: (p) => {
    mem().setBigUint64(p, BigInt(Date.now()) * 1000000n, true);
    return OK;
  },
  proxy_get_header_map_value: (map, kp, kl, dataPtr, sizePtr) => {
    const v = headers[map]?.get(str(kp, kl));
    if (v === undefined) return NOT_FOUND;
    give(enc.encode(v), dataPtr, sizePtr);
    return OK;
  },
  proxy_replace_header_map_value: (map, kp, kl, vp, vl) => { headers[map]?.set(str(kp, kl), str(vp, vl)); return OK; },
  proxy_add_header_map_value: (map, kp, kl, vp, vl) => { headers[map]?.set(str(kp, kl), str(vp, vl)); return OK; },
  proxy_remove_header_map_value: (map, kp, kl) => { headers[map]?.delete(str(kp, kl)); return OK; },
  proxy_get_header_map_pairs: (map, dataPtr, sizePtr) => { give(new Uint8Array(4), dataPtr, sizePtr); return OK; },
  proxy_set_header_map_pairs: () => OK,
  proxy_get_shared_data: (kp, kl, dataPtr, sizePtr, casPtr) => {
    const e = shared.get(str(kp, kl));
    if (!e) return NOT_FOUND;
    give(e.value, dataPtr, sizePtr);
    mem().setUint32(casPtr, e.cas, true);
    return OK;
  },
  proxy_set_shared_data: (kp, kl, vp, vl, cas) => {
    const key = str(kp, kl);
    const e = shared.get(key);
    if (cas !== 0 && e && e.cas !== cas) return CAS_MISMATCH;
    shared.set(key, { value: bytes(vp, vl).slice(), cas: ++casSeq });
    return OK;
  },
  proxy_get_property: () => NOT_FOUND,
  proxy_set_property: () => OK,
  // Kept like Envoy's stats: the filter reads some back (its revocation change gauge).
  proxy_define_metric: (type, np, nl, idPtr) => { metrics.push(0n); mem().setUint32(idPtr, metrics.length - 1, true); return OK; },
  proxy_increment_metric: (id, offset) => { metrics[id] += BigInt(offset); return OK; },
  proxy_record_metric: (id, value) => { metrics[id] = BigInt.asUintN(64, BigInt(value)); return OK; },
  proxy_get_metric: (id, p) => { mem().setBigUint64(p, BigInt.asUintN(64, metrics[id] ?? 0n), true); return OK; },
  proxy_send_local_response: () => { throw new Error('the filter answered locally: the token or config is wrong'); },
  proxy_continue_stream: () => OK,
  proxy_set_effective_context: () => OK,
  proxy_done: () => OK,
};
const env = {};
function importsOf(module) {
  for (const imp of WebAssembly.Module.imports(module)) {
    if (imp.module !== 'env' || imp.kind !== 'function') continue;
    const f = host[imp.name] ?? (() => { throw new Error(`host call ${imp.name} not expected on this path`); });
    env[imp.name] = (...args) => {
      if (counting) calls.set(imp.name, (calls.get(imp.name) ?? 0) + 1);
      return f(...args);
    };
  }
}

const module = await WebAssembly.compile(readFileSync(wasmPath));
importsOf(module);
const wasi = new WASI({ version: 'preview1', args: [], env: {}, returnOnExit: true });
instance = await WebAssembly.instantiate(module, { wasi_snapshot_preview1: wasi.wasiImport, env });
wasi.initialize({ exports: { memory: instance.exports.memory, _initialize: instance.exports._initialize } });
const x = instance.exports;
const ROOT = 1;
x.proxy_on_context_create(ROOT, 0);
if (!x.proxy_on_vm_start(ROOT, 0)) throw new Error('vm start refused');
if (!x.proxy_on_configure(ROOT, config.length)) throw new Error('configuration refused');
if (x.proxy_on_tick) x.proxy_on_tick(ROOT);

let next = 2;
function request() {
  const id = next++;
  headers = { 0: new Map(requestHeaders), 2: new Map([[':status', '200']]) };
  x.proxy_on_context_create(id, ROOT);
  const a = x.proxy_on_request_headers(id, requestHeaders.size, 1);
  if (a !== 0) throw new Error(`request ${id} paused (action ${a})`);
  x.proxy_on_response_headers(id, 1, 1);
  x.proxy_on_log(id);
  x.proxy_on_done(id);
  x.proxy_on_delete(id);
}

// Warm-up: the token's first and second sight (the full path, then remembered), and V8
// tiering the code up; the root's tick once a second as Envoy would.
let lastTick = Date.now();
for (let i = 0; i < 20000; i++) request();
counting = true;
request();
counting = false;
const perRequest = Object.fromEntries([...calls.entries()].sort());
const session = profilePath ? new Session() : null;
if (session) {
  session.connect();
  await session.post('Profiler.enable');
  await session.post('Profiler.setSamplingInterval', { interval: 50 });
  await session.post('Profiler.start');
}
const t0 = process.hrtime.bigint();
for (let i = 0; i < requests; i++) {
  request();
  if ((i & 1023) === 0 && Date.now() - lastTick >= 1000) {
    lastTick = Date.now();
    x.proxy_on_tick(ROOT);
  }
}
const ns = Number(process.hrtime.bigint() - t0) / requests;
if (session) {
  const { profile } = await session.post('Profiler.stop');
  writeFileSync(profilePath, JSON.stringify(profile));
}
console.log(JSON.stringify({ ns_per_request: Math.round(ns), host_calls: perRequest }));
