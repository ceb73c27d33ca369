import { strict as assert } from 'node:assert';
import { test } from 'node:test';
import {
  BOX, buildCharts, Chart, ContainerSeries, EMPTY_MESSAGE, escapeHtml, MetricsSeries, niceStep, ReleaseSeries,
  renderBody, renderChartSvg, renderDocument, runs, scaleY, valueTicks,
} from '../chartData';

const T0 = 1_795_000_000; // a multiple of 10, as the collector's buckets are

function release(name: string, points: [number, number, number, number | null][], role = 'app'): ReleaseSeries {
  // [offset s, requests, s5xx, p95]
  return {
    release: name, role, requests: points.reduce((n, p) => n + p[1], 0), s4xx: 0, s5xx: points.reduce((n, p) => n + p[2], 0),
    error_rate: null, mean_ms: null, p50_ms: null, p95_ms: null, p99_ms: null,
    points: points.map(([dt, requests, s5xx, p95]) => ({ ts: T0 + dt, requests, s4xx: 0, s5xx, p50_ms: p95, p95_ms: p95, p99_ms: p95 })),
  };
}

function container(name: string, points: [number, number | null, number | null][]): ContainerSeries {
  return {
    container: name, role: 'app', release: 'r1', cpu_avg: null, cpu_max: null, memory_max: null, restarts: 0,
    points: points.map(([dt, cpu, mem]) => ({ ts: T0 + dt, cpu_percent: cpu, memory_bytes: mem, restarts: 0 })),
  };
}

function series(releases: ReleaseSeries[], containers: ContainerSeries[] = []): MetricsSeries {
  return { app: 'shop', env: 'test', since: T0 - 3600, resolution_s: 10, releases, containers };
}

const chart = (data: MetricsSeries, id: string): Chart => {
  const c = buildCharts(data).charts.find((x) => x.id === id);
  assert.ok(c, `chart ${id}`);
  return c;
};

test('requests per second are the requests of a 10 s bucket / 10', () => {
  const rps = chart(series([release('r1', [[0, 50, 0, 20], [10, 120, 0, 30], [20, 7, 0, 25]])]), 'rps');
  assert.deepEqual(rps.series[0].segments[0].map((p) => p.value), [5, 12, 0.7]);
  assert.equal(rps.series[0].max, 12);
  assert.equal(rps.series[0].last, 0.7);
  assert.equal(rps.unit, 'req/s');
});

test('a missing 10 s bucket makes a gap; consecutive buckets make one line', () => {
  const rps = chart(series([release('r1', [[0, 10, 0, 1], [10, 10, 0, 1], [30, 10, 0, 1], [40, 10, 0, 1], [50, 10, 0, 1]])]), 'rps');
  const segments = rps.series[0].segments;
  assert.equal(segments.length, 2);
  assert.deepEqual(segments.map((s) => s.map((p) => p.ts - T0)), [[0, 10], [30, 40, 50]]);
  // the gap is in the drawing: two polylines, none across 10 → 30
  const svg = renderChartSvg(rps);
  assert.equal(svg.match(/<polyline/g)?.length, 2);
});

test('a null value (no requests, no p95) is a gap too; a lone bucket is a dot', () => {
  const p95 = chart(series([release('r1', [[0, 10, 0, 40], [10, 0, 0, null], [20, 10, 0, 50]])]), 'p95');
  assert.deepEqual(p95.series[0].segments.map((s) => s.map((p) => p.value)), [[40], [50]]);
  const svg = renderChartSvg(p95);
  assert.equal(svg.match(/<circle/g)?.length, 2);
  assert.equal(svg.includes('<polyline'), false);
  assert.deepEqual(runs([{ ts: 20, value: 1 }, { ts: 0, value: 2 }, { ts: 10, value: 3 }], 10).map((r) => r.map((p) => p.ts)),
    [[0, 10, 20]], 'sorted by time first');
});

test('the max value maps to the top of the plot, 0 to the bottom, time left to right', () => {
  const rps = chart(series([release('r1', [[0, 30, 0, 1], [10, 90, 0, 1], [20, 0, 0, 1]])]), 'rps');
  const [a, top, zero] = rps.series[0].segments[0];
  assert.equal(top.y, BOX.top);
  assert.equal(zero.y, BOX.height - BOX.bottom);
  assert.ok(a.y > top.y && a.y < zero.y);
  assert.equal(a.x, BOX.left);
  assert.equal(zero.x, BOX.width - BOX.right);
  assert.ok(a.x < top.x && top.x < zero.x);
  assert.equal(rps.yMax, 9);
});

