// The metrics chart: the `minicloud.metrics` series (10 s buckets per release and per container) →
// a chart model (points scaled to the SVG box, gaps where buckets are missing, y-axis ticks, labels)
// → HTML with inline SVG for the webview. Pure: no `vscode`, no I/O.

// ---- the `minicloud.metrics` result
export interface ReleasePoint {
  ts: number; // the bucket's start, unix seconds
  requests: number;
  s4xx: number;
  s5xx: number;
  p50_ms: number | null;
  p95_ms: number | null;
  p99_ms: number | null;
}

export interface ReleaseSeries {
  release: string;
  role: string;
  requests: number;
  s4xx: number;
  s5xx: number;
  error_rate: number | null; // percent
  mean_ms: number | null;
  p50_ms: number | null;
  p95_ms: number | null;
  p99_ms: number | null;
  points: ReleasePoint[];
}

export interface ContainerPoint {
  ts: number;
  cpu_percent: number | null;
  memory_bytes: number | null;
  restarts: number;
}

export interface ContainerSeries {
  container: string;
  role: string;
  release: string | null;
  cpu_avg: number | null;
  cpu_max: number | null;
  memory_max: number | null;
  restarts: number;
  points: ContainerPoint[];
}

export interface MetricsSeries {
  app: string;
  env: string;
  since: number;
  resolution_s: number;
  releases: ReleaseSeries[];
  containers: ContainerSeries[];
}

// ---- the model
export interface Box {
  width: number;
  height: number;
  left: number;
  right: number;
  top: number;
  bottom: number;
}

export const BOX: Box = { width: 640, height: 240, left: 60, right: 16, top: 14, bottom: 44 };

export const EMPTY_MESSAGE = 'no metrics yet — deploy and send some requests';

export interface Point {
  ts: number;
  value: number;
  x: number;
  y: number;
}

export interface Series {
  label: string; // what the legend says
  title: string; // the full name (hover)
  color: string;
  dash: string | null; // a stroke-dasharray once the palette is used up
  segments: Point[][]; // a polyline each; a missing bucket (or a null value) ends one
  max: number | null;
  last: number | null;
}

export interface Tick {
  value: number;
  pos: number; // y (value axis) or x (time axis) in the box
  label: string;
}

export interface Chart {
  id: string;
  title: string;
  unit: string;
  box: Box;
  yMax: number; // the top of the plot
  yTicks: Tick[];
  xTicks: Tick[];
  series: Series[];
  empty: string | null; // why the chart has no line, when it has none
}

export interface ChartsModel {
  app: string;
  env: string;
  resolution: number;
  start: number;
  end: number;
  empty: boolean;
  message: string | null;
  charts: Chart[];
  releases: ReleaseSeries[];
  containers: ContainerSeries[];
}

export interface ChartOptions {
  box?: Box;
  now?: number; // unix seconds: the time axis runs at least up to here
  clock?: (unix: number, seconds: boolean) => string; // a time's label, local HH:MM by default
}

const PALETTE = ['#4e79a7', '#f28e2b', '#e15759', '#76b7b2', '#59a14f', '#edc948', '#b07aa1', '#ff9da7', '#9c755f', '#bab0ac'];
const DASHES = [null, '6 3', '2 3'];

export function colorOf(index: number): { color: string; dash: string | null } {
  return { color: PALETTE[index % PALETTE.length], dash: DASHES[Math.floor(index / PALETTE.length) % DASHES.length] };
}

function localClock(unix: number, seconds: boolean): string {
  const d = new Date(unix * 1000);
  const parts = [d.getHours(), d.getMinutes(), ...(seconds ? [d.getSeconds()] : [])];
  return parts.map((n) => String(n).padStart(2, '0')).join(':');
}

const finite = (v: number | null | undefined): v is number => typeof v === 'number' && Number.isFinite(v);

/** The tick step of 1, 2 or 5 × 10^k nearest to `raw`. */
export function niceStep(raw: number): number {
  if (!(raw > 0) || !Number.isFinite(raw)) return 1;
  const power = 10 ** Math.floor(Math.log10(raw));
  const f = raw / power;
  return (f < 1.5 ? 1 : f < 3 ? 2 : f < 7 ? 5 : 10) * power;
}

