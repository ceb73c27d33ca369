"""The cloud commands (`workspace/executeCommand`): each calls the same `Cloud` verb as the CLI.

Verbs run in a worker thread (Docker is slow and blocking); long ones report `$/progress` and can be
cancelled from the client; failures become JSON-RPC errors with the verb's own message, also shown
with `window/showMessage`.

Each command acts on one app (apps.py): `{"app": ...}` (its folder, a path inside it, or its name),
else the app of the document `{"uri": ...}`, else the only app in use; with several and none named,
the error lists them. Progress titles, results and log streams name the app.
"""

from __future__ import annotations

import asyncio
import threading
import uuid
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from lsprotocol import types
from pygls.exceptions import JsonRpcException

from deploy_bridge.errors import Cancelled, MinicloudError

from .apps import NoApp
from .index import Snapshot

if TYPE_CHECKING:
    from .apps import App
    from .server import MinicloudServer

REQUEST_FAILED = -32803


class LspProgress:
    """deploy_bridge's Progress, reported as `$/progress` from the worker thread."""

    def __init__(self, server: MinicloudServer, loop: asyncio.AbstractEventLoop, token: str | None) -> None:
        self.server, self.loop, self.token = server, loop, token
        self.cancel = threading.Event()

    def report(self, message: str, percentage: int | None = None) -> None:
        if self.token is None:
            return
        value = types.WorkDoneProgressReport(message=message, percentage=percentage, cancellable=True)
        self.loop.call_soon_threadsafe(self.server.work_done_progress.report, self.token, value)

    def check_cancelled(self) -> None:
        future = self.server.work_done_progress.tokens.get(self.token) if self.token else None
        if self.cancel.is_set() or (future is not None and future.cancelled()):
            raise Cancelled("cancelled from the editor")


def _arg(args: tuple[Any, ...]) -> dict[str, Any]:
    first = args[0] if args else {}
    if first is None:
        return {}
    if not isinstance(first, dict):
        raise JsonRpcException(message="expected one object argument, e.g. {\"env\": \"test\"}", code=-32602)
    return first


async def run_verb(server: MinicloudServer, title: str, work: Callable[[LspProgress], Any], long: bool,
                   changes: bool = True, app: App | None = None, quiet: bool = False) -> Any:
    """Run a verb off the event loop; `long` ones report progress; `changes` ones refresh the index after;
    `quiet` ones fail with the error alone (a view polling them shows it; a message every 10 s would not do)."""
    loop = asyncio.get_running_loop()
    token = None
    caps = server.client_capabilities.window
    if long and caps is not None and caps.work_done_progress:
        token = str(uuid.uuid4())
        await server.work_done_progress.create_async(token)
        server.work_done_progress.begin(token, types.WorkDoneProgressBegin(title=title, cancellable=True))
    progress = LspProgress(server, loop, token)
    try:
        result = await loop.run_in_executor(None, work, progress)
    except asyncio.CancelledError:
        progress.cancel.set()  # the request was cancelled: let the verb clean up
        raise
    except MinicloudError as err:
        message = err.render()
        if not quiet:
            server.window_show_message(types.ShowMessageParams(types.MessageType.Error, f"minicloud: {message}"))
        raise JsonRpcException(message=message, code=REQUEST_FAILED) from None
    finally:
        if token is not None:
            server.work_done_progress.end(token, types.WorkDoneProgressEnd(message="done"))
        if changes and app is not None:  # reading the state changes nothing the index knows
            app.refresh_soon()
    return result.to_json() if hasattr(result, "to_json") else result


def _env(server: MinicloudServer, arg: dict[str, Any]) -> str:
    return str(arg.get("env") or server.env)


def _app_and_cloud(server: MinicloudServer, arg: dict[str, Any]):
    return server.app_and_cloud(arg.get("app"), arg.get("uri"))


def _snapshot(server: MinicloudServer, arg: dict[str, Any]) -> Snapshot:
    """The snapshot of the command's app; an empty one where there is no app (e.g. a document outside
    any app): the catalog still answers. Several apps and none named: an error listing them."""
    try:
        return server.apps.resolve(arg.get("app"), arg.get("uri")).snapshot()
    except LookupError as err:
        if isinstance(err, NoApp) and not arg.get("app"):  # (an app named that does not exist: an error)
            return Snapshot(server.env)
        server.window_show_message(types.ShowMessageParams(types.MessageType.Error, f"minicloud: {err}"))
        raise JsonRpcException(message=str(err), code=REQUEST_FAILED) from None


