// The "Environments" view, built from `minicloud.status` results: app → envs → containers and
// releases, one app per minicloud.toml of the workspace. Pure.

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

export interface EnvStatus {
  env: string;
  app: string;
  state: string;
  release: string | null;
  url: string;
  containers: ContainerStatus[];
  releases?: Release[];
}

export type NodeKind = 'app' | 'env' | 'group' | 'container' | 'release';

export interface TreeNode {
  kind: NodeKind;
  label: string;
  description?: string;
  tooltip?: string;
  contextValue: string;
  env: string;
  app?: string; // the app's root folder: commands from this node act on that app
  releaseId?: string;
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

export function envNode(status: EnvStatus, app?: string): TreeNode {
  const containers = status.containers.map((c) => ({ ...containerNode(status.env, c), app }));
  const releases = (status.releases ?? []).map((r): TreeNode => ({
    kind: 'release', label: r.id, env: status.env, app, releaseId: r.id, children: [],
    description: r.current ? 'running' : r.created.replace('T', ' ').slice(0, 19),
    contextValue: r.current ? 'release.current' : 'release',
    tooltip: r.image,
  }));
  return {
    kind: 'env', label: status.env, env: status.env, app, contextValue: 'env',
    description: `${status.state}${status.release ? ' · ' + status.release : ''}`,
    tooltip: status.url,
    children: [
      { kind: 'group', label: 'Containers', env: status.env, app, contextValue: 'containers', children: containers,
        description: `${containers.length}` },
      { kind: 'group', label: 'Releases', env: status.env, app, contextValue: 'releases', children: releases,
        description: `${releases.length}` },
    ],
  };
}

/** An app and its envs (those whose status is known), in the order of `envs`. */
export function appNode(app: AppInfo, statuses: Map<string, EnvStatus>, envs: string[], active = false): TreeNode {
  const children = envs.flatMap((env) => {
    const status = statuses.get(statusKey(app.root, env));
    return status ? [envNode(status, app.root)] : [];
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