/** Ticks of the value axis from 0 to `yMax` (the top of the plot), about four of them. */
export function valueTicks(yMax: number, box: Box = BOX): Tick[] {
  const step = niceStep(yMax / 4);
  const decimals = Math.max(0, -Math.floor(Math.log10(step)));
  const ticks: Tick[] = [];
  for (let k = 0; k * step <= yMax * (1 + 1e-9); k++) {
    const value = +(k * step).toFixed(decimals);
    ticks.push({ value, pos: scaleY(value, yMax, box), label: value.toFixed(decimals) });
  }
  return ticks;
}

const TIME_STEPS = [10, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 21600, 43200, 86400];

/** Ticks of the time axis: round times, at most six. */
export function timeTicks(start: number, end: number, box: Box = BOX,
  clock: (unix: number, seconds: boolean) => string = localClock): Tick[] {
  const span = Math.max(end - start, 1);
  const step = TIME_STEPS.find((s) => span / s <= 6) ?? TIME_STEPS[TIME_STEPS.length - 1];
  const ticks: Tick[] = [];
  for (let ts = Math.ceil(start / step) * step; ts <= end; ts += step) {
    ticks.push({ value: ts, pos: scaleX(ts, start, end, box), label: clock(ts, step < 60) });
  }
  return ticks;
}

export function scaleX(ts: number, start: number, end: number, box: Box = BOX): number {
  const width = box.width - box.left - box.right;
  const span = end > start ? end - start : 1;
  return round1(box.left + ((ts - start) / span) * width);
}

/** 0 maps to the bottom of the plot, `yMax` to its top. */
export function scaleY(value: number, yMax: number, box: Box = BOX): number {
  const height = box.height - box.top - box.bottom;
  return round1(box.top + height - (value / (yMax > 0 ? yMax : 1)) * height);
}

function round1(n: number): number {
  return Math.round(n * 10) / 10;
}

/** The runs of consecutive buckets with a value: a bucket more than `resolution` after the one before
 * (a missing bucket) or a null value starts a new run. */
export function runs(values: { ts: number; value: number | null }[], resolution: number): { ts: number; value: number }[][] {
  const out: { ts: number; value: number }[][] = [];
  let current: { ts: number; value: number }[] = [];
  let previous: number | undefined;
  for (const v of [...values].sort((a, b) => a.ts - b.ts)) {
    if (!finite(v.value)) {
      if (current.length) out.push(current);
      current = [];
    } else {
      if (current.length && previous !== undefined && v.ts - previous > resolution * 1.5) {
        out.push(current);
        current = [];
      }
      current.push({ ts: v.ts, value: v.value });
    }
    previous = v.ts;
  }
  if (current.length) out.push(current);
  return out;
}

interface RawSeries {
  label: string;
  title: string;
  index: number; // the color
  values: { ts: number; value: number | null }[];
}

function buildChart(id: string, title: string, unit: string, raws: RawSeries[], start: number, end: number,
  resolution: number, box: Box, clock: (unix: number, seconds: boolean) => string, none: string): Chart {
  const split = raws.map((r) => ({ raw: r, runs: runs(r.values, resolution) }));
  const all = split.flatMap((s) => s.runs.flat().map((p) => p.value));
  const max = all.length ? Math.max(...all) : 0;
  const yMax = max > 0 ? max : 1;
  const series = split.map(({ raw, runs: rs }): Series => {
    const values = rs.flat();
    return {
      label: raw.label, title: raw.title, ...colorOf(raw.index),
      segments: rs.map((run) => run.map((p) => ({ ...p, x: scaleX(p.ts, start, end, box), y: scaleY(p.value, yMax, box) }))),
      max: values.length ? Math.max(...values.map((p) => p.value)) : null,
      last: values.length ? values[values.length - 1].value : null,
    };
  });
  return {
    id, title, unit, box, yMax, yTicks: valueTicks(yMax, box), xTicks: timeTicks(start, end, box, clock), series,
    empty: !raws.length ? none : all.length ? null : 'no data in this window',
  };
}

export function releaseLabel(r: { role: string; release: string | null }): string {
  if (r.role === 'app') return r.release || 'app';
  return r.release ? `${r.role} ${r.release}` : r.role;
}

/** A container's name without the `mc-APP-ENV-` every container of the env has. */
export function containerLabel(name: string, app: string, env: string): string {
  const prefix = `mc-${app}-${env}-`;
  return name.startsWith(prefix) && name.length > prefix.length ? name.slice(prefix.length) : name;
}

/** The chart model of a `minicloud.metrics` result: requests/s, 5xx rate and p95 per release, CPU and
 * memory per container, all on the same time axis (the data's first bucket to its last, or `now`). */
