// The live metrics of an env (the server's `minicloud/metrics` notifications) in the status bar:
// requests/s, 5xx rate and p95 of the serving app release(s), firing alerts, a running canary. Pure.

import { CanarySplit, EnvStatus, statusBarText } from './tree';

/** One release's last ~10–20 s, as `minicloud/metrics` sends it (rates in percent). */
export interface ReleaseLive {
  role: string;
  release: string;
  rps: number;
  error_rate: number | null;
  s4xx_rate: number | null;
  p95_ms: number | null;
}

export interface ContainerLive {
  container: string;
  role: string;
  release: string | null;
  cpu_percent: number | null;
  memory_bytes: number | null;
  restarts: number;
  state: string;
}

export interface FiringAlert {
  alert: string;
  subject: string | null;
  rule: string;
  value: string; // already formatted by the server, e.g. "5.2%"
  since: number; // unix seconds
  at: number;
}

/** The params of the `minicloud/metrics` notification. `app` is the app's name (as `minicloud.status` says it). */
export interface LiveMetrics {
  app: string;
  env: string;
  at: number;
  releases: ReleaseLive[];
  containers: ContainerLive[];
  firing: FiringAlert[];
  canary: CanarySplit | null;
}

/** The key of an app's env in the map of live metrics: by the app's name, which is what the notification carries. */
export function metricsKey(appName: string, env: string): string {
  return `${appName}\u0000${env}`;
}

export interface Traffic {
  rps: number;
  errorRate: number | null; // percent of the requests answered 5xx, weighted by each release's rps
  p95: number | null; // ms, the worst of the releases
}

/** The serving app's traffic: the sum over the releases of role "app" (a canary and the serving release
 * both count); undefined when no app release reports. */
export function appTraffic(releases: ReleaseLive[]): Traffic | undefined {
  const app = releases.filter((r) => r.role === 'app');
  if (!app.length) return undefined;
  let rps = 0;
  let weighted = 0;
  let weight = 0;
  let p95: number | null = null;
  for (const r of app) {
    const n = Number.isFinite(r.rps) ? r.rps : 0;
    rps += n;
    if (r.error_rate !== null && r.error_rate !== undefined && n > 0) {
      weighted += r.error_rate * n;
      weight += n;
    }
    if (r.p95_ms !== null && r.p95_ms !== undefined) p95 = p95 === null ? r.p95_ms : Math.max(p95, r.p95_ms);
  }
  return { rps, errorRate: weight > 0 ? weighted / weight : null, p95 };
}

export function formatRps(rps: number): string {
  if (rps === 0) return '0 req/s';
  return `${rps >= 100 ? Math.round(rps) : rps.toFixed(1)} req/s`;
}

/** A percentage; a small non-zero one is not shown as 0.0%. */
export function formatPercent(p: number): string {
  if (p > 0 && p < 0.1) return '<0.1%';
  return `${p.toFixed(1)}%`;
}

export function formatMs(ms: number): string {
  return ms >= 1000 ? `${(ms / 1000).toFixed(2)} s` : `${Math.round(ms)} ms`;
}

/** Whether the live metrics of an env are worth showing: its status is known and it is up (a stopped env
 * gets no more notifications, so the last one would be stale). */
export function showsMetrics(status: EnvStatus | undefined): boolean {
  return !!status && status.state !== 'stopped' && status.state !== 'not-built';
}

/** " · 12.3 req/s · 0.0% 5xx · p95 41 ms · canary 10% · $(bell) 1": what the live metrics add to the status bar. */
export function metricsSuffix(live: LiveMetrics | undefined): string {
  if (!live) return '';
  const parts: string[] = [];
  const t = appTraffic(live.releases ?? []);
  if (t) {
    parts.push(formatRps(t.rps));
    if (t.errorRate !== null) parts.push(`${formatPercent(t.errorRate)} 5xx`);
    if (t.p95 !== null) parts.push(`p95 ${formatMs(t.p95)}`);
  }
  if (live.canary && typeof live.canary.percent === 'number') parts.push(`canary ${live.canary.percent}%`);
  if (live.firing?.length) parts.push(`$(bell) ${live.firing.length}`);
  return parts.map((p) => ` · ${p}`).join('');
}

/** The status bar text: the env's state and release (`statusBarText`), then its live metrics. */
export function statusBarWithMetrics(status: EnvStatus | undefined, env: string, app: string | undefined,
  live: LiveMetrics | undefined): string {
  return statusBarText(status, env, app) + (showsMetrics(status) ? metricsSuffix(live) : '');
}

function clock(unix: number): string {
  const d = new Date(unix * 1000);
  return [d.getHours(), d.getMinutes(), d.getSeconds()].map((n) => String(n).padStart(2, '0')).join(':');
}

/** The status bar tooltip: the env's URL, each release's numbers, the canary and the firing alerts. */
export function statusBarTooltip(status: EnvStatus | undefined, fallback: string, live: LiveMetrics | undefined,
  time: (unix: number) => string = clock): string {
  const lines = [status?.url ?? fallback];
  if (!showsMetrics(status) || !live) return lines[0];
  for (const r of live.releases ?? []) {
    const numbers = [formatRps(r.rps)];
    if (r.error_rate !== null && r.error_rate !== undefined) numbers.push(`${formatPercent(r.error_rate)} 5xx`);
    if (r.s4xx_rate !== null && r.s4xx_rate !== undefined) numbers.push(`${formatPercent(r.s4xx_rate)} 4xx`);
    if (r.p95_ms !== null && r.p95_ms !== undefined) numbers.push(`p95 ${formatMs(r.p95_ms)}`);
    lines.push(`${r.role}${r.release ? ` ${r.release}` : ''}: ${numbers.join(', ')}`);
  }
  if (live.canary && typeof live.canary.percent === 'number') {
    lines.push(`canary: ${live.canary.percent}% of the users on ${live.canary.canary}, the rest on ${live.canary.serving}`);
  }
  if (live.firing?.length) {
    lines.push(`${live.firing.length} alert${live.firing.length === 1 ? '' : 's'} firing:`);
    for (const f of live.firing) {
      lines.push(`  ${f.alert}${f.subject ? ` (${f.subject})` : ''}: ${f.value} — ${f.rule}, since ${time(f.since)}`);
    }
  }
  return lines.join('\n');
}
