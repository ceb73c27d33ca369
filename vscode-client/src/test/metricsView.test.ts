import { strict as assert } from 'node:assert';
import { test } from 'node:test';
import {
  appTraffic, formatPercent, LiveMetrics, metricsKey, metricsSuffix, ReleaseLive, statusBarTooltip, statusBarWithMetrics,
} from '../metricsView';
import { appNode, canaryOf, EnvStatus, envNode, statusKey } from '../tree';

const status: EnvStatus = {
  env: 'test', app: 'shop', state: 'running', release: '20261127-101500-ab12cd', url: 'https://shop.test.localhost:8443',
  containers: [],
};

const rel = (release: string, rps: number, error_rate: number | null, p95_ms: number | null, role = 'app'): ReleaseLive =>
  ({ role, release, rps, error_rate, s4xx_rate: error_rate === null ? null : 1, p95_ms });

function live(over: Partial<LiveMetrics> = {}): LiveMetrics {
  return {
    app: 'shop', env: 'test', at: 1_795_000_000,
    releases: [rel('20261127-101500-ab12cd', 12.3, 0, 41)], containers: [], firing: [], canary: null, ...over,
  };
}

test('the status bar adds requests/s, 5xx rate and p95 of the app', () => {
  assert.equal(statusBarWithMetrics(status, 'test', 'shop', live()),
    '$(cloud) shop/test: running · 101500-ab12cd · 12.3 req/s · 0.0% 5xx · p95 41 ms');
  assert.equal(statusBarWithMetrics(status, 'test', undefined, live()),
    '$(cloud) test: running · 101500-ab12cd · 12.3 req/s · 0.0% 5xx · p95 41 ms');
  assert.equal(statusBarWithMetrics(status, 'test', undefined, undefined), '$(cloud) test: running · 101500-ab12cd');
});

test('several app releases: rps summed, 5xx weighted by rps, the worst p95; other roles do not count', () => {
  const t = appTraffic([rel('a', 30, 1, 40), rel('b', 10, 9, 120), rel('gw', 500, 50, 900, 'gateway'), rel('c', 0, null, null)]);
  assert.ok(t);
  assert.equal(t.rps, 40);
  assert.equal(t.errorRate, 3); // (30×1 + 10×9) / 40
  assert.equal(t.p95, 120);
  assert.equal(appTraffic([rel('gw', 5, 0, 1, 'gateway')]), undefined);
  assert.equal(metricsSuffix(live({ releases: [rel('gw', 5, 0, 1, 'gateway')] })), '');
});

test('an idle app: 0 req/s and no rate or p95 made up', () => {
  assert.equal(metricsSuffix(live({ releases: [rel('r', 0, null, null)] })), ' · 0 req/s');
  assert.equal(metricsSuffix(live({ releases: [rel('r', 250.4, 0.04, 1500)] })), ' · 250 req/s · <0.1% 5xx · p95 1.50 s');
  assert.equal(formatPercent(12.345), '12.3%');
});

test('firing alerts ring the bell, a canary shows its share; the tooltip lists them', () => {
  const m = live({
    firing: [{ alert: 'error_rate', subject: null, rule: '5xx > 1% for 1m', value: '5.2%', since: 1_795_000_000, at: 1_795_000_060 },
      { alert: 'restarts', subject: 'mc-shop-test-app-1', rule: 'restarts > 2', value: '3', since: 1_795_000_010, at: 1_795_000_070 }],
    canary: { percent: 10, serving: '20261127-101500-ab12cd', canary: '20261127-120000-ef34ab' },
  });
  assert.equal(statusBarWithMetrics(status, 'test', undefined, m),
    '$(cloud) test: running · 101500-ab12cd · 12.3 req/s · 0.0% 5xx · p95 41 ms · canary 10% · $(bell) 2');
  const tooltip = statusBarTooltip(status, 'minicloud', m, (t) => `@${t - 1_795_000_000}`);
  const lines = tooltip.split('\n');
  assert.equal(lines[0], 'https://shop.test.localhost:8443');
  assert.ok(lines.includes('app 20261127-101500-ab12cd: 12.3 req/s, 0.0% 5xx, 1.0% 4xx, p95 41 ms'));
  assert.ok(lines.includes('canary: 10% of the users on 20261127-120000-ef34ab, the rest on 20261127-101500-ab12cd'));
  assert.ok(lines.includes('2 alerts firing:'));
  assert.ok(lines.includes('  error_rate: 5.2% — 5xx > 1% for 1m, since @0'));
  assert.ok(lines.includes('  restarts (mc-shop-test-app-1): 3 — restarts > 2, since @10'));
});

test('a stopped or unknown env shows no stale metrics', () => {
  const stopped = { ...status, state: 'stopped' };
  const m = live({ firing: [{ alert: 'a', subject: null, rule: 'r', value: 'v', since: 0, at: 0 }] });
  assert.equal(statusBarWithMetrics(stopped, 'test', undefined, m), '$(debug-stop) test: stopped · 101500-ab12cd');
  assert.equal(statusBarWithMetrics(undefined, 'test', undefined, m), '$(cloud) test: unknown');
  assert.equal(statusBarTooltip(stopped, 'minicloud', m), 'https://shop.test.localhost:8443');
  assert.equal(statusBarTooltip(undefined, 'minicloud: /w/shop', m), 'minicloud: /w/shop');
  // degraded: exactly when the numbers and the alerts matter
  assert.match(statusBarWithMetrics({ ...status, state: 'degraded' }, 'test', undefined, m), /\$\(bell\) 1$/);
});

test('the env node shows a canary from the latest notification', () => {
  const split = { percent: 10, serving: '20261127-101500-ab12cd', canary: '20261127-120000-ef34ab' };
  const node = envNode(status, '/w/shop', split);
  assert.equal(node.description, 'running · 20261127-101500-ab12cd · canary 10% → 20261127-120000-ef34ab');
  assert.match(node.tooltip ?? '', /10% of the users on 20261127-120000-ef34ab, the rest on 20261127-101500-ab12cd/);
  assert.equal(envNode(status, '/w/shop', null).description, 'running · 20261127-101500-ab12cd');
  assert.equal(envNode({ ...status, state: 'stopped' }, '/w/shop', split).description, 'stopped · 20261127-101500-ab12cd');
  // once the status carries the canary itself, it wins (null: none)
  assert.equal(canaryOf({ ...status, canary: null }, split), null);
  assert.deepEqual(canaryOf({ ...status, canary: { ...split, percent: 25 } }, split)?.percent, 25);
  // through the app node: looked up by the app's name and the env
  const statuses = new Map([[statusKey('/w/shop', 'test'), status]]);
  const byName = new Map([[metricsKey('shop', 'test'), split]]);
  const app = appNode({ root: '/w/shop' }, statuses, ['test'], false, (name, env) => byName.get(metricsKey(name, env)));
  assert.match(app.children[0].description ?? '', /canary 10% → 20261127-120000-ef34ab$/);
});
