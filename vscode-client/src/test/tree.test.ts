import { strict as assert } from 'node:assert';
import { test } from 'node:test';
import { appLabel, appNode, appOf, envNode, formatBytes, functionOfFile, statusBarText, statusKey, EnvStatus } from '../tree';

const status: EnvStatus = {
  env: 'test', app: 'shop', state: 'running', release: '20261125-024033-d67222', url: 'https://shop.test.localhost:8443',
  containers: [
    { role: 'app', name: 'mc-shop-test-app-1', state: 'running', health: 'healthy', cpu_percent: 1.234, mem_bytes: 29_863_936 },
    { role: 'db', name: 'mc-shop-test-db', state: 'running', health: null, cpu_percent: null, mem_bytes: null },
  ],
  releases: [
    { id: '20261125-024033-d67222', image: 'mc-shop:test-1', created: '2026-11-25T02:40:33Z', current: true },
    { id: '20261125-020341-bedc79', image: 'mc-shop:test-0', created: '2026-11-25T02:03:44Z', current: false },
  ],
};

test('env → containers and releases', () => {
  const node = envNode(status);
  assert.equal(node.label, 'test');
  assert.match(node.description ?? '', /running · 20261125-024033-d67222/);
  const [containers, releases] = node.children;
  assert.deepEqual(containers.children.map((c) => c.label), ['app', 'db']);
  assert.equal(containers.children[0].description, 'running, healthy · CPU 1.2% · 28.5 MiB');
  assert.equal(containers.children[1].description, 'running · CPU – · –');
  assert.deepEqual(releases.children.map((r) => r.contextValue), ['release.current', 'release']);
  assert.equal(releases.children[1].releaseId, '20261125-020341-bedc79');
});

test('bytes and the status bar', () => {
  assert.equal(formatBytes(2048), '2 KiB');
  assert.equal(formatBytes(3 * 1024 ** 3), '3.00 GiB');
  assert.equal(statusBarText(status, 'test'), '$(cloud) test: running · 024033-d67222');
  assert.equal(statusBarText(undefined, 'prod'), '$(cloud) prod: unknown');
});

test('the app of a file is the nearest root above it (monorepos: nested apps)', () => {
  const roots = ['/w/repo', '/w/repo/services/beta', '/w/other'];
  assert.equal(appOf('/w/repo/services/beta/src/a.js', roots), '/w/repo/services/beta');
  assert.equal(appOf('/w/repo/services/betamax/a.js', roots), '/w/repo');
  assert.equal(appOf('/w/repo/web/a.js', roots), '/w/repo');
  assert.equal(appOf('/w/elsewhere/a.js', roots), undefined);
  assert.equal(appOf(undefined, roots), undefined);
  assert.equal(appOf('C:\\w\\b\\x.js', ['C:\\w\\b'], '\\'), 'C:\\w\\b');
});

test('apps → envs → containers, each app with its own statuses', () => {
  const statuses = new Map<string, EnvStatus>([
    [statusKey('/w/shop', 'test'), status],
    [statusKey('/w/blog', 'test'), { ...status, app: 'blog', state: 'stopped', containers: [], releases: [] }],
  ]);
  const shop = appNode({ root: '/w/shop' }, statuses, ['test', 'prod'], true);
  const blog = appNode({ root: '/w/blog', name: 'blog' }, statuses, ['test', 'prod']);
  const none = appNode({ root: '/w/new-app' }, statuses, ['test', 'prod']);
  assert.equal(shop.label, 'shop');
  assert.equal(shop.description, '● test');
  assert.deepEqual(shop.children.map((e) => [e.label, e.app]), [['test', '/w/shop']]);
  assert.deepEqual(shop.children[0].children[0].children.map((c) => [c.label, c.app]), [['app', '/w/shop'], ['db', '/w/shop']]);
  assert.equal(shop.children[0].children[1].children[0].app, '/w/shop'); // a release rolls back its own app
  assert.equal(blog.children[0].description, 'stopped · 20261125-024033-d67222');
  assert.equal(blog.children[0].children[0].children.length, 0);
  assert.equal(none.label, 'new-app');
  assert.equal(none.description, 'no environment');
  assert.equal(appLabel({ root: '/w/x/' }), 'x');
});

test('the status bar names the app when there are several', () => {
  assert.equal(statusBarText(status, 'test', 'shop'), '$(cloud) shop/test: running · 024033-d67222');
  assert.equal(statusBarText(undefined, 'test', 'blog'), '$(cloud) blog/test: unknown');
});

test('an env with functions has a Functions group with instance counts', () => {
  const status = {
    env: 'test', app: 'shop', state: 'running', release: 'r1', url: 'u', containers: [],
    functions: {
      createOrder: { version: 'v1', reserved: 2, on_demand: 1, busy: 1, idle: 2, queue: 0, invocations: 40, errors: 1, p95_ms: 12 },
      report: { version: 'v2', reserved: 0, on_demand: 0, busy: 0, idle: 0, queue: 0, invocations: 0, errors: 0, p95_ms: null },
    },
  };
  const env = envNode(status, '/ws/shop');
  const group = env.children.find((c) => c.label === 'Functions');
  assert.ok(group);
  assert.equal(group.description, '2 · 3 instances');
  assert.deepEqual(group.children.map((c) => c.label), ['createOrder', 'report']);
  const order = group.children[0];
  assert.equal(order.contextValue, 'function');
  assert.equal(order.functionName, 'createOrder');
  assert.equal(order.app, '/ws/shop');
  assert.equal(order.description, '2 reserved · 1 on demand (1 busy) · p95 12 ms · 40 calls, 1 error');
  assert.equal(envNode({ ...status, functions: {} }).children.some((c) => c.label === 'Functions'), false);
});

test('a saved file belongs to the function of its folder', () => {
  assert.deepEqual(functionOfFile('/ws/shop/functions/createOrder/index.js', ['/ws/shop']),
    { root: '/ws/shop', name: 'createOrder' });
  assert.deepEqual(functionOfFile('/ws/shop/functions/createOrder/lib/db.js', ['/ws', '/ws/shop']),
    { root: '/ws/shop', name: 'createOrder' });
  assert.equal(functionOfFile('/ws/shop/server.js', ['/ws/shop']), undefined);
  assert.equal(functionOfFile('/ws/shop/functions/README.md', ['/ws/shop']), undefined);
  assert.equal(functionOfFile('/elsewhere/functions/x/index.js', ['/ws/shop']), undefined);
});

test('an env with a data API lists its collections with their counts', () => {
  const status: EnvStatus = { env: 'test', app: 'shop', state: 'running', release: 'r1', url: 'https://x', containers: [],
    collections: [{ name: 'users', count: 1 }, { name: 'orders', count: 12 }] };
  const group = envNode(status).children.find((c) => c.label === 'Collections');
  assert.ok(group);
  assert.deepEqual(group.children.map((c) => [c.label, c.description]), [['orders', '12 documents'], ['users', '1 document']]);
  assert.equal(group.description, '2 · 13 documents');
  assert.equal(envNode({ ...status, collections: null }).children.some((c) => c.label === 'Collections'), false);
});
