import { strict as assert } from 'node:assert';
import { test } from 'node:test';
import { backoffMs, resolveServerCommand, ServerNotFound } from '../serverPath';

const join = (...parts: string[]) => parts.join('/');

test('the setting wins when the file exists', () => {
  const cmd = resolveServerCommand('/ws', { serverPath: '/opt/lsp', serverArgs: ['--log-level', 'INFO'] },
    { exists: (p) => p === '/opt/lsp' || p === '/ws/.venv/bin/minicloud-lsp', join });
  assert.deepEqual([cmd.command, cmd.args, cmd.source], ['/opt/lsp', ['--log-level', 'INFO'], 'minicloud.server.path']);
});

test('then the workspace .venv', () => {
  const cmd = resolveServerCommand('/ws', { serverPath: '/missing' },
    { exists: (p) => p === '/ws/.venv/bin/minicloud-lsp', join });
  assert.equal(cmd.command, '/ws/.venv/bin/minicloud-lsp');
  assert.deepEqual(cmd.args, []);
});

test('then python -m lsp_server', () => {
  const cmd = resolveServerCommand('/ws', { onPath: (n) => (n === 'python3' ? '/usr/bin/python3' : undefined) },
    { exists: (p) => p === '/usr/bin/python3', join });
  assert.deepEqual([cmd.command, cmd.args], ['/usr/bin/python3', ['-m', 'lsp_server']]);
});

test('a clear message with the fix when nothing works', () => {
  assert.throws(() => resolveServerCommand('/ws', { serverPath: '/nope' }, { exists: () => false, join }),
    (err: unknown) => err instanceof ServerNotFound && /minicloud\.server\.path/.test(err.message)
      && err.tried.some((t) => t.includes('/nope')) && /scripts\/setup\.sh/.test(err.message));
});

test('restart backoff doubles and is capped', () => {
  assert.deepEqual([1, 2, 3, 4].map(backoffMs), [1000, 2000, 4000, 8000]);
  assert.equal(backoffMs(20), 30_000);
});
