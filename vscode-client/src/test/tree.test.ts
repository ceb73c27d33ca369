import { strict as assert } from 'node:assert';
import { test } from 'node:test';
import { envNode, formatBytes, statusBarText, EnvStatus } from '../tree';

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
