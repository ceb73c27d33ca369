import { strict as assert } from 'node:assert';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { formatBatch, formatLogLine, LogLine } from '../logFormat';

// the same cases the Python side (deploy_bridge.model.format_log_line) is tested against
const shared = JSON.parse(readFileSync(join(__dirname, '..', '..', '..', 'tests', 'data', 'log-lines.json'), 'utf8'));

test('the text form is the CLI\'s', () => {
  for (const c of shared.cases as (LogLine & { text: string })[]) {
    assert.equal(formatLogLine(c, { showTime: true }), c.text);
  }
});

test('without time, and roles without a release', () => {
  assert.equal(formatLogLine({ time: 't', role: 'db', release: null, line: 'ready\n' }, { showTime: false }), 'db | ready');
});

test('dropped lines are said, not hidden', () => {
  const out = formatBatch([{ time: '', role: 'app', line: 'a' }], 12, { showTime: false });
  assert.equal(out.length, 2);
  assert.match(out[1], /12 lines dropped/);
});

test('with several apps, each line says whose it is', () => {
  const out = formatBatch([{ time: '', role: 'app', line: 'up' }], 0, { showTime: false, app: 'blog' });
  assert.deepEqual(out, ['[blog] app | up']);
  assert.deepEqual(formatBatch([{ time: '', role: 'app', line: 'up' }], 0, { showTime: false }), ['app | up']);
});