test('every series of a chart shares its scale; every chart shares the time axis', () => {
  const data = series([release('r1', [[0, 100, 0, 10]]), release('r2', [[60, 50, 0, 10]])],
    [container('mc-shop-test-app-1', [[30, 5, 1024 ** 2 * 100]])]);
  const model = buildCharts(data);
  assert.equal(model.start, T0);
  assert.equal(model.end, T0 + 60);
  const rps = model.charts.find((c) => c.id === 'rps')!;
  assert.equal(rps.series[0].segments[0][0].y, BOX.top); // 10 req/s: the max
  assert.equal(rps.series[1].segments[0][0].y, scaleY(5, 10)); // half way
  const cpu = model.charts.find((c) => c.id === 'cpu')!;
  assert.equal(cpu.series[0].segments[0][0].x, (rps.series[0].segments[0][0].x + rps.series[1].segments[0][0].x) / 2);
  assert.equal(cpu.series[0].label, 'app-1'); // the env's prefix goes
  assert.equal(cpu.series[0].title, 'mc-shop-test-app-1');
});

test('now extends the time axis: a quiet env shows where its data stopped', () => {
  const model = buildCharts(series([release('r1', [[0, 10, 0, 1], [10, 10, 0, 1]])]), { now: T0 + 125 });
  assert.equal(model.end, T0 + 120);
  const line = model.charts[0].series[0].segments[0];
  assert.ok(line[1].x < BOX.width - BOX.right);
});

test('5xx rate is percent of the bucket\'s requests; p95 and CPU/memory per container', () => {
  const data = series([release('r1', [[0, 200, 10, 41.5], [10, 100, 0, 80]])],
    [container('mc-shop-test-app-1', [[0, 12.5, 50 * 1024 ** 2], [10, null, 60 * 1024 ** 2]])]);
  const model = buildCharts(data);
  const byId = new Map(model.charts.map((c) => [c.id, c]));
  assert.deepEqual([...byId.keys()], ['rps', 'errors', 'p95', 'cpu', 'memory']);
  assert.deepEqual(byId.get('errors')!.series[0].segments[0].map((p) => p.value), [5, 0]);
  assert.deepEqual(byId.get('p95')!.series[0].segments[0].map((p) => p.value), [41.5, 80]);
  assert.deepEqual(byId.get('cpu')!.series[0].segments.map((s) => s.map((p) => p.value)), [[12.5]]);
  assert.equal(byId.get('memory')!.unit, 'MiB');
  assert.deepEqual(byId.get('memory')!.series[0].segments[0].map((p) => p.value), [50, 60]);
  const big = buildCharts(series([], [container('c', [[0, 1, 3 * 1024 ** 3]])])).charts.find((c) => c.id === 'memory')!;
  assert.equal(big.unit, 'GiB');
  assert.equal(big.series[0].max, 3);
});

test('series keep their color across charts; labels name the role of non-app releases', () => {
  const model = buildCharts(series([release('r1', [[0, 1, 0, 1]]), release('r1', [[0, 1, 0, 1]], 'gateway')]));
  const colors = model.charts.slice(0, 3).map((c) => c.series.map((s) => s.color).join());
  assert.equal(new Set(colors).size, 1);
  assert.notEqual(model.charts[0].series[0].color, model.charts[0].series[1].color);
  assert.deepEqual(model.charts[0].series.map((s) => s.label), ['r1', 'gateway r1']);
});

test('y-axis ticks are round numbers from 0 up to the top, placed on the scale', () => {
  assert.equal(niceStep(2.3), 2);
  assert.equal(niceStep(0.031), 0.05);
  assert.equal(niceStep(20), 20);
  const ticks = valueTicks(9);
  assert.deepEqual(ticks.map((t) => t.value), [0, 2, 4, 6, 8]);
  const many = valueTicks(87);
  assert.deepEqual(many.map((t) => t.label), ['0', '20', '40', '60', '80']);
  assert.equal(many[0].pos, BOX.height - BOX.bottom);
  for (const t of many) assert.equal(t.pos, scaleY(t.value, 87));
  assert.deepEqual(valueTicks(0.13).map((t) => t.label), ['0.00', '0.05', '0.10']);
  // all zero: a chart still has a scale, its line at the bottom
  const errors = chart(series([release('r1', [[0, 10, 0, 1], [10, 10, 0, 1]])]), 'errors');
  assert.equal(errors.yMax, 1);
  assert.equal(errors.series[0].segments[0][0].y, BOX.height - BOX.bottom);
});

