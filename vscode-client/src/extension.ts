// The minicloud VS Code extension: starts minicloud-lsp, adds the commands, the log panel,
// the status bar item and the Environments view. Server commands run through the language
// client, so their $/progress shows as VS Code progress and their errors as notifications.

import * as fs from 'node:fs';
import * as path from 'node:path';
import * as vscode from 'vscode';
import {
  CloseAction, ErrorAction, ExecuteCommandRequest, LanguageClient, LanguageClientOptions, ServerOptions,
  State, StaticFeature,
} from 'vscode-languageclient/node';
import { formatBatch, LogLine } from './logFormat';
import { backoffMs, resolveServerCommand, ServerNotFound } from './serverPath';
import { EnvStatus, envNode, statusBarText, TreeNode } from './tree';

let client: LanguageClient | undefined;
let crashes = 0;
const statuses = new Map<string, EnvStatus>();
let logChannel: vscode.OutputChannel;
let statusItem: vscode.StatusBarItem;
let tree: EnvironmentsProvider;
let activeStream: string | undefined;

// declares experimental.minicloudLogs and minicloudChanged, so the server sends minicloud/logs
// notifications and minicloud/changed when a container of an env starts, dies or goes
class LogsFeature implements StaticFeature {
  fillClientCapabilities(capabilities: any): void {
    capabilities.experimental = { ...(capabilities.experimental ?? {}), minicloudLogs: true, minicloudChanged: true };
  }
  initialize(): void {}
  getState() { return { kind: 'static' as const }; }
  clear(): void {}
}

function config() {
  return vscode.workspace.getConfiguration('minicloud');
}

function workspaceRoot(): string | undefined {
  return vscode.workspace.workspaceFolders?.[0]?.uri.fsPath;
}

function onPath(name: string): string | undefined {
  for (const dir of (process.env.PATH ?? '').split(path.delimiter)) {
    const candidate = path.join(dir, name);
    if (fs.existsSync(candidate)) return candidate;
  }
  return undefined;
}

async function startClient(context: vscode.ExtensionContext): Promise<void> {
  let server;
  try {
    server = resolveServerCommand(workspaceRoot(), {
      serverPath: config().get<string>('server.path'),
      serverArgs: config().get<string[]>('server.args'),
      pythonPath: vscode.workspace.getConfiguration('python').get<string>('defaultInterpreterPath'),
      onPath,
    }, { exists: fs.existsSync, join: path.join });
  } catch (err) {
    const message = err instanceof ServerNotFound ? err.message : String(err);
    const choice = await vscode.window.showErrorMessage(message, 'Open settings');
    if (choice) vscode.commands.executeCommand('workbench.action.openSettings', 'minicloud.server.path');
    return;
  }
  const serverOptions: ServerOptions = { command: server.command, args: server.args, options: { cwd: workspaceRoot() } };
  const clientOptions: LanguageClientOptions = {
    documentSelector: [
      { scheme: 'file', pattern: '**/minicloud.toml' },
      { scheme: 'file', language: 'javascript' }, { scheme: 'file', language: 'typescript' },
      { scheme: 'file', language: 'javascriptreact' }, { scheme: 'file', language: 'typescriptreact' },
      { scheme: 'file', language: 'python' }, { scheme: 'file', language: 'java' },
      { scheme: 'file', pattern: '**/abilities/*.json' },
    ],
    initializationOptions: { env: config().get<string>('env', 'test') },
    synchronize: { configurationSection: 'minicloud' },
    errorHandler: {
      error: () => ({ action: ErrorAction.Continue }),
      closed: () => {
        // restart with a backoff instead of languageclient's fixed retry budget
        crashes += 1;
        const delay = backoffMs(crashes);
        vscode.window.setStatusBarMessage(`minicloud: language server stopped, restarting in ${delay / 1000}s`, delay);
        setTimeout(() => { void restartClient(context); }, delay);
        return { action: CloseAction.DoNotRestart, handled: true };
      },
    },
  };
  client = new LanguageClient('minicloud', 'minicloud', serverOptions, clientOptions);
  client.registerFeature(new LogsFeature());
  client.onNotification('minicloud/logs', (params: { stream: string; lines: LogLine[]; dropped?: number }) => {
    const showTime = config().get<boolean>('logs.showTime', true);
    for (const line of formatBatch(params.lines, params.dropped ?? 0, { showTime })) logChannel.appendLine(line);
  });
  // the status is asked for when something changed, not on a timer: it costs the engine work
  let pending: ReturnType<typeof setTimeout> | undefined;
  client.onNotification('minicloud/changed', () => {
    if (pending) clearTimeout(pending);
    pending = setTimeout(() => { pending = undefined; void refreshStatus(); }, 500);
  });
  client.onDidChangeState((e: { newState: State }) => { if (e.newState === State.Running) crashes = 0; });
  await client.start();
  void refreshStatus();
}