def _invoke(cloud, arg: dict[str, Any]) -> dict[str, Any]:
    """Invoke a function with `event`, else functions/NAME/event.json, else {}; the result and the
    invocation's own log lines (START, what it printed, END), for the editor to show."""
    import json

    name = str(arg.get("name") or "")
    event = arg.get("event")
    if event is None:
        path = cloud.workspace / "functions" / name / "event.json"
        event = json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}
    call = cloud.fn_invoke(arg["env"], name, event)
    lines: list[str] = []
    if call.request_id:
        for batch in cloud.log_batches(arg["env"], roles=["function"], fn=name, grep=call.request_id, tail=500):
            lines += [line.to_text() for line in batch]
    return {**call.to_json(), "name": name, "env": arg["env"], "logs": lines}


async def open_log_tail(ls: MinicloudServer, app_name: str | None, env: str, role: str | None = None,
                        since: str | None = None, tail: int | None = 100, uri: str | None = None) -> dict[str, Any]:
    """Stream an env's logs to the client (minicloud/logs, or window/logMessage): the command's work,
    and an alert's "Show logs"."""
    from .logstream import logs_command

    app, cloud = ls.app_and_cloud(app_name, uri)
    try:
        cloud.manifest.env(env)
    except MinicloudError as err:
        raise JsonRpcException(message=err.render(), code=REQUEST_FAILED) from None
    command = logs_command(cloud.workspace, env, role, since, tail)
    stream = await ls.log_streams.open(command, ls.send_log_lines, app=cloud.app)
    return {"stream": stream, "env": env, "app": cloud.app, "root": str(app.root)}


async def rollback_app(ls: MinicloudServer, app_name: str | None, env: str) -> Any:
    """`minicloud rollback ENV` with progress: the command's work, and an alert's "Roll back"."""
    app, cloud = ls.app_and_cloud(app_name, None)
    return await run_verb(ls, f"Rolling back {cloud.app}/{env}", lambda p: cloud.rollback(env, progress=p),
                          True, True, app)