test('the time axis has round ticks inside the window, labelled by the clock given', () => {
  const model = buildCharts(series([release('r1', [[0, 1, 0, 1], [3590, 1, 0, 1]])]),
    { clock: (unix) => `t${unix - T0}` });
  const ticks = model.charts[0].xTicks;
  assert.ok(ticks.length >= 3 && ticks.length <= 6, `${ticks.length} ticks`);
  for (const t of ticks) {
    assert.ok(t.value >= model.start && t.value <= model.end);
    assert.ok(t.pos >= BOX.left && t.pos <= BOX.width - BOX.right);
    assert.equal(t.value % 600, 0);
    assert.equal(t.label, `t${t.value - T0}`);
  }
});

test('no data: the empty-state model, and the panel says so plainly', () => {
  const model = buildCharts(series([], []));
  assert.equal(model.empty, true);
  assert.equal(model.charts.length, 0);
  assert.equal(model.message, EMPTY_MESSAGE);
  assert.equal(EMPTY_MESSAGE, 'no metrics yet — deploy and send some requests');
  assert.ok(renderBody(model, { title: 'shop/test' }).includes(EMPTY_MESSAGE));
  // containers sampled but no request yet: the request charts say so, the container charts draw
  const quiet = buildCharts(series([], [container('c', [[0, 1, 1024]])]));
  assert.equal(quiet.empty, false);
  assert.match(quiet.charts[0].empty ?? '', /no requests/);
  assert.equal(quiet.charts[3].empty, null);
});

test('the server\'s error is shown, with the last charts kept', () => {
  const body = renderBody(undefined, { title: 'shop/test', error: 'minicloud: no metrics yet: the collector starts with the first env build' });
  assert.match(body, /class="error">minicloud: no metrics yet: the collector starts/);
  assert.equal(body.includes('loading'), false);
  const model = buildCharts(series([release('r1', [[0, 1, 0, 1]])]));
  const both = renderBody(model, { title: 'shop/test', error: 'minicloud: boom' });
  assert.ok(both.includes('boom') && both.includes('<svg'));
});

test('HTML escapes release and container names (a release called <script>…)', () => {
  const evil = '<script>alert("x")</script>';
  const model = buildCharts(series([release(evil, [[0, 5, 1, 10], [10, 5, 0, 10]])], [container(`c"><img src=x onerror=alert(1)>`, [[0, 1, 1]])]));
  const body = renderBody(model, { title: `${evil}/test`, error: evil });
  assert.equal(body.includes('<script'), false);
  assert.equal(body.includes('<img'), false);
  assert.ok(body.includes('&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;'));
  const doc = renderDocument(body, 'abc123');
  assert.equal(doc.match(/<script/g)?.length, 1, 'only the document\'s own script');
  assert.ok(doc.includes('<script nonce="abc123">'));
  assert.equal(escapeHtml(`a&b<'"`), 'a&amp;b&lt;&#39;&quot;');
});

test('the document has a strict Content-Security-Policy: nothing from outside, its own style and script by nonce', () => {
  const doc = renderDocument('<p>x</p>', 'n0nce');
  const csp = doc.match(/http-equiv="Content-Security-Policy" content="([^"]+)"/)?.[1] ?? '';
  assert.match(csp, /default-src 'none'/);
  assert.match(csp, /script-src 'nonce-n0nce'/);
  assert.match(csp, /style-src 'nonce-n0nce'/);
  assert.equal(/https?:|unsafe-inline|unsafe-eval|\*/.test(csp), false);
  assert.equal(/<(script|link)[^>]+src=|https?:\/\//.test(doc), false, 'no external script, stylesheet or CDN');
});

test('a chart has axis labels and a legend per series', () => {
  const model = buildCharts(series([release('r1', [[0, 10, 0, 1]]), release('r2', [[0, 20, 0, 1]])]));
  const body = renderBody(model, { title: 'shop/test' });
  assert.match(body, /Requests per second \(req\/s\)/);
  assert.match(body, />time<\/text>/);
  assert.match(body, /rotate\(-90\)[^>]*>req\/s<\/text>/);
  const legend = body.match(/<ul class="legend">.*?<\/ul>/)?.[0] ?? '';
  assert.match(legend, /r1 <span class="stat">max 1\.0 req\/s/);
  assert.match(legend, /r2 <span class="stat">max 2\.0 req\/s/);
});