async function restartClient(context: vscode.ExtensionContext): Promise<void> {
  const old = client;
  client = undefined;
  if (old) { try { await old.stop(); } catch { /* already gone */ } }
  await startClient(context);
}

async function run(command: string, arg: object): Promise<any> {
  if (!client) throw new Error('the minicloud language server is not running');
  try {
    return await client.sendRequest(ExecuteCommandRequest.type, { command, arguments: [arg] });
  } catch (err: any) {
    vscode.window.showErrorMessage(`minicloud: ${err?.message ?? err}`);
    throw err;
  } finally {
    void refreshStatus();
  }
}

async function pickEnv(title: string): Promise<string | undefined> {
  const envs = config().get<string[]>('environments', ['test', 'prod']);
  const current = config().get<string>('env', 'test');
  const items = envs.map((e) => ({ label: e, description: statuses.get(e)?.state ?? '' }));
  items.sort((a, b) => (a.label === current ? -1 : b.label === current ? 1 : 0));
  return (await vscode.window.showQuickPick(items, { title, placeHolder: 'environment' }))?.label;
}

function envVerb(command: string, title: string, show: (result: any) => string) {
  return async () => {
    const env = await pickEnv(title);
    if (!env) return;
    const result = await run(command, { env });
    vscode.window.showInformationMessage(show(result));
  };
}

async function refreshStatus(): Promise<void> {
  if (!client || client.state !== State.Running) return;
  for (const env of config().get<string[]>('environments', ['test', 'prod'])) {
    try {
      const status = await client.sendRequest(ExecuteCommandRequest.type, { command: 'minicloud.status', arguments: [{ env }] });
      statuses.set(env, status as EnvStatus);
    } catch {
      statuses.delete(env);
    }
  }
  const env = config().get<string>('env', 'test');
  statusItem.text = statusBarText(statuses.get(env), env);
  statusItem.tooltip = statuses.get(env)?.url ?? 'minicloud';
  tree.refresh();
}

class EnvironmentsProvider implements vscode.TreeDataProvider<TreeNode> {
  private emitter = new vscode.EventEmitter<TreeNode | undefined>();
  readonly onDidChangeTreeData = this.emitter.event;
  refresh(): void { this.emitter.fire(undefined); }
  getChildren(node?: TreeNode): TreeNode[] {
    return node ? node.children : [...statuses.values()].map(envNode);
  }
  getTreeItem(node: TreeNode): vscode.TreeItem {
    const item = new vscode.TreeItem(node.label, node.children.length
      ? (node.kind === 'env' ? vscode.TreeItemCollapsibleState.Expanded : vscode.TreeItemCollapsibleState.Collapsed)
      : vscode.TreeItemCollapsibleState.None);
    item.description = node.description;
    item.tooltip = node.tooltip;
    item.contextValue = node.contextValue;
    return item;
  }
}

