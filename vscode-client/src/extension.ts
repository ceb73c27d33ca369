// The minicloud VS Code extension: starts minicloud-lsp, adds the commands, the log panel,
// the status bar item and the Environments view. Server commands run through the language
// client, so their $/progress shows as VS Code progress and their errors as notifications.
// One server answers every app of the workspace (each minicloud.toml, multi-root or nested):
// commands act on the app of the active editor (its uri is sent) or the one picked; the
// Environments view lists every app with its envs; the status bar follows the active editor.
// Live metrics (`minicloud/metrics` notifications) go to the status bar and the tree (a canary's split);
// the metrics chart is chartPanel's webview.

import * as fs from 'node:fs';
import * as path from 'node:path';
import * as vscode from 'vscode';
import {
  CloseAction, ErrorAction, ExecuteCommandRequest, LanguageClient, LanguageClientOptions, ServerOptions,
  State, StaticFeature,
} from 'vscode-languageclient/node';
import { ChartPanels } from './chartPanel';
import { MetricsSeries } from './chartData';
import { formatBatch, LogLine } from './logFormat';
import { LiveMetrics, metricsKey, showsMetrics, statusBarTooltip, statusBarWithMetrics } from './metricsView';
import { backoffMs, resolveServerCommand, ServerNotFound } from './serverPath';
import { AppInfo, appLabel, appNode, appOf, EnvStatus, functionOfFile, statusKey, TreeNode } from './tree';

let client: LanguageClient | undefined;
let crashes = 0;
const statuses = new Map<string, EnvStatus>(); // by statusKey(app root, env)
const live = new Map<string, LiveMetrics>(); // the latest minicloud/metrics of each env, by metricsKey(app name, env)
let apps: AppInfo[] = []; // every app of the workspace: the folders of its minicloud.toml files
let activeApp: string | undefined; // the app of the active editor (the last one that had an app)
let logChannel: vscode.OutputChannel;
let statusItem: vscode.StatusBarItem;
let tree: EnvironmentsProvider;
let activeStream: string | undefined;
let onInvocation: ((result: any) => void) | undefined; // shows a function's result (set at activation)
let charts: ChartPanels | undefined;