export function buildCharts(data: MetricsSeries, options: ChartOptions = {}): ChartsModel {
  const box = options.box ?? BOX;
  const clock = options.clock ?? localClock;
  const resolution = data.resolution_s > 0 ? data.resolution_s : 10;
  const releases = data.releases ?? [];
  const containers = data.containers ?? [];
  const stamps = [...releases.flatMap((r) => r.points.map((p) => p.ts)), ...containers.flatMap((c) => c.points.map((p) => p.ts))];
  const base = { app: data.app, env: data.env, resolution, releases, containers };
  if (!stamps.length) {
    return { ...base, start: data.since, end: data.since, empty: true, message: EMPTY_MESSAGE, charts: [] };
  }
  const start = Math.min(...stamps);
  let end = Math.max(...stamps);
  if (finite(options.now)) end = Math.max(end, Math.floor(options.now / resolution) * resolution);
  if (end <= start) end = start + resolution;

  const perRelease = (value: (p: ReleasePoint) => number | null): RawSeries[] => releases.map((r, index) => ({
    label: releaseLabel(r), title: `${r.role} ${r.release}`, index,
    values: r.points.map((p) => ({ ts: p.ts, value: value(p) })),
  }));
  const memoryMax = Math.max(0, ...containers.flatMap((c) => c.points.map((p) => p.memory_bytes ?? 0)));
  const [memUnit, memDiv] = memoryMax >= 2 * 1024 ** 3 ? ['GiB', 1024 ** 3] : ['MiB', 1024 ** 2];
  const perContainer = (value: (p: ContainerPoint) => number | null): RawSeries[] => containers.map((c, index) => ({
    label: containerLabel(c.container, data.app, data.env), title: c.container, index,
    values: c.points.map((p) => ({ ts: p.ts, value: value(p) })),
  }));
  const noRequests = 'no requests in this window';
  const noSamples = 'no container samples in this window';
  const chart = (id: string, title: string, unit: string, raws: RawSeries[], none: string) =>
    buildChart(id, title, unit, raws, start, end, resolution, box, clock, none);
  return {
    ...base, start, end, empty: false, message: null,
    charts: [
      chart('rps', 'Requests per second', 'req/s', perRelease((p) => p.requests / resolution), noRequests),
      chart('errors', '5xx rate', '%', perRelease((p) => (p.requests > 0 ? (100 * p.s5xx) / p.requests : null)), noRequests),
      chart('p95', 'p95 latency', 'ms', perRelease((p) => p.p95_ms), noRequests),
      chart('cpu', 'CPU', '%', perContainer((p) => p.cpu_percent), noSamples),
      chart('memory', 'Memory', memUnit, perContainer((p) => (finite(p.memory_bytes) ? p.memory_bytes / memDiv : null)), noSamples),
    ],
  };
}

