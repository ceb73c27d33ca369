// The "minicloud metrics" webview: one panel per app/env, drawn from `minicloud.metrics` (the last hour)
// with chartData's inline SVG; refreshed every 10 s while visible and on `minicloud/metrics`
// notifications (at most every 10 s). The model and the HTML are chartData's; this is the plumbing.

import { randomBytes } from 'node:crypto';
import * as vscode from 'vscode';
import { buildCharts, ChartsModel, MetricsSeries, renderBody, renderDocument } from './chartData';
import { LiveMetrics } from './metricsView';

const REFRESH_MS = 10_000;
const WINDOW_S = 3600;

/** Runs `minicloud.metrics` (rejects with the server's message when it fails). */
export type FetchMetrics = (arg: { env: string; app?: string; uri?: string; since: number }) => Promise<MetricsSeries>;

export interface ChartTarget {
  key: string; // one panel per app/env
  where: { app?: string; uri?: string }; // what tells the server the app
  env: string;
  title: string; // "shop/test", or "test"
  appName?: string; // matched against the notifications' `app` (known after the first answer otherwise)
}

function clock(date: Date): string {
  return [date.getHours(), date.getMinutes(), date.getSeconds()].map((n) => String(n).padStart(2, '0')).join(':');
}

class ChartPanel {
  private model: ChartsModel | undefined;
  private body: string;
  private ready = false;
  private inFlight = false;
  private lastFetch = 0;
  private timer: ReturnType<typeof setInterval>;
  private readonly disposables: vscode.Disposable[] = [];

  constructor(readonly panel: vscode.WebviewPanel, private target: ChartTarget, private readonly fetch: FetchMetrics,
    onDispose: () => void) {
    this.body = renderBody(undefined, { title: target.title });
    panel.webview.html = renderDocument(this.body, randomBytes(16).toString('base64'), `minicloud metrics: ${target.title}`);
    this.disposables.push(
      panel.webview.onDidReceiveMessage((m: { type?: string }) => {
        if (m?.type === 'ready') { this.ready = true; this.post(); } // a new document (first, or shown again)
      }),
      panel.onDidChangeViewState(() => {
        if (!panel.visible) this.ready = false; // its document goes; it says ready again when shown
        else this.refreshIfDue();
      }),
      panel.onDidDispose(() => { this.dispose(); onDispose(); }),
    );
    this.timer = setInterval(() => this.refreshIfDue(), REFRESH_MS);
    void this.refresh();
  }

  matches(live: LiveMetrics): boolean {
    return live.env === this.target.env && !!live.app && live.app === (this.target.appName ?? this.model?.app);
  }

  retarget(target: ChartTarget): void {
    this.target = { ...target, appName: target.appName ?? this.target.appName };
  }

  refreshIfDue(): void {
    if (this.panel.visible && Date.now() - this.lastFetch >= REFRESH_MS - 500) void this.refresh();
  }

  async refresh(): Promise<void> {
    if (this.inFlight) return;
    this.inFlight = true;
    this.lastFetch = Date.now();
    const now = Date.now() / 1000;
    let error: string | undefined;
    try {
      const data = await this.fetch({ ...this.target.where, env: this.target.env, since: Math.floor(now - WINDOW_S) });
      this.model = buildCharts(data, { now });
      if (data.app) this.target.appName = data.app;
    } catch (err: any) {
      error = `minicloud: ${err?.message ?? err}`;
    } finally {
      this.inFlight = false;
    }
    this.body = renderBody(this.model, { title: this.target.title, error, updated: clock(new Date()) });
    this.post();
  }

  private post(): void {
    if (this.ready) void this.panel.webview.postMessage({ type: 'body', html: this.body });
  }

  dispose(): void {
    clearInterval(this.timer);
    for (const d of this.disposables) d.dispose();
    this.disposables.length = 0;
  }
}

export class ChartPanels implements vscode.Disposable {
  private readonly panels = new Map<string, ChartPanel>();

  constructor(private readonly fetch: FetchMetrics) {}

  show(target: ChartTarget): void {
    const open = this.panels.get(target.key);
    if (open) {
      open.retarget(target);
      open.panel.reveal();
      void open.refresh();
      return;
    }
    const panel = vscode.window.createWebviewPanel('minicloud.metrics', `metrics: ${target.title}`,
      vscode.ViewColumn.Beside, { enableScripts: true, localResourceRoots: [] });
    this.panels.set(target.key, new ChartPanel(panel, target, this.fetch, () => this.panels.delete(target.key)));
  }

  /** A `minicloud/metrics` notification: the panels of that app/env redraw, at most every 10 s. */
  onMetrics(live: LiveMetrics): void {
    for (const p of this.panels.values()) if (p.matches(live)) p.refreshIfDue();
  }

  dispose(): void {
    for (const p of [...this.panels.values()]) p.panel.dispose();
    this.panels.clear();
  }
}
