import { strict as assert } from 'node:assert';
import { test } from 'node:test';
import { formatBatch, formatLogLine, shortRelease } from '../logFormat';

test('one line with time, role and release', () => {
  const line = formatLogLine({ time: '2026-11-25T02:40:50.325Z', role: 'app', release: '20261125-024033-d67222',
    line: 'listening on 3000\n' }, { showTime: true });
  assert.equal(line, '2026-11-25 02:40:50.325 [app     024033-d67222] listening on 3000');
});

test('without time, and roles without a release', () => {
  assert.equal(formatLogLine({ time: 't', role: 'db', release: null, line: 'ready' }, { showTime: false }), '[db     ] ready');
});

test('dropped lines are said, not hidden', () => {
  const out = formatBatch([{ time: '', role: 'app', line: 'a' }], 12, { showTime: false });
  assert.equal(out.length, 2);
  assert.match(out[1], /12 lines dropped/);
});

test('release ids keep their unique part', () => {
  assert.equal(shortRelease('20261125-024033-d67222'), '024033-d67222');
  assert.equal(shortRelease('custom'), 'custom');
});
