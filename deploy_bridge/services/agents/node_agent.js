// minicloud's function instance for Node: generic until told which function's code to load.
//   POST /specialize {name, version, dir}  loads DIR/index.js (exports.main = async (event, context) => result)
//   POST /invoke {event, context}          runs it; answers {ok, result} or {ok: false, error}
//   GET  /health                           {fn, version, pid}
// Every log line of an invocation is tagged [NAME REQUEST-ID]; START and END lines frame each one.
'use strict';
const http = require('http');
const path = require('path');
const { AsyncLocalStorage } = require('async_hooks');

const PORT = Number(process.env.MINICLOUD_AGENT_PORT || 9000);
const calls = new AsyncLocalStorage();
let fn = null; // { name, version, main, invoked }
let peakRss = 0;

for (const level of ['log', 'info', 'warn', 'error', 'debug']) {
  const write = console[level].bind(console);
  console[level] = (...args) => {
    const call = calls.getStore();
    return call ? write(`[${call.fn} ${call.req}]`, ...args) : write(...args);
  };
}

function answer(res, status, body) {
  const text = JSON.stringify(body);
  res.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text) });
  res.end(text);
}

function readJson(req) {
  return new Promise((resolve, reject) => {
    const chunks = [];
    req.on('data', (c) => chunks.push(c));
    req.on('end', () => {
      try { resolve(JSON.parse(Buffer.concat(chunks).toString('utf8') || '{}')); } catch (e) { reject(e); }
    });
    req.on('error', reject);
  });
}

function describe(err) {
  if (err instanceof Error) return { type: err.name, message: err.message, stack: err.stack };
  return { type: typeof err, message: String(err), stack: null };
}

async function specialize(body) {
  if (fn) return [409, { error: `already running ${fn.name}` }];
  const file = path.join(body.dir, 'index.js');
  let mod;
  try {
    mod = require(file);
  } catch (err) {
    return [400, { error: `cannot load ${body.name}: ${err.message}`, detail: describe(err) }];
  }
  if (!mod || typeof mod.main !== 'function') return [400, { error: `${body.name}: index.js has no exports.main` }];
  fn = { name: body.name, version: body.version, main: mod.main, invoked: false };
  return [200, { fn: fn.name, version: fn.version }];
}

// context.cloud: the env's data API with the server credential (the SDK the scheduler mounts), made once
let cloudSdk;
function dataApi() {
  if (!cloudSdk) {
    if (!process.env.MINICLOUD_DATA_URL) {
      throw new Error('context.cloud: this env has no data API (add [data] to minicloud.toml and run minicloud env build)');
    }
    cloudSdk = require('/opt/minicloud-sdk/minicloud-cloud.js');
    cloudSdk.init({});
  }
  return cloudSdk;
}

async function invoke(body) {
  if (!fn) return [409, { error: 'not specialised' }];
  const ctx = body.context || {};
  const cold = ctx.cold !== undefined ? Boolean(ctx.cold) : !fn.invoked; // the scheduler knows best
  fn.invoked = true;
  const started = process.hrtime.bigint();
  const { cold: _cold, ...rest } = ctx;
  const context = {
    ...rest,
    functionName: fn.name,
    getRemainingTimeInMillis: () => Math.max(0, (ctx.deadline || 0) - Date.now()),
    get cloud() { return dataApi(); },
  };
  return calls.run({ fn: fn.name, req: ctx.requestId }, async () => {
    console.log(`START ${cold ? 'cold' : 'warm'} version=${fn.version}`);
    let reply;
    try {
      reply = [200, { ok: true, result: await fn.main(body.event, context) }];
    } catch (err) {
      reply = [200, { ok: false, error: describe(err) }];
    }
    peakRss = Math.max(peakRss, process.memoryUsage().rss);
    const ms = Number(process.hrtime.bigint() - started) / 1e6;
    console.log(`END duration=${ms.toFixed(1)}ms ${cold ? 'cold' : 'warm'} peak_memory=${(peakRss / 2 ** 20).toFixed(1)}MB`);
    return reply;
  });
}

const server = http.createServer(async (req, res) => {
  try {
    if (req.method === 'GET' && req.url === '/health') {
      return answer(res, 200, { fn: fn && fn.name, version: fn && fn.version, pid: process.pid });
    }
    if (req.method === 'POST' && req.url === '/specialize') return answer(res, ...(await specialize(await readJson(req))));
    if (req.method === 'POST' && req.url === '/invoke') return answer(res, ...(await invoke(await readJson(req))));
    answer(res, 404, { error: 'not found' });
  } catch (err) {
    answer(res, 500, { error: String(err && err.message || err) });
  }
});
server.keepAliveTimeout = 65000;
server.listen(PORT, '0.0.0.0');
