// The driver of tests/test_cloud_sdk.py for codegen/cloud_sdk/minicloud-cloud.js.
//
//   node cloud_sdk.test.mjs SCENARIO < args.json   -> one JSON answer on stdout
//
// `args.frontend` ("my" | "wx") loads the SDK the way a mini-program does: in a fresh JavaScript realm
// (node:vm) that has no process, require, module, fetch nor crypto; only the platform's `my` or `wx`, whose
// request() is emulated on top of this process's fetch with that platform's answer shapes.
import { createRequire } from 'node:module';
import { readFileSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import vm from 'node:vm';

const SDK = new URL('../../codegen/cloud_sdk/minicloud-cloud.js', import.meta.url);

function emulated(kind, log) {
  return {
    request(o) {
      const headers = kind === 'my' ? o.headers : o.header;
      log.push({ kind, method: o.method, dataType: o.dataType, data: typeof o.data === 'string' ? 'string' : typeof o.data });
      const body = o.data == null ? undefined : typeof o.data === 'string' ? o.data : Buffer.from(new Uint8Array(o.data));
      fetch(o.url, { method: o.method, headers, body }).then(async (r) => {
        const text = await r.text();
        if (kind === 'wx') o.success({ statusCode: r.status, data: text, header: {} });
        // Alipay: an HTTP error status is a fail with error 19, carrying the status and the answer.
        else if (r.status >= 200 && r.status < 300) o.success({ status: r.status, data: text, headers: {} });
        else o.fail({ error: 19, errorMessage: 'http status error', status: r.status, data: text });
      }, (e) => o.fail({ error: 12, errorMessage: String(e) }));
    },
    getFileSystemManager() {
      return {
        readFile({ filePath, success, fail }) {
          readFile(filePath).then((b) => success({ data: b.buffer.slice(b.byteOffset, b.byteOffset + b.byteLength) }),
            (e) => fail({ errorMessage: String(e) }));
        },
      };
    },
  };
}

function load(args) {
  if (!args.frontend) return { cloud: createRequire(import.meta.url)(SDK.pathname), log: [] };
  const log = [];
  const ctx = vm.createContext({ [args.frontend]: emulated(args.frontend, log) });
  vm.runInContext(readFileSync(SDK, 'utf8'), ctx, { filename: 'minicloud-cloud.js' });
  const bare = vm.runInContext('[typeof process, typeof require, typeof module, typeof fetch, typeof crypto]', ctx);
  if (bare.some((t) => t !== 'undefined')) throw new Error('the front-end realm is not bare: ' + bare);
  return { cloud: ctx.minicloudCloud, log };
}

const hexBytes = (h) => Uint8Array.from(Buffer.from(h, 'hex'));
const b64Bytes = (s) => Uint8Array.from(Buffer.from(s, 'base64'));
const plain = (x) => JSON.parse(JSON.stringify(x === undefined ? null : x));
const failure = (e) => ({
  error: { code: e.code, message: e.message, status: e.status, isError: Object.prototype.toString.call(e) === '[object Error]' },
});
const settle = (p) => Promise.resolve(p).then(plain, failure);

// The operations whose requests the Python test checks against docs/data-api.md, by label.
function operations(cloud, args) {
  const db = cloud.database();
  const _ = db.command;
  const orders = db.collection('orders');
  return {
    get_all: () => orders.get(),
    get_query: () => orders.where({ status: 'paid', total: _.gt(5) }).orderBy('created', 'desc').orderBy('total', 'asc')
      .skip(10).limit(5).field({ total: true, status: true }).get(),
    get_unicode: () => db.collection('商品').limit(1).get(),
    count: () => orders.where({ status: _.in(['paid', 'sent']) }).count(),
    add_one: () => orders.add({ data: { total: 3, tags: ['a'] } }),
    add_many: () => orders.add({ data: [{ n: 1 }, { n: 2 }] }),
    doc_get: () => orders.doc('id-1').get(),
    doc_get_missing: () => orders.doc('nope').get(),
    doc_update: () => orders.doc('id-1').update({ data: { status: 'sent', addr: { city: 'Hangzhou' }, n: _.inc(1) } }),
    doc_remove: () => orders.doc('id-1').remove(),
    where_update: () => orders.where({ status: 'paid' }).update({ data: { status: 'sent', log: _.push(['x', 'y']) } }),
    where_remove: () => orders.where({ total: _.lt(1) }).remove(),
    or_lifted: () => orders.where({ total: _.or(_.lt(1), _.gt(100)) }).get(),
    range_and: () => orders.where({ total: _.gt(1).and(_.lt(9)) }).get(),
    immutable: () => { const base = orders.where({ a: 1 }); base.limit(2).orderBy('a', 'desc'); return base.get(); },
    upload: () => cloud.uploadFile({ cloudPath: '/img/a b(1).png', fileContent: b64Bytes(args.upload_b64) }),
    upload_path: () => cloud.uploadFile({ cloudPath: 'docs/readme.txt', filePath: args.upload_file }),
    temp_url: () => cloud.getTempFileURL({ fileList: ['cloud://test/img/a.png'], maxAge: 60 }),
    delete_file: () => cloud.deleteFile({ fileList: ['cloud://test/img/a.png'] }),
    call_function: () => cloud.callFunction({ name: 'hello', data: { x: 1 } }),
  };
}

const scenarios = {
  // The X-Cloud-* headers for each case; `backend` says which digests computed them.
  async sign(args) {
    const { cloud } = load(args);
    const mode = args.frontend ? 'auto' : args.mode;
    return {
      backend: cloud.crypto.backend(mode),
      headers: args.cases.map((c) => plain(cloud.signHeaders({
        method: c.method, path: c.path, body: b64Bytes(c.body_b64), timestamp: c.timestamp, nonce: c.nonce,
        secret: c.secret_b64 != null ? b64Bytes(c.secret_b64) : c.secret_text, crypto: mode,
      }))),
    };
  },

  async digest(args) {
    const { cloud } = load(args);
    const mode = args.frontend ? 'auto' : args.mode;
    const sha = args.sha256.map((h) => cloud.crypto.hex(cloud.crypto.sha256(hexBytes(h), mode)));
    const repeated = args.repeated.map(([ch, n]) => cloud.crypto.hex(cloud.crypto.sha256(ch.repeat(n), mode)));
    const mac = args.hmac.map(([k, d]) => cloud.crypto.hex(cloud.crypto.hmacSha256(hexBytes(k), hexBytes(d), mode)));
    return { backend: cloud.crypto.backend(mode), sha256: sha, repeated, hmac: mac };
  },

  // Runs the labelled operations one after the other; each answer or error by label.
  async ops(args) {
    const { cloud, log } = load(args);
    cloud.init({ ...args.init, crypto: args.frontend ? undefined : args.mode });
    const ops = operations(cloud, args);
    const out = {};
    for (const label of args.labels) out[label] = await settle(ops[label]());
    return { results: out, transport: log };
  },

  // init() with no options: the server credential and URL come from process.env.
  async env(args) {
    const { cloud } = load(args);
    cloud.init();
    return { result: await settle(cloud.database().collection('orders').count()) };
  },

  // A session that expires: getAuthCode hands out args.codes in turn.
  async renew(args) {
    const { cloud } = load(args);
    const codes = [...args.codes];
    let calls = 0;
    const init = { url: args.url, code: args.code };
    if (args.with_callback) init.getAuthCode = () => { calls += 1; return Promise.resolve(codes.shift()); };
    cloud.init(init);
    const orders = cloud.database().collection('orders');
    const first = await settle(orders.get());
    const second = await settle(orders.get());
    return { first, second, getAuthCodeCalls: calls };
  },

  // The same failing call, as a promise and with success/fail/complete.
  async callbacks(args) {
    const { cloud } = load(args);
    cloud.init(args.init);
    const orders = cloud.database().collection('orders');
    const promised = await settle(orders.doc('id-1').update({ data: { a: 1 } }));
    const seen = await new Promise((resolve) => {
      const got = {};
      const ret = orders.doc('id-1').update({
        data: { a: 1 },
        success: (r) => { got.success = plain(r); },
        fail: (e) => { got.fail = failure(e).error; },
        complete: () => { got.complete = true; resolve(got); },
      });
      got.returned = ret === undefined ? 'undefined' : typeof ret;
    });
    const ok = await new Promise((resolve) => {
      const got = {};
      cloud.callFunction({
        name: 'hello', data: { y: 2 },
        success: (r) => { got.success = plain(r); },
        complete: () => { got.complete = true; resolve(got); },
      });
    });
    return { promised, callbacks: seen, succeeded: ok };
  },
};

const chunks = [];
for await (const c of process.stdin) chunks.push(c);
const args = JSON.parse(Buffer.concat(chunks).toString() || '{}');
const answer = await scenarios[process.argv[2]](args);
process.stdout.write(JSON.stringify(answer));