// ---- HTML
export function escapeHtml(text: unknown): string {
  return String(text ?? '').replace(/[&<>"']/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' }[c]!));
}

/** A value with its unit, as the legend and the tables say it. */
export function formatValue(value: number | null | undefined, unit: string): string {
  if (!finite(value)) return '–';
  const digits = unit === 'ms' || Math.abs(value) >= 100 ? 0 : unit === '%' && Math.abs(value) < 1 ? 2 : 1;
  const text = value.toFixed(digits);
  return unit === '%' ? `${text}%` : `${text} ${unit}`;
}

function formatBytes(bytes: number | null | undefined): string {
  if (!finite(bytes)) return '–';
  if (bytes < 1024 ** 2) return `${(bytes / 1024).toFixed(0)} KiB`;
  if (bytes < 1024 ** 3) return `${(bytes / 1024 ** 2).toFixed(1)} MiB`;
  return `${(bytes / 1024 ** 3).toFixed(2)} GiB`;
}

export function renderChartSvg(c: Chart): string {
  const { box } = c;
  const bottom = box.height - box.bottom;
  const right = box.width - box.right;
  const out: string[] = [
    `<svg class="chart" viewBox="0 0 ${box.width} ${box.height}" role="img" aria-label="${escapeHtml(`${c.title} (${c.unit})`)}">`,
  ];
  for (const t of c.yTicks) {
    out.push(`<line class="grid" x1="${box.left}" x2="${right}" y1="${t.pos}" y2="${t.pos}"/>`,
      `<text class="tick" x="${box.left - 6}" y="${t.pos + 4}" text-anchor="end">${escapeHtml(t.label)}</text>`);
  }
  for (const t of c.xTicks) {
    out.push(`<line class="axis" x1="${t.pos}" x2="${t.pos}" y1="${bottom}" y2="${bottom + 4}"/>`,
      `<text class="tick" x="${t.pos}" y="${bottom + 16}" text-anchor="middle">${escapeHtml(t.label)}</text>`);
  }
  out.push(`<line class="axis" x1="${box.left}" x2="${box.left}" y1="${box.top}" y2="${bottom}"/>`,
    `<line class="axis" x1="${box.left}" x2="${right}" y1="${bottom}" y2="${bottom}"/>`,
    `<text class="label" transform="rotate(-90)" x="${-(box.top + (bottom - box.top) / 2)}" y="14" text-anchor="middle">${escapeHtml(c.unit)}</text>`,
    `<text class="label" x="${box.left + (right - box.left) / 2}" y="${box.height - 6}" text-anchor="middle">time</text>`);
  for (const s of c.series) {
    const dash = s.dash ? ` stroke-dasharray="${s.dash}"` : '';
    for (const seg of s.segments) {
      const hover = `<title>${escapeHtml(s.title)}</title>`;
      if (seg.length === 1) {
        out.push(`<circle cx="${seg[0].x}" cy="${seg[0].y}" r="2" fill="${s.color}">${hover}</circle>`);
      } else {
        out.push(`<polyline class="line" points="${seg.map((p) => `${p.x},${p.y}`).join(' ')}" stroke="${s.color}"${dash}>${hover}</polyline>`);
      }
    }
  }
  if (c.empty) {
    out.push(`<text class="empty" x="${box.left + (right - box.left) / 2}" y="${box.top + (bottom - box.top) / 2}" text-anchor="middle">${escapeHtml(c.empty)}</text>`);
  }
  out.push('</svg>');
  return out.join('');
}

function legend(c: Chart): string {
  if (!c.series.length) return '';
  const items = c.series.map((s) => {
    const dash = s.dash ? ` stroke-dasharray="${s.dash}"` : '';
    return `<li title="${escapeHtml(s.title)}"><svg class="swatch" viewBox="0 0 16 6" width="16" height="6">`
      + `<line x1="0" x2="16" y1="3" y2="3" stroke="${s.color}" stroke-width="3"${dash}/></svg>`
      + `${escapeHtml(s.label)} <span class="stat">max ${escapeHtml(formatValue(s.max, c.unit))} · last ${escapeHtml(formatValue(s.last, c.unit))}</span></li>`;
  });
  return `<ul class="legend">${items.join('')}</ul>`;
}

function tables(model: ChartsModel): string {
  const cell = (v: unknown) => `<td>${escapeHtml(v)}</td>`;
  const out: string[] = [];
  if (model.releases.length) {
    out.push('<h2>Releases</h2><table><thead><tr><th>release</th><th>role</th><th>requests</th><th>4xx</th><th>5xx</th>'
      + '<th>5xx rate</th><th>mean</th><th>p50</th><th>p95</th><th>p99</th></tr></thead><tbody>');
    for (const r of model.releases) {
      out.push(`<tr>${[r.release, r.role, r.requests, r.s4xx, r.s5xx, formatValue(r.error_rate, '%'),
        formatValue(r.mean_ms, 'ms'), formatValue(r.p50_ms, 'ms'), formatValue(r.p95_ms, 'ms'), formatValue(r.p99_ms, 'ms')]
        .map(cell).join('')}</tr>`);
    }
    out.push('</tbody></table>');
  }
  if (model.containers.length) {
    out.push('<h2>Containers</h2><table><thead><tr><th>container</th><th>role</th><th>release</th><th>CPU avg</th>'
      + '<th>CPU max</th><th>memory max</th><th>restarts</th></tr></thead><tbody>');
    for (const c of model.containers) {
      out.push(`<tr>${[c.container, c.role, c.release ?? '–', formatValue(c.cpu_avg, '%'), formatValue(c.cpu_max, '%'),
        formatBytes(c.memory_max), c.restarts].map(cell).join('')}</tr>`);
    }
    out.push('</tbody></table>');
  }
  return out.join('');
}

export interface BodyState {
  title: string; // "shop/test"
  error?: string; // the server's message when the last `minicloud.metrics` failed
  updated?: string; // when the model was fetched
}

/** The content of the panel: the charts (or why there are none) and the error of the last request. */
export function renderBody(model: ChartsModel | undefined, state: BodyState): string {
  const out = [`<header><h1>metrics of ${escapeHtml(state.title)}</h1>`];
  const meta = ['the last hour', `${model?.resolution ?? 10} s buckets`];
  if (state.updated) meta.push(`updated ${state.updated}`);
  out.push(`<p class="meta">${escapeHtml(meta.join(' · '))}</p></header>`);
  if (state.error) out.push(`<p class="error">${escapeHtml(state.error)}</p>`);
  if (!model) {
    if (!state.error) out.push('<p class="note">loading…</p>');
  } else if (model.empty) {
    out.push(`<p class="note">${escapeHtml(model.message ?? EMPTY_MESSAGE)}</p>`);
  } else {
    out.push('<section class="charts">');
    for (const c of model.charts) {
      out.push(`<figure id="${escapeHtml(c.id)}"><figcaption>${escapeHtml(c.title)} (${escapeHtml(c.unit)})</figcaption>`
        + `${renderChartSvg(c)}${legend(c)}</figure>`);
    }
    out.push('</section>', tables(model));
  }
  return out.join('');
}

const STYLE = `
body { color: var(--vscode-foreground); font-family: var(--vscode-font-family); font-size: var(--vscode-font-size); padding: 0 12px 16px; }
h1 { font-size: 1.2em; margin: 12px 0 2px; } h2 { font-size: 1.05em; margin: 16px 0 6px; }
.meta { opacity: .75; margin: 0 0 10px; }
.note { font-size: 1.1em; margin: 24px 0; }
.error { color: var(--vscode-errorForeground); border: 1px solid var(--vscode-inputValidation-errorBorder, currentColor); padding: 6px 8px; white-space: pre-wrap; }
.charts { display: grid; grid-template-columns: repeat(auto-fit, minmax(440px, 1fr)); gap: 12px 20px; }
figure { margin: 0; } figcaption { font-weight: 600; margin-bottom: 4px; }
svg.chart { width: 100%; height: auto; display: block; }
svg.chart text { fill: var(--vscode-foreground); font-size: 11px; }
svg.chart text.label { opacity: .8; } svg.chart text.empty { opacity: .7; font-size: 13px; }
svg.chart line.grid { stroke: var(--vscode-foreground); stroke-opacity: .12; }
svg.chart line.axis { stroke: var(--vscode-foreground); stroke-opacity: .5; }
svg.chart polyline.line { fill: none; stroke-width: 1.6; stroke-linejoin: round; }
.legend { list-style: none; padding: 0; margin: 4px 0 0 60px; display: flex; flex-wrap: wrap; gap: 2px 14px; }
.legend li { white-space: nowrap; } .swatch { margin-right: 5px; vertical-align: middle; }
.stat { opacity: .7; }
table { border-collapse: collapse; } th, td { text-align: left; padding: 2px 10px 2px 0; }
td { font-variant-numeric: tabular-nums; } th { opacity: .8; font-weight: 600; }
`;

// replaces the panel's content in place when the extension sends a new one (the scroll position stays)
const SCRIPT = `
const vscode = acquireVsCodeApi();
window.addEventListener('message', (event) => {
  const m = event.data;
  if (m && m.type === 'body' && typeof m.html === 'string') document.getElementById('root').innerHTML = m.html;
});
vscode.postMessage({ type: 'ready' });
`;

/** The webview's document: a strict Content-Security-Policy (nothing from outside, only this document's
 * own style and script, by nonce), then `body`. */
export function renderDocument(body: string, nonce: string, title = 'minicloud metrics'): string {
  const n = escapeHtml(nonce);
  const csp = `default-src 'none'; style-src 'nonce-${n}'; script-src 'nonce-${n}'; img-src data:; font-src 'none'; connect-src 'none'; frame-src 'none'; form-action 'none'; base-uri 'none'`;
  return `<!DOCTYPE html><html lang="en"><head><meta charset="UTF-8">`
    + `<meta http-equiv="Content-Security-Policy" content="${csp}">`
    + `<meta name="viewport" content="width=device-width, initial-scale=1.0"><title>${escapeHtml(title)}</title>`
    + `<style nonce="${n}">${STYLE}</style></head>`
    + `<body><main id="root">${body}</main><script nonce="${n}">${SCRIPT}</script></body></html>`;
}