// declares experimental.minicloudLogs, minicloudChanged and minicloudMetrics, so the server sends
// minicloud/logs notifications, minicloud/changed when a container of an env starts, dies or goes,
// and minicloud/metrics (an env's live numbers, alerts and canary) when they change
class LogsFeature implements StaticFeature {
  fillClientCapabilities(capabilities: any): void {
    capabilities.experimental = {
      ...(capabilities.experimental ?? {}), minicloudLogs: true, minicloudChanged: true, minicloudMetrics: true,
    };
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
    middleware: {
      // the Invoke code lens runs the server's command; its result is shown in "minicloud functions"
      executeCommand: async (command: string, args: any[], next: (command: string, args: any[]) => any) => {
        const result = await next(command, args);
        if (command === 'minicloud.fn.invoke' && result) onInvocation?.(result);
        return result;
      },
    },
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
  client.onNotification('minicloud/logs', (params: { stream: string; app?: string; lines: LogLine[]; dropped?: number }) => {
    const showTime = config().get<boolean>('logs.showTime', true);
    const app = apps.length > 1 ? params.app ?? undefined : undefined; // several apps: say whose line it is
    for (const line of formatBatch(params.lines, params.dropped ?? 0, { showTime, app })) logChannel.appendLine(line);
  });
  // the status is asked for when something changed, not on a timer: it costs the engine work
  let pending: ReturnType<typeof setTimeout> | undefined;
  client.onNotification('minicloud/changed', () => {
    if (pending) clearTimeout(pending);
    pending = setTimeout(() => { pending = undefined; void refreshStatus(); }, 500);
  });
  client.onNotification('minicloud/metrics', (params: LiveMetrics) => {
    if (!params?.app || !params.env) return;
    const key = metricsKey(params.app, params.env);
    const canaryBefore = JSON.stringify(live.get(key)?.canary ?? null);
    live.set(key, params);
    updateStatusBar();
    if (JSON.stringify(params.canary ?? null) !== canaryBefore) tree.refresh();
    charts?.onMetrics(params);
  });
  client.onDidChangeState((e: { newState: State }) => { if (e.newState === State.Running) crashes = 0; });
  await client.start();
  await findApps();
  void refreshStatus();
}

async function restartClient(context: vscode.ExtensionContext): Promise<void> {
  const old = client;
  client = undefined;
  live.clear(); // the new server sends them again
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

/** `minicloud.metrics` for the chart: no error notification (the panel shows it) and no status refresh. */
async function fetchMetrics(arg: object): Promise<MetricsSeries> {
  if (!client || client.state !== State.Running) throw new Error('the minicloud language server is not running');
  return await client.sendRequest(ExecuteCommandRequest.type, { command: 'minicloud.metrics', arguments: [arg] }) as MetricsSeries;
}

// ---- apps
async function findApps(): Promise<void> {
  const found = await vscode.workspace.findFiles('**/minicloud.toml', '**/{node_modules,.git,.minicloud}/**');
  const roots = [...new Set(found.map((uri) => path.dirname(uri.fsPath)))].sort();
  const names = new Map(apps.map((a) => [a.root, a.name]));
  apps = roots.map((root) => ({ root, name: names.get(root) }));
  followEditor(vscode.window.activeTextEditor);
}

function appName(root: string | undefined): string | undefined {
  const app = apps.find((a) => a.root === root);
  return app ? appLabel(app, path.sep) : undefined;
}

/** The active editor's app becomes the active app (an editor outside every app keeps the last one). */
function followEditor(editor: vscode.TextEditor | undefined): void {
  const root = editor?.document.uri.scheme === 'file'
    ? appOf(editor.document.uri.fsPath, apps.map((a) => a.root), path.sep) : undefined;
  if (root) activeApp = root;
  if (activeApp && !apps.some((a) => a.root === activeApp)) activeApp = undefined;
  if (!activeApp && apps.length === 1) activeApp = apps[0].root;
  updateStatusBar();
}

/** What tells the server which app a command is for: the active editor's uri when it is in an app,
 * else the active app, else the one the user picks (several apps), else nothing (the server's only app). */
async function target(title: string): Promise<{ uri?: string; app?: string } | undefined> {
  const editor = vscode.window.activeTextEditor;
  if (editor?.document.uri.scheme === 'file' && appOf(editor.document.uri.fsPath, apps.map((a) => a.root), path.sep)) {
    return { uri: editor.document.uri.toString() };
  }
  if (activeApp) return { app: activeApp };
  if (apps.length <= 1) return apps.length ? { app: apps[0].root } : {};
  const pick = await vscode.window.showQuickPick(
    apps.map((a) => ({ label: appLabel(a, path.sep), description: a.root, root: a.root })), { title, placeHolder: 'app' });
  return pick ? { app: pick.root } : undefined;
}

async function pickEnv(title: string, root?: string): Promise<string | undefined> {
  const envs = config().get<string[]>('environments', ['test', 'prod']);
  const current = config().get<string>('env', 'test');
  const items = envs.map((e) => ({ label: e, description: statuses.get(statusKey(root, e))?.state ?? '' }));
  items.sort((a, b) => (a.label === current ? -1 : b.label === current ? 1 : 0));
  const name = appName(root);
  return (await vscode.window.showQuickPick(items, { title: name ? `${title} (${name})` : title, placeHolder: 'environment' }))?.label;
}

/** The app (its root) a target names, as far as the client can tell. */
function rootOf(where: { uri?: string; app?: string }): string | undefined {
  return where.app ?? (where.uri ? appOf(vscode.Uri.parse(where.uri).fsPath, apps.map((a) => a.root), path.sep) : undefined);
}

/** The app (from the active editor or a pick) and the env of a command; undefined if the user cancelled. */
async function appAndEnv(title: string): Promise<{ env: string; uri?: string; app?: string } | undefined> {
  const where = await target(title);
  if (!where) return undefined;
  const env = await pickEnv(title, rootOf(where));
  return env ? { ...where, env } : undefined;
}

function envVerb(command: string, title: string, show: (result: any) => string) {
  return async () => {
    const arg = await appAndEnv(title);
    if (!arg) return;
    const result = await run(command, arg);
    vscode.window.showInformationMessage(show(result));
  };
}

async function refreshStatus(): Promise<void> {
  if (!client || client.state !== State.Running) return;
  const envs = config().get<string[]>('environments', ['test', 'prod']);
  const roots: (string | undefined)[] = apps.length ? apps.map((a) => a.root) : [undefined];
  for (const root of roots) {
    for (const env of envs) {
      try {
        const status = await client.sendRequest(ExecuteCommandRequest.type,
          { command: 'minicloud.status', arguments: [root ? { env, app: root } : { env }] }) as EnvStatus;
        statuses.set(statusKey(root, env), status);
        const app = apps.find((a) => a.root === root);
        if (app) app.name = status.app;
      } catch {
        statuses.delete(statusKey(root, env));
      }
    }
  }
  updateStatusBar();
  tree.refresh();
}

function updateStatusBar(): void {
  if (!statusItem) return;
  const env = config().get<string>('env', 'test');
  const root = apps.length ? activeApp : undefined;
  const status = statuses.get(statusKey(root, env));
  const metrics = status ? live.get(metricsKey(status.app, env)) : undefined;
  statusItem.text = statusBarWithMetrics(status, env, apps.length > 1 ? appName(root) : undefined, metrics);
  statusItem.tooltip = statusBarTooltip(status, root ? `minicloud: ${root}` : 'minicloud', metrics);
  statusItem.backgroundColor = showsMetrics(status) && metrics?.firing?.length
    ? new vscode.ThemeColor('statusBarItem.warningBackground') : undefined;
}

class EnvironmentsProvider implements vscode.TreeDataProvider<TreeNode> {
  private emitter = new vscode.EventEmitter<TreeNode | undefined>();
  readonly onDidChangeTreeData = this.emitter.event;
  refresh(): void { this.emitter.fire(undefined); }
  getChildren(node?: TreeNode): TreeNode[] {
    if (node) return node.children;
    const envs = config().get<string[]>('environments', ['test', 'prod']);
    return apps.map((app) => appNode(app, statuses, envs, apps.length > 1 && app.root === activeApp,
      (name, env) => live.get(metricsKey(name, env))?.canary));
  }
  getTreeItem(node: TreeNode): vscode.TreeItem {
    const item = new vscode.TreeItem(node.label, node.children.length
      ? (node.kind === 'env' || node.kind === 'app'
        ? vscode.TreeItemCollapsibleState.Expanded : vscode.TreeItemCollapsibleState.Collapsed)
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
  reg('minicloud.ui.deployCanary', async () => {
    const arg = await appAndEnv('Deploy as canary');
    if (!arg) return;
    const percent = await vscode.window.showInputBox({
      title: 'Deploy as canary', prompt: 'the share of the users the new release gets (1–99 %)', value: '10',
      validateInput: (v) => (/^\d+$/.test(v) && +v >= 1 && +v <= 99 ? undefined : 'a whole number from 1 to 99'),
    });
    if (!percent) return;
    const judge = await vscode.window.showQuickPick(
      [{ label: 'I will promote or roll back', seconds: 0 }, { label: 'Judge it over 2 minutes', seconds: 120 },
        { label: 'Judge it over 5 minutes', seconds: 300 }], { title: 'Deploy as canary' });
    if (!judge) return;
    const r = await run('minicloud.deploy', { ...arg, canary: +percent, ...(judge.seconds ? { judge: judge.seconds } : {}) });
    const c = r.canary ?? {};
    const text = c.state === 'running'
      ? `minicloud: ${r.app}/${r.env} canary ${r.release} takes ${c.percent}% of the users`
      : `minicloud: ${r.app}/${r.env} canary ${r.release} ${c.state}: ${c.reason}`;
    if (c.state === 'aborted') vscode.window.showWarningMessage(text);
    else vscode.window.showInformationMessage(text, ...(c.state === 'running' ? ['Promote', 'Roll back'] : []))
      .then(async (choice) => {
        if (choice === 'Promote') vscode.window.showInformationMessage(deployed(await run('minicloud.promote', arg)));
        if (choice === 'Roll back') await run('minicloud.rollback', arg);
      });
  });
  reg('minicloud.ui.promote', envVerb('minicloud.promote', 'Promote the canary', deployed));
  reg('minicloud.ui.restart', envVerb('minicloud.restart', 'Restart', (r) => `minicloud: ${r.app}/${r.env} is ${r.state}`));
  reg('minicloud.ui.stop', envVerb('minicloud.stop', 'Stop', (r) => `minicloud: ${r.app}/${r.env} is ${r.state}`));
  reg('minicloud.ui.start', envVerb('minicloud.start', 'Start', (r) => `minicloud: ${r.app}/${r.env} is ${r.state}`));
  reg('minicloud.ui.status', envVerb('minicloud.status', 'Show status',
    (r) => `minicloud: ${r.app}/${r.env} ${r.state}, release ${r.release ?? '–'}, ${r.url}`));
  reg('minicloud.ui.releases', async () => {
    const arg = await appAndEnv('Show releases');
    if (!arg) return;
    const { env } = arg;
    const result = await run('minicloud.releases', arg);
    logChannel.appendLine(`releases of ${result.app ? `${result.app}/` : ''}${env}:`);
    for (const r of result.releases) logChannel.appendLine(`${r.current ? '*' : ' '} ${r.id}  ${r.created}`);
    logChannel.show(true);
  });
  reg('minicloud.ui.rollback', async () => {
    const arg = await appAndEnv('Roll back');
    if (!arg) return;
    const { releases, app } = await run('minicloud.releases', arg);
    const choices: vscode.QuickPickItem[] = releases.filter((r: any) => !r.current)
      .map((r: any) => ({ label: r.id, description: r.created }));
    const pick = await vscode.window.showQuickPick(choices,
      { title: `Roll back ${app ? `${app}/` : ''}${arg.env} to…` });
    if (pick) vscode.window.showInformationMessage(deployed(await run('minicloud.rollback', { ...arg, to: pick.label })));
  });
  reg('minicloud.ui.rollbackTo', async (node: TreeNode) => {
    if (node?.releaseId) {
      const app = node.app ? { app: node.app } : {};
      vscode.window.showInformationMessage(deployed(await run('minicloud.rollback', { ...app, env: node.env, to: node.releaseId })));
    }
  });
  reg('minicloud.ui.logs', async () => {
    const arg = await appAndEnv('Tail logs');
    if (!arg) return;
    if (activeStream) await run('minicloud.logs.stop', { stream: activeStream });
    const stream = await run('minicloud.logs.tail', { ...arg, since: '10m' });
    activeStream = stream.stream;
    logChannel.appendLine(`— logs of ${stream.app}/${stream.env} —`);
    if (config().get<boolean>('logs.reveal', true)) logChannel.show(true);
  });
  reg('minicloud.ui.logsStop', async () => {
    if (activeStream) await run('minicloud.logs.stop', { stream: activeStream });
    activeStream = undefined;
  });
  reg('minicloud.ui.destroy', async () => {
    const arg = await appAndEnv('Destroy environment');
    if (!arg) return;
    const { env } = arg;
    const name = appName(rootOf(arg));
    const what = name ? `${name}/${env}` : env;
    const choice = await vscode.window.showWarningMessage(
      `Destroy the ${what} environment? Its containers and network are removed.`, { modal: true },
      'Destroy, keep data', 'Destroy with data');
    if (!choice) return;
    await run('minicloud.env.destroy', { ...arg, with_data: choice === 'Destroy with data' });
    vscode.window.showInformationMessage(`minicloud: ${what} destroyed${choice === 'Destroy with data' ? ' with its data' : ', data kept'}`);
  });
  reg('minicloud.ui.codegen', async () => {
    const editor = vscode.window.activeTextEditor;
    const where = await target('Generate capability call');
    if (!where) return;
    const { apis } = await run('minicloud.capabilities', { ...where, env: config().get<string>('env', 'test') });
    const choices: vscode.QuickPickItem[] = apis.map((a: any) => ({
      label: a.method, description: a.signed ? '✓ signed' : 'not signed', detail: `${a.title} — ${a.package}` }));
    const pick = await vscode.window.showQuickPick(choices,
      { title: 'Generate capability call' });
    if (!pick) return;
    const lang = editor?.document.languageId === 'python' ? 'python' : editor?.document.languageId === 'java' ? 'java' : 'node';
    await run('minicloud.codegen', {
      ...where, method: pick.label, lang, uri: editor?.document.uri.toString(),
      position: editor ? { line: editor.selection.active.line, character: 0 } : undefined,
    });
  });
  // cloud functions: invoke (palette, tree, code lens), deploy, and deploy on save when asked to
  const fnChannel = vscode.window.createOutputChannel('minicloud functions');
  context.subscriptions.push(fnChannel);
  const showInvocation = (r: any) => {
    fnChannel.appendLine(`— ${r.name} in ${r.env}: HTTP ${r.status}, ${Number(r.duration_ms).toFixed(1)} ms, `
      + `${r.cold ? 'cold' : 'warm'}, instance ${r.instance || '–'}, request ${r.request_id || '–'}`);
    fnChannel.appendLine(JSON.stringify(r.result, null, 2));
    for (const line of r.logs ?? []) fnChannel.appendLine(line);
    fnChannel.show(true);
  };
  const invoke = async (where: { uri?: string; app?: string }, env: string, name: string) =>
    showInvocation(await run('minicloud.fn.invoke', { ...where, env, name }));
  reg('minicloud.ui.fn.invoke', async (node?: TreeNode) => {
    if (node?.functionName) return invoke(node.app ? { app: node.app } : {}, node.env, node.functionName);
    const arg = await appAndEnv('Invoke function');
    if (!arg) return;
    const known = Object.keys(statuses.get(statusKey(rootOf(arg), arg.env))?.functions ?? {});
    const name = known.length
      ? (await vscode.window.showQuickPick(known, { title: `Invoke a function of ${arg.env}` }))
      : await vscode.window.showInputBox({ title: 'Invoke function', prompt: 'the function\'s name' });
    if (name) await invoke(arg, arg.env, name);
  });
  onInvocation = showInvocation;
  reg('minicloud.ui.fn.deploy', async () => {
    const arg = await appAndEnv('Deploy functions');
    if (!arg) return;
    const r = await run('minicloud.fn.deploy', arg);
    vscode.window.showInformationMessage(`minicloud: functions live in ${r.app}/${r.env} in ${r.seconds.toFixed(2)}s`);
  });
  context.subscriptions.push(vscode.workspace.onDidSaveTextDocument(async (doc) => {
    if (!config().get<boolean>('deployFunctionsOnSave', false) || doc.uri.scheme !== 'file') return;
    const fn = functionOfFile(doc.uri.fsPath, apps.map((a) => a.root), path.sep);
    if (!fn) return;
    const started = Date.now();
    const r = await run('minicloud.fn.deploy', { app: fn.root, env: 'test', names: [fn.name] });
    vscode.window.setStatusBarMessage(`minicloud: ${fn.name} ${r.versions[fn.name]} live in test `
      + `(${((Date.now() - started) / 1000).toFixed(2)}s)`, 5000);
  }));
  charts = new ChartPanels(fetchMetrics);
  context.subscriptions.push(charts);
  reg('minicloud.ui.chart', async (node?: TreeNode) => {
    const arg = node?.kind === 'env' ? { ...(node.app ? { app: node.app } : {}), env: node.env } : await appAndEnv('Show metrics chart');
    if (!arg) return;
    const root = rootOf(arg);
    const name = statuses.get(statusKey(root, arg.env))?.app ?? appName(root);
    charts?.show({
      key: statusKey(root, arg.env), where: root ? { app: root } : arg, env: arg.env,
      title: name ? `${name}/${arg.env}` : arg.env, appName: statuses.get(statusKey(root, arg.env))?.app,
    });
  });
  reg('minicloud.ui.refresh', async () => { await findApps(); await refreshStatus(); });
  reg('minicloud.ui.restartServer', () => restartClient(context));

  // the apps of the workspace: found again when a manifest comes or goes, or a folder is added or removed
  const manifests = vscode.workspace.createFileSystemWatcher('**/minicloud.toml', false, true, false);
  const rediscover = () => { void findApps().then(refreshStatus); };
  context.subscriptions.push(manifests, manifests.onDidCreate(rediscover), manifests.onDidDelete(rediscover),
    vscode.workspace.onDidChangeWorkspaceFolders(rediscover),
    vscode.window.onDidChangeActiveTextEditor((editor) => {
      const before = activeApp;
      followEditor(editor);
      if (activeApp !== before) tree.refresh();
    }));

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