def register(server: MinicloudServer) -> None:
    """Every command, bound to a `Cloud` verb."""

    def verb(name: str, title: str, call: Callable[[Any, dict[str, Any], LspProgress], Any], long: bool = True,
             changes: bool = True, quiet: bool = False):
        @server.command(name)
        async def handler(ls, *args):
            arg = _arg(args)
            env = _env(ls, arg)
            app, cloud = _app_and_cloud(ls, arg)
            return await run_verb(ls, f"{title} {cloud.app}/{env}", lambda p: call(cloud, {**arg, "env": env}, p),
                                  long, changes, app, quiet)

        return handler

    verb("minicloud.env.build", "Building", lambda c, a, p: c.build_env(a["env"], p))
    verb("minicloud.deploy", "Deploying",
         lambda c, a, p: c.deploy(a["env"], p, canary=a.get("canary"), judge_seconds=a.get("judge"),
                                  all_at_once=bool(a.get("all_at_once"))))
    verb("minicloud.promote", "Promoting the canary", lambda c, a, p: c.promote(a["env"], p))
    verb("minicloud.canary", "Canary", lambda c, a, p: c.canary_status(a["env"]), long=False, changes=False)
    verb("minicloud.rollback", "Rolling back", lambda c, a, p: c.rollback(a["env"], to=a.get("to"), progress=p))
    verb("minicloud.restart", "Restarting", lambda c, a, p: c.restart(a["env"], p))
    verb("minicloud.stop", "Stopping", lambda c, a, p: c.stop(a["env"], p))
    verb("minicloud.start", "Starting", lambda c, a, p: c.start(a["env"], p))
    verb("minicloud.env.destroy", "Destroying",
         lambda c, a, p: (c.destroy_env(a["env"], with_data=bool(a.get("with_data")), progress=p),
                          {"env": a["env"], "app": c.app, "destroyed": True, "data_kept": not a.get("with_data")})[1])
    # CPU and memory cost the engine ~1 s per container: only when asked ({"stats": true})
    verb("minicloud.status", "Status", lambda c, a, p: c.status(a["env"], stats=bool(a.get("stats"))),
         long=False, changes=False)
    verb("minicloud.releases", "Releases",
         lambda c, a, p: {"env": a["env"], "app": c.app, "releases": [vars(r) for r in c.releases(a["env"])]},
         long=False,
         changes=False)

    verb("minicloud.metrics", "Metrics", lambda c, a, p: c.metrics(a["env"], a.get("since")), long=False,
         changes=False, quiet=True)
    verb("minicloud.alerts", "Alerts", lambda c, a, p: c.alerts(a["env"], a.get("since")), long=False, changes=False,
         quiet=True)

    verb("minicloud.fn.deploy", "Deploying functions",
         lambda c, a, p: c.fn_deploy(a["env"], list(a.get("names") or []) or None, p))
    verb("minicloud.fn.invoke", "Invoking", lambda c, a, p: _invoke(c, a), long=False)
    verb("minicloud.fn.list", "Functions", lambda c, a, p: c.fn_list(a["env"]), long=False, changes=False)

    @server.command("minicloud.logs.tail")
    async def logs_tail(ls, *args):
        arg = _arg(args)
        tail = arg.get("tail", 100)
        return await open_log_tail(ls, arg.get("app"), _env(ls, arg), arg.get("role"), arg.get("since"),
                                   int(tail) if tail is not None else None, arg.get("uri"))

    @server.command("minicloud.logs.stop")
    async def logs_stop(ls, *args):
        stream = _arg(args).get("stream", "")
        return {"stream": stream, "stopped": ls.log_streams.close(stream)}

    @server.command("minicloud.capabilities")
    async def capabilities(ls, *args):
        from codegen.catalog import load_catalog

        snap = _snapshot(ls, _arg(args))
        return {"env": snap.env, "app": snap.app, "apis": [
            {"method": a.method, "title": a.title, "package": ", ".join(a.packages), "signed": a.method in snap.granted}
            for a in load_catalog().apis]}

    @server.command("minicloud.codegen")
    async def codegen(ls, *args):
        """The code calling a capability; with `uri` (and `position`), added to that document: the
        imports and the client set-up once, one function per call at the cursor (codegen.compose)."""
        from codegen.compose import insert_call
        from codegen.generate import CodegenError, generate

        arg = _arg(args)
        method, lang = str(arg.get("method", "")), str(arg.get("lang") or "node")
        snap = _snapshot(ls, arg)  # the app of `uri` (or `app`): its granted packages
        granted = set(snap.granted)
        uri = arg.get("uri")
        try:
            code = generate(method, lang, granted)
            edits = None
            if uri:
                pos = arg.get("position") or {"line": 0, "character": 0}
                edits = insert_call(_document_text(ls, uri), method, lang, int(pos.get("line", 0)), granted)
        except CodegenError as err:
            hint = err.hint_for(snap.env)
            message = err.message + (f"\nhint: {hint}" if hint else "")
            ls.window_show_message(types.ShowMessageParams(types.MessageType.Error, f"minicloud: {message}"))
            raise JsonRpcException(message=message, code=REQUEST_FAILED) from None
        result = {"method": code.method, "lang": code.lang, "code": code.code, "filename": code.filename,
                  "applied": False}
        if uri and not edits:
            ls.window_show_message(types.ShowMessageParams(
                types.MessageType.Info, f"minicloud: {code.function} is already in this file"))
        elif uri:
            edit = types.WorkspaceEdit(changes={uri: [
                types.TextEdit(types.Range(types.Position(e.line, e.character),
                                           types.Position(e.end_line, e.end_character)), e.new_text)
                for e in edits]})
            applied = await ls.workspace_apply_edit_async(
                types.ApplyWorkspaceEditParams(edit=edit, label=f"Generate call to {code.method}"))
            result["applied"] = bool(applied and applied.applied)
        return result


def _document_text(ls, uri: str) -> str:
    """The open document's text (what the editor shows), else the file's, else nothing (a new file)."""
    from urllib.parse import unquote

    from pygls.uris import to_fs_path

    doc = ls.workspace.text_documents.get(unquote(uri))
    if doc is not None:
        return doc.source
    path = to_fs_path(uri)
    try:
        with open(path, encoding="utf-8") as f:
            return f.read()
    except (OSError, TypeError, UnicodeDecodeError):
        return ""
