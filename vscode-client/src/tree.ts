// The "Environments" view, built from `minicloud.status` results. Pure.

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

export type NodeKind = 'env' | 'group' | 'container' | 'release';

export interface TreeNode {
  kind: NodeKind;
  label: string;
  description?: string;
  tooltip?: string;
  contextValue: string;
  env: string;
  releaseId?: string;
  children: TreeNode[];
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

export function envNode(status: EnvStatus): TreeNode {
  const containers = status.containers.map((c) => containerNode(status.env, c));
  const releases = (status.releases ?? []).map((r): TreeNode => ({
    kind: 'release', label: r.id, env: status.env, releaseId: r.id, children: [],
    description: r.current ? 'running' : r.created.replace('T', ' ').slice(0, 19),
    contextValue: r.current ? 'release.current' : 'release',
    tooltip: r.image,
  }));
  return {
    kind: 'env', label: status.env, env: status.env, contextValue: 'env',
    description: `${status.state}${status.release ? ' · ' + status.release : ''}`,
    tooltip: status.url,
    children: [
      { kind: 'group', label: 'Containers', env: status.env, contextValue: 'containers', children: containers,
        description: `${containers.length}` },
      { kind: 'group', label: 'Releases', env: status.env, contextValue: 'releases', children: releases,
        description: `${releases.length}` },
    ],
  };
}

/** The status bar text for one environment. */
export function statusBarText(status: EnvStatus | undefined, env: string): string {
  if (!status) return `$(cloud) ${env}: unknown`;
  const icon = status.state === 'running' ? '$(cloud)' : status.state === 'stopped' ? '$(debug-stop)' : '$(warning)';
  const release = status.release ? ` · ${status.release.split('-').slice(1).join('-')}` : '';
  return `${icon} ${status.env}: ${status.state}${release}`;
}
