// Which command starts the language server. Pure: the file system and settings are passed in.

export interface ServerCommand {
  command: string;
  args: string[];
  source: string; // what chose it, for messages
}

export interface Probe {
  exists(path: string): boolean;
  join(...parts: string[]): string;
}

export interface ServerSettings {
  serverPath?: string;
  serverArgs?: string[];
  pythonPath?: string; // python.defaultInterpreterPath, when set
  onPath?: (name: string) => string | undefined; // finds an executable on PATH
}

export class ServerNotFound extends Error {
  constructor(public readonly tried: string[]) {
    super(
      'minicloud: cannot start the language server. Tried: ' + tried.join('; ') +
      '. Fix: run `scripts/setup.sh` in the project (creates .venv with minicloud-lsp), ' +
      'or set "minicloud.server.path" to the minicloud-lsp executable.',
    );
  }
}

/** The setting, else the workspace's .venv/bin/minicloud-lsp, else `python -m lsp_server`. */
export function resolveServerCommand(workspace: string | undefined, settings: ServerSettings, probe: Probe): ServerCommand {
  const extra = settings.serverArgs ?? [];
  const tried: string[] = [];
  if (settings.serverPath) {
    if (probe.exists(settings.serverPath)) {
      return { command: settings.serverPath, args: extra, source: 'minicloud.server.path' };
    }
    tried.push(`minicloud.server.path (${settings.serverPath}: not found)`);
  }
  if (workspace) {
    for (const bin of [['.venv', 'bin', 'minicloud-lsp'], ['.venv', 'Scripts', 'minicloud-lsp.exe']]) {
      const candidate = probe.join(workspace, ...bin);
      if (probe.exists(candidate)) {
        return { command: candidate, args: extra, source: 'the workspace .venv' };
      }
      tried.push(candidate);
    }
  }
  const pythons = [settings.pythonPath, settings.onPath?.('python3'), settings.onPath?.('python')];
  for (const python of pythons) {
    if (python && probe.exists(python)) {
      return { command: python, args: ['-m', 'lsp_server', ...extra], source: `python -m lsp_server (${python})` };
    }
  }
  tried.push('python3 -m lsp_server (no Python interpreter found)');
  throw new ServerNotFound(tried);
}

/** Restart delays after crashes: 1 s, 2 s, 4 s … capped at 30 s. */
export function backoffMs(crashes: number): number {
  return Math.min(30_000, 1000 * 2 ** Math.max(0, crashes - 1));
}