export async function activate(context: vscode.ExtensionContext): Promise<void> {
  logChannel = vscode.window.createOutputChannel('minicloud logs');
  statusItem = vscode.window.createStatusBarItem(vscode.StatusBarAlignment.Left, 50);
  statusItem.command = 'minicloud.ui.status';
  statusItem.show();
  tree = new EnvironmentsProvider();
  const deployed = (r: any) => `minicloud: ${r.app}/${r.env} release ${r.release} is live at ${r.url}`;
  const reg = (id: string, fn: (...args: any[]) => any) => context.subscriptions.push(vscode.commands.registerCommand(id, fn));
  context.subscriptions.push(logChannel, statusItem, vscode.window.registerTreeDataProvider('minicloud.environments', tree));

  reg('minicloud.ui.build', envVerb('minicloud.env.build', 'Build environment', deployed));
  reg('minicloud.ui.deploy', envVerb('minicloud.deploy', 'Deploy', deployed));
  reg('minicloud.ui.restart', envVerb('minicloud.restart', 'Restart', (r) => `minicloud: ${r.app}/${r.env} is ${r.state}`));
  reg('minicloud.ui.stop', envVerb('minicloud.stop', 'Stop', (r) => `minicloud: ${r.app}/${r.env} is ${r.state}`));
  reg('minicloud.ui.start', envVerb('minicloud.start', 'Start', (r) => `minicloud: ${r.app}/${r.env} is ${r.state}`));
  reg('minicloud.ui.status', envVerb('minicloud.status', 'Show status',
    (r) => `minicloud: ${r.app}/${r.env} ${r.state}, release ${r.release ?? '–'}, ${r.url}`));
  reg('minicloud.ui.releases', async () => {
    const env = await pickEnv('Show releases');
    if (!env) return;
    const result = await run('minicloud.releases', { env });
    logChannel.appendLine(`releases of ${env}:`);
    for (const r of result.releases) logChannel.appendLine(`${r.current ? '*' : ' '} ${r.id}  ${r.created}`);
    logChannel.show(true);
  });
  reg('minicloud.ui.rollback', async () => {
    const env = await pickEnv('Roll back');
    if (!env) return;
    const { releases } = await run('minicloud.releases', { env });
    const choices: vscode.QuickPickItem[] = releases.filter((r: any) => !r.current)
      .map((r: any) => ({ label: r.id, description: r.created }));
    const pick = await vscode.window.showQuickPick(choices,
      { title: `Roll back ${env} to…` });
    if (pick) vscode.window.showInformationMessage(deployed(await run('minicloud.rollback', { env, to: pick.label })));
  });
  reg('minicloud.ui.rollbackTo', async (node: TreeNode) => {
    if (node?.releaseId) vscode.window.showInformationMessage(deployed(await run('minicloud.rollback', { env: node.env, to: node.releaseId })));
  });
  reg('minicloud.ui.logs', async () => {
    const env = await pickEnv('Tail logs');
    if (!env) return;
    if (activeStream) await run('minicloud.logs.stop', { stream: activeStream });
    activeStream = (await run('minicloud.logs.tail', { env, since: '10m' })).stream;
    if (config().get<boolean>('logs.reveal', true)) logChannel.show(true);
  });
  reg('minicloud.ui.logsStop', async () => {
    if (activeStream) await run('minicloud.logs.stop', { stream: activeStream });
    activeStream = undefined;
  });
  reg('minicloud.ui.destroy', async () => {
    const env = await pickEnv('Destroy environment');
    if (!env) return;
    const choice = await vscode.window.showWarningMessage(
      `Destroy the ${env} environment? Its containers and network are removed.`, { modal: true },
      'Destroy, keep data', 'Destroy with data');
    if (!choice) return;
    await run('minicloud.env.destroy', { env, with_data: choice === 'Destroy with data' });
    vscode.window.showInformationMessage(`minicloud: ${env} destroyed${choice === 'Destroy with data' ? ' with its data' : ', data kept'}`);
  });
  reg('minicloud.ui.codegen', async () => {
    const editor = vscode.window.activeTextEditor;
    const { apis } = await run('minicloud.capabilities', { env: config().get<string>('env', 'test') });
    const choices: vscode.QuickPickItem[] = apis.map((a: any) => ({
      label: a.method, description: a.signed ? '✓ signed' : 'not signed', detail: `${a.title} — ${a.package}` }));
    const pick = await vscode.window.showQuickPick(choices,
      { title: 'Generate capability call' });
    if (!pick) return;
    const lang = editor?.document.languageId === 'python' ? 'python' : editor?.document.languageId === 'java' ? 'java' : 'node';
    await run('minicloud.codegen', {
      method: pick.label, lang, uri: editor?.document.uri.toString(),
      position: editor ? { line: editor.selection.active.line, character: 0 } : undefined,
    });
  });
  reg('minicloud.ui.refresh', () => refreshStatus());
  reg('minicloud.ui.restartServer', () => restartClient(context));

  const seconds = config().get<number>('status.pollSeconds', 0);
  if (seconds > 0) {
    const timer = setInterval(() => { void refreshStatus(); }, seconds * 1000);
    context.subscriptions.push({ dispose: () => clearInterval(timer) });
  }
  await startClient(context);
}

export async function deactivate(): Promise<void> {
  await client?.stop();
}
