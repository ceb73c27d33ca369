// The "Environments" view, built from `minicloud.status` results: app → envs → containers, releases
// and functions, one app per minicloud.toml of the workspace. Pure.

export interface ContainerStatus {
  role: string;
  name: string;
  state: string;
  health: string | null;
  cpu_percent: number | null;
  mem_bytes: number | null;
  release?: string | null;
}

export interface Release {
  id: string;
  image: string;
  created: string;
  current: boolean;
}

/** A cloud function as `minicloud.status` reports it (from the env's scheduler). */
export interface FunctionStatus {
  version: string;
  runtime?: string;
  reserved: number;
  on_demand: number;
  busy: number;
  idle: number;
  queue: number;
  invocations: number;
  errors: number;
  p95_ms: number | null;
}

export interface EnvStatus {
  env: string;
  app: string;
  state: string;
  release: string | null;
  url: string;
  containers: ContainerStatus[];
  releases?: Release[];
  functions?: Record<string, FunctionStatus>;
  collections?: { name: string; count: number }[] | null; // the data API's ([data] in the manifest)
  canary?: CanarySplit | null; // not sent yet: the split comes from the `minicloud/metrics` notifications
}

/** A canary in progress: `percent` of the users on release `canary`, the rest on `serving`. */
export interface CanarySplit {
  percent: number;
  serving: string;
  canary: string;
}

export type NodeKind = 'app' | 'env' | 'group' | 'container' | 'release' | 'function' | 'collection';

export interface TreeNode {
  kind: NodeKind;
  label: string;
  description?: string;
  tooltip?: string;
  contextValue: string;
  env: string;
  app?: string; // the app's root folder: commands from this node act on that app
  releaseId?: string;
  functionName?: string;
  children: TreeNode[];
}

/** One app of the workspace: the folder of its minicloud.toml, and its name once the server said it. */
export interface AppInfo {
  root: string;
  name?: string;
}

/** The app of a file: the nearest root above it (the longest root that holds it), as the CLI finds it. */
export function appOf(file: string | undefined, roots: string[], sep = '/'): string | undefined {
  if (!file) return undefined;
  let best: string | undefined;
  for (const root of roots) {
    const prefix = root.endsWith(sep) ? root : root + sep;
    if ((file === root || file.startsWith(prefix)) && (!best || root.length > best.length)) best = root;
  }
  return best;
}

/** The key of an app's env in the map of statuses. */
export function statusKey(root: string | undefined, env: string): string {
  return `${root ?? ''}\u0000${env}`;
}

export function appLabel(app: AppInfo, sep = '/'): string {
  return app.name ?? app.root.split(sep).filter(Boolean).pop() ?? app.root;
}

export function formatBytes(bytes: number | null): string {
  if (bytes === null || bytes === undefined) return '–';
  if (bytes < 1024 * 1024) return `${(bytes / 1024).toFixed(0)} KiB`;
  if (bytes < 1024 ** 3) return `${(bytes / 1024 / 1024).toFixed(1)} MiB`;
  return `${(bytes / 1024 ** 3).toFixed(2)} GiB`;
}

export function containerNode(env: string, c: ContainerStatus): TreeNode {
  const cpu = c.cpu_percent === null || c.cpu_percent === undefined ? '–' : `${c.cpu_percent.toFixed(1)}%`;
  const health = c.health ? `, ${c.health}` : '';
  return {
    kind: 'container', label: c.role, env, contextValue: 'container', children: [],
    description: `${c.state}${health} · CPU ${cpu} · ${formatBytes(c.mem_bytes)}`,
    tooltip: c.name,
  };
}

/** "2 reserved · 1 on demand (1 busy) · p95 12 ms · 40 calls, 1 error". */
export function functionDescription(f: FunctionStatus): string {
  const parts = [];
  if (f.reserved) parts.push(`${f.reserved} reserved`);
  parts.push(`${f.on_demand} on demand${f.busy ? ` (${f.busy} busy)` : ''}`);
  if (f.queue) parts.push(`${f.queue} queued`);
  if (f.p95_ms !== null && f.p95_ms !== undefined) parts.push(`p95 ${f.p95_ms} ms`);
  parts.push(`${f.invocations} calls${f.errors ? `, ${f.errors} error${f.errors === 1 ? '' : 's'}` : ''}`);
  return parts.join(' · ');
}

export function functionNode(env: string, name: string, f: FunctionStatus, app?: string): TreeNode {
  return {
    kind: 'function', label: name, env, app, functionName: name, contextValue: 'function', children: [],
    description: functionDescription(f), tooltip: `${name} ${f.version}`,
  };
}

/** "canary 10% → 20261127-101500-ab12cd". */
export function canaryText(split: CanarySplit): string {
  return `canary ${split.percent}%${split.canary ? ` → ${split.canary}` : ''}`;
}

/** The canary of an env: the status's own when it carries one (null: none), else `live` (from the latest
 * `minicloud/metrics` notification) unless the env is stopped or gone (no notification says so). */
export function canaryOf(status: EnvStatus, live?: CanarySplit | null): CanarySplit | null {
  const valid = (c: CanarySplit | null | undefined): c is CanarySplit =>
    !!c && typeof c.percent === 'number' && typeof c.canary === 'string';
  if (status.canary === null) return null;
  if (valid(status.canary)) return status.canary;
  return valid(live) && status.state !== 'stopped' && status.state !== 'not-built' ? live : null;
}

export function envNode(status: EnvStatus, app?: string, liveCanary?: CanarySplit | null): TreeNode {
  const containers = status.containers.map((c) => ({ ...containerNode(status.env, c), app }));
  const releases = (status.releases ?? []).map((r): TreeNode => ({
    kind: 'release', label: r.id, env: status.env, app, releaseId: r.id, children: [],
    description: r.current ? 'running' : r.created.replace('T', ' ').slice(0, 19),
    contextValue: r.current ? 'release.current' : 'release',
    tooltip: r.image,
  }));
  const functions = Object.entries(status.functions ?? {}).sort(([a], [b]) => a.localeCompare(b))
    .map(([name, f]) => functionNode(status.env, name, f, app));
  const groups: TreeNode[] = [
    { kind: 'group', label: 'Containers', env: status.env, app, contextValue: 'containers', children: containers,
      description: `${containers.length}` },
    { kind: 'group', label: 'Releases', env: status.env, app, contextValue: 'releases', children: releases,
      description: `${releases.length}` },
  ];
  if (functions.length) {
    const instances = Object.values(status.functions ?? {}).reduce((n, f) => n + f.reserved + f.on_demand, 0);
    groups.push({ kind: 'group', label: 'Functions', env: status.env, app, contextValue: 'functions',
      children: functions, description: `${functions.length} · ${instances} instance${instances === 1 ? '' : 's'}` });
  }
  if (status.collections) {
    const collections = [...status.collections].sort((a, b) => a.name.localeCompare(b.name))
      .map((c): TreeNode => ({ kind: 'collection', label: c.name, env: status.env, app, children: [],
        contextValue: 'collection', description: `${c.count} document${c.count === 1 ? '' : 's'}` }));
    const total = status.collections.reduce((n, c) => n + c.count, 0);
    groups.push({ kind: 'group', label: 'Collections', env: status.env, app, contextValue: 'collections',
      children: collections, description: `${collections.length} · ${total} document${total === 1 ? '' : 's'}` });
  }
  const split = canaryOf(status, liveCanary);
  return {
    kind: 'env', label: status.env, env: status.env, app, contextValue: 'env',
    description: `${status.state}${status.release ? ' · ' + status.release : ''}${split ? ' · ' + canaryText(split) : ''}`,
    tooltip: split
      ? `${status.url}\ncanary: ${split.percent}% of the users on ${split.canary}, the rest on ${split.serving}`
      : status.url,
    children: groups,
  };
}

/** An app and its envs (those whose status is known), in the order of `envs`; `canary` gives the
 * live canary split of an env by the app's name (from the `minicloud/metrics` notifications). */
export function appNode(app: AppInfo, statuses: Map<string, EnvStatus>, envs: string[], active = false,
  canary?: (appName: string, env: string) => CanarySplit | null | undefined): TreeNode {
  const children = envs.flatMap((env) => {
    const status = statuses.get(statusKey(app.root, env));
    return status ? [envNode(status, app.root, canary?.(status.app, env))] : [];
  });
  const name = children.length ? statuses.get(statusKey(app.root, children[0].env))?.app : undefined;
  return {
    kind: 'app', label: name ?? appLabel(app), env: '', app: app.root, contextValue: 'app', children,
    description: `${active ? '● ' : ''}${children.length ? children.map((c) => c.label).join(', ') : 'no environment'}`,
    tooltip: app.root,
  };
}

/** The status bar text for one environment; with `app` (several apps in the workspace), `app/env`. */
export function statusBarText(status: EnvStatus | undefined, env: string, app?: string): string {
  const where = app ? `${app}/${env}` : env;
  if (!status) return `$(cloud) ${where}: unknown`;
  const icon = status.state === 'running' ? '$(cloud)' : status.state === 'stopped' ? '$(debug-stop)' : '$(warning)';
  const release = status.release ? ` · ${status.release.split('-').slice(1).join('-')}` : '';
  return `${icon} ${app ? `${status.app}/` : ''}${status.env}: ${status.state}${release}`;
}

/** The function a saved file belongs to: `<root>/functions/NAME/…` of one of the apps. */
export function functionOfFile(file: string, roots: string[], sep = '/'): { root: string; name: string } | undefined {
  const root = appOf(file, roots, sep);
  if (!root) return undefined;
  const rest = file.slice(root.length).split(sep).filter(Boolean);
  return rest.length >= 3 && rest[0] === 'functions' ? { root, name: rest[1] } : undefined;
}
