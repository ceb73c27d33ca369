"""The minicloud language server: one handler per LSP method, each short, each delegating.

Requests are answered from the document and the in-memory `Index` snapshot; nothing slow runs on
the request path. Cloud commands live in `commands.py`, features in `features/`.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import json
import logging
import os
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, BinaryIO, TypeVar
from urllib.parse import unquote

from lsprotocol import types
from pygls.exceptions import JsonRpcException
from pygls.lsp.server import LanguageServer
from pygls.protocol import LanguageServerProtocol

from deploy_bridge.model import format_log_line

from . import commands, pygls_compat, resolve, warmup
from .apps import NO_APP_MESSAGE, App, Apps
from .features.ability_files import AbilityFileFeature
from .features.base import Context, Feature, column_from_utf16, trigger_characters
from .features.capabilities import CapabilityFeature
from .features.data import DataFeature
from .features.env_vars import EnvVarFeature
from .features.functions import FunctionsFeature
from .features.manifest import ManifestFeature
from .features.routes import RoutesFeature
from .features.sql import SqlFeature
from .index import Index, Snapshot
from .languages import language_of
from .logstream import LogStreams
from .watch import Watch

log = logging.getLogger(__name__)
VERSION = "0.1.0"
LOGS_NOTIFICATION = "minicloud/logs"
CHANGED_NOTIFICATION = "minicloud/changed"  # a container of an env started, died or was removed
LOG_BACKLOG_BYTES = 1 << 20  # log traffic queued for the editor beyond which lines wait (and the oldest drop)
DIAGNOSTICS_DELAY = 0.15  # seconds after the last change of a document before its diagnostics are computed
T = TypeVar("T")


class MinicloudProtocol(LanguageServerProtocol):
    """pygls drops a request whose params do not deserialize (e.g. a negative position) without an
    answer, which leaves the client waiting forever; answer it with InvalidParams instead."""

    def structure_message(self, data: dict[str, Any]):
        try:
            return super().structure_message(data)
        except JsonRpcException as exc:
            if isinstance(data, dict) and "id" in data and "method" in data:
                error = JsonRpcException(message=f"invalid params for {data['method']}", code=-32602)
                pygls_compat.send_error(self, data["id"], error)
            raise exc


class MinicloudServer(LanguageServer):
    def __init__(self) -> None:
        super().__init__("minicloud-lsp", VERSION, protocol_cls=MinicloudProtocol)
        self.env = "test"
        self.apps = Apps(self._make_index)  # one Index per app (apps.py): each document its own app's answers
        self.log_streams = LogStreams(congested=self.logs_congested)
        self.main_loop: asyncio.AbstractEventLoop | None = None  # set at initialize; threads post to it
        self.features: list[Feature] = [ManifestFeature(), EnvVarFeature(), SqlFeature(), CapabilityFeature(),
                                        AbilityFileFeature(), FunctionsFeature(), RoutesFeature(), DataFeature()]
        self.watch = Watch(self)  # metrics, alerts and canaries as the engine reader's pulses tell them
        self._pending_diagnostics: dict[str, asyncio.TimerHandle] = {}  # uri -> the debounced publish
        self.warmed = False

    # ---- set-up
    def configure(self, folders: list[str], env: str | None, defer_threads: bool = False) -> None:
        """The workspace folders (URIs) and the env: the app of each folder starts its index (its
        threads at `initialized` with `defer_threads`)."""
        self.env = env or self.env
        self.apps.restart(self._make_index)
        self.apps.defer_threads = defer_threads
        for uri in folders:
            self.apps.add_folder(uri)

    def _make_index(self, root: Path) -> Index:
        index = Index(root, self.env, on_change=lambda snapshot: self._on_index_change(root, snapshot),
                      on_event=lambda env: self._on_engine_event(root, env),
                      on_pulse=lambda pulse: self.watch.on_pulse(root, pulse))
        self.prepare(index.snapshot)  # before the first request: what features derive from the index
        return index

    def prepare(self, snapshot: Snapshot) -> None:
        """Let each feature derive what it answers from (e.g. sorted table names) now, not on a request."""
        for feature in self.features:
            try:
                feature.prepare(snapshot)
            except Exception:  # noqa: BLE001 - a feature's bug must not stop the server
                log.exception("preparing %s failed", feature.name)

    def restart_index(self) -> None:
        """Every app's index anew (the env changed)."""
        self.apps.restart(self._make_index)

    @property
    def index(self) -> Index:
        """The index of the only app in use, else an empty one (never another app's). Kept for code
        written for one app; with several, ask `snapshot_for(uri)` or `app_or_error(...)`."""
        apps = list(self.apps)
        return apps[0].index if len(apps) == 1 else Index(None, self.env)

    def snapshot_for(self, uri: str) -> Snapshot:
        """The snapshot of the document's app; an empty one for a document outside any app."""
        app = self.apps.of_document(uri)
        return app.snapshot() if app is not None else Snapshot(self.env)

    def _on_index_change(self, root: Path, snapshot: Snapshot) -> None:
        """From a refresh thread: republish the diagnostics of that app's documents."""
        self.prepare(snapshot)  # here, in the refresh thread, rather than in the next request
        loop = self.main_loop
        if loop is not None and not loop.is_closed():
            loop.call_soon_threadsafe(self.publish_app, root)

    def _on_engine_event(self, root: Path, env: str | None) -> None:
        """From an events thread: tell a client that asked for it (experimental.minicloudChanged) that an
        env of an app changed, so that it asks for its status then instead of polling the engine."""
        experimental = self.client_capabilities.experimental if self.client_capabilities else None
        loop = self.main_loop
        if not (isinstance(experimental, dict) and experimental.get("minicloudChanged")) or loop is None \
                or loop.is_closed():
            return
        loop.call_soon_threadsafe(self._notify_changed, root, env)

    def _notify_changed(self, root: Path, env: str | None) -> None:
        app = self.apps.get(root)
        self.protocol.notify(CHANGED_NOTIFICATION, {"env": env, "app": app.name, "root": str(root)})

    def app_or_error(self, app: str | None = None, uri: str | None = None) -> App:
        """The app a command acts on (apps.Apps.resolve), or a JSON-RPC error (also shown) saying why not."""
        try:
            return self.apps.resolve(app, uri)
        except LookupError as err:
            self._fail(str(err.args[0]) if err.args else str(err))

    def cloud_or_error(self, app: str | None = None, uri: str | None = None):
        """The app's Cloud, or a JSON-RPC error (also shown to the user) saying why there is none."""
        return self.app_and_cloud(app, uri)[1]

    def app_and_cloud(self, app: str | None = None, uri: str | None = None):
        found = self.app_or_error(app, uri)
        try:
            cloud = found.cloud()
            message = None if cloud is not None else NO_APP_MESSAGE
        except Exception as err:  # noqa: BLE001 - e.g. a broken manifest: say so
            cloud, message = None, err.render() if hasattr(err, "render") else str(err)
        if message is not None:
            self._fail(message)
        return found, cloud

    def _fail(self, message: str):
        self.window_show_message(types.ShowMessageParams(types.MessageType.Error, f"minicloud: {message}"))
        raise JsonRpcException(message=message, code=commands.REQUEST_FAILED)

    # ---- documents
    def open_document(self, uri: str):
        """The open document `uri`; a request about any other is answered with a clear error (a
        document that is not open has no text we may rely on, and pygls' own error carries a traceback)."""
        doc = self.workspace.text_documents.get(unquote(uri))
        if doc is None:
            raise JsonRpcException(message=f"document not open: {uri}", code=int(types.ErrorCodes.InvalidParams))
        return doc

    def context(self, uri: str, position: types.Position) -> Context:
        doc = self.open_document(uri)
        text = doc.source
        lines = text.split("\n")
        line = position.line
        if line < 0 or line >= len(lines):
            line_text, line = "", max(0, min(line, len(lines)))
        else:
            line_text = lines[line]
        return Context(uri, language_of(doc.language_id, uri), text, line,
                       column_from_utf16(line_text, position.character), self.snapshot_for(uri))

    def features_for(self, uri: str, language: str) -> list[Feature]:
        return [f for f in self.features if f.accepts(uri, language)]

    def dispatch(self, what: str, uri: str, language: str, call: Callable[[Feature], T | None]) -> Iterator[T]:
        """`call` on each feature that accepts the document, lazily, skipping None answers; a feature
        that fails is logged and skipped (one feature's bug must not hide the others' answers)."""
        for feature in self.features_for(uri, language):
            try:
                answer = call(feature)
            except Exception:  # noqa: BLE001
                log.exception("%s of %s failed on %s", what, feature.name, uri)
                continue
            if answer is not None:
                yield answer

    def publish(self, uri: str) -> None:
        self.cancel_pending_publish(uri)
        doc = self.workspace.text_documents.get(unquote(uri))
        if doc is None:
            return
        language = language_of(doc.language_id, uri)
        text, snapshot = doc.source, self.snapshot_for(uri)
        diagnostics = [d for found in self.dispatch("diagnostics", uri, language,
                                                   lambda f: f.diagnostics(uri, language, text, snapshot))
                       for d in found]
        self.text_document_publish_diagnostics(types.PublishDiagnosticsParams(uri=uri, diagnostics=diagnostics,
                                                                              version=doc.version))

    def publish_soon(self, uri: str) -> None:
        """Publish `uri`'s diagnostics once its edits pause for DIAGNOSTICS_DELAY (debounced per document)."""
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:  # not on the event loop (no transport): at once
            self.publish(uri)
            return
        self.cancel_pending_publish(uri)
        self._pending_diagnostics[uri] = loop.call_later(DIAGNOSTICS_DELAY, self.publish, uri)

    def cancel_pending_publish(self, uri: str) -> None:
        if (handle := self._pending_diagnostics.pop(uri, None)) is not None:
            handle.cancel()

    def publish_all(self) -> None:
        for uri in list(self.workspace.text_documents):
            self.publish(uri)

    def publish_app(self, root: Path) -> None:
        """Republish the documents of one app (its index changed)."""
        app = self.apps.get(root)
        for uri in sorted(app.documents.values()):
            self.publish(uri)

    # ---- transport
    def start_io(self, stdin: BinaryIO | None = None, stdout: BinaryIO | None = None) -> None:
        """Stdio on the event loop, answers ahead of log traffic (see transport.py)."""
        if os.name == "nt":  # no pipe support for the console handles there: pygls' own transport
            super().start_io(stdin, stdout)
            return
        from .transport import PipeReader, PriorityPipeWriter

        stop_event = pygls_compat.install_stop_event(self)

        async def serve() -> None:
            reader = await PipeReader.attach(stdin or sys.stdin.buffer)
            self.protocol.set_writer(PriorityPipeWriter((stdout or sys.stdout.buffer).fileno(),
                                                        asyncio.get_running_loop()))
            await pygls_compat.run_message_loop(self, stop_event, reader, log, self.report_server_error)

        try:
            asyncio.run(serve())
        except BrokenPipeError:
            log.error("the editor closed the connection; shutting down")
        except (KeyboardInterrupt, SystemExit):
            pass
        finally:
            self.shutdown()

    def logs_congested(self) -> bool:
        """True while the editor has not read the log traffic already queued for it."""
        return getattr(self.protocol.writer, "bulk_bytes", 0) > LOG_BACKLOG_BYTES

    # ---- logs
    def send_log_lines(self, stream: str, lines: list[bytes], dropped: int, app: str | None = None) -> None:
        """Deliver raw JSON log lines (from `minicloud logs --json`) of an app to the client."""
        experimental = self.client_capabilities.experimental
        if isinstance(experimental, dict) and experimental.get("minicloudLogs"):
            # the body is built from the raw lines: nothing is parsed or re-serialised per line
            body = (b'{"jsonrpc":"2.0","method":"' + LOGS_NOTIFICATION.encode() + b'","params":{"stream":'
                    + json.dumps(stream).encode() + b',"app":' + json.dumps(app).encode()
                    + b',"dropped":' + str(dropped).encode()
                    + b',"lines":[' + b",".join(lines) + b"]}}")
            self._write_raw(body, bulk=True)
            return
        parsed = [json.loads(raw) for raw in lines]
        text = "\n".join(format_log_line(ln["time"], ln["role"], ln.get("release"), ln["line"]) for ln in parsed)
        if dropped:
            text += f"\n({dropped} lines dropped: the editor could not keep up)"
        self.window_log_message(types.LogMessageParams(types.MessageType.Log, text))

    def _write_raw(self, body: bytes, bulk: bool = False) -> None:
        writer = self.protocol.writer
        if writer is None:
            return
        message = b"Content-Length: %d\r\n\r\n" % len(body) + body
        if bulk and hasattr(writer, "write_bulk"):  # our stdio transport: logs go after answers
            writer.write_bulk(message)
            return
        result = writer.write(message)
        if inspect.isawaitable(result):
            asyncio.ensure_future(result)


server = MinicloudServer()
commands.register(server)
resolve.register(server)  # completionItem/resolve: documentation of long lists' items, when shown


@server.feature(types.INITIALIZE)
def initialize(ls: MinicloudServer, params: types.InitializeParams) -> None:
    with contextlib.suppress(RuntimeError):
        ls.main_loop = asyncio.get_running_loop()
    options = params.initialization_options if isinstance(params.initialization_options, dict) else {}
    if params.workspace_folders:
        folders = [f.uri for f in params.workspace_folders]
    elif params.root_uri:
        folders = [params.root_uri]
    elif params.root_path:
        folders = [Path(params.root_path).absolute().as_uri()]
    else:
        folders = []
    ls.configure(folders, options.get("env"), defer_threads=True)
    if not ls.warmed:  # once per process: the first requests then convert nothing for the first time
        ls.warmed = True
        took, failed = warmup.warm(pygls_compat.converter(ls.protocol))
        log.debug("message types warmed in %.0f ms%s", took, f" ({len(failed)} failed)" if failed else "")


@server.feature(types.INITIALIZED)
def initialized(ls: MinicloudServer, params: types.InitializedParams) -> None:
    ls.apps.start_deferred()  # the folders' index threads: after `initialize` is answered


@server.feature(types.WORKSPACE_DID_CHANGE_WORKSPACE_FOLDERS)
def did_change_workspace_folders(ls: MinicloudServer, params: types.DidChangeWorkspaceFoldersParams) -> None:
    """A folder added: its app's index starts; removed: its app's stops unless its documents are open."""
    for folder in params.event.removed or []:
        ls.apps.remove_folder(folder.uri)
    for folder in params.event.added or []:
        ls.apps.add_folder(folder.uri)


@server.feature(types.SHUTDOWN)
def shutdown(ls: MinicloudServer, params: None) -> None:
    ls.log_streams.close_all()
    ls.apps.stop_all()


@server.feature(types.WORKSPACE_DID_CHANGE_CONFIGURATION)
def did_change_configuration(ls: MinicloudServer, params: types.DidChangeConfigurationParams) -> None:
    settings = params.settings if isinstance(params.settings, dict) else {}
    env = (settings.get("minicloud") or {}).get("env") if isinstance(settings.get("minicloud"), dict) else None
    env = env or settings.get("minicloud.env")
    if env and env != ls.env:
        ls.env = env
        ls.restart_index()


@server.feature(types.TEXT_DOCUMENT_DID_OPEN)
def did_open(ls: MinicloudServer, params: types.DidOpenTextDocumentParams) -> None:
    ls.apps.open_document(params.text_document.uri)  # its app's index starts with its first document
    ls.publish(params.text_document.uri)


@server.feature(types.TEXT_DOCUMENT_DID_CHANGE)
def did_change(ls: MinicloudServer, params: types.DidChangeTextDocumentParams) -> None:
    ls.publish_soon(params.text_document.uri)  # typing: once the edits pause, not per keystroke


@server.feature(types.TEXT_DOCUMENT_DID_SAVE)
def did_save(ls: MinicloudServer, params: types.DidSaveTextDocumentParams) -> None:
    uri = params.text_document.uri
    if uri.endswith("minicloud.toml"):  # maybe a new app: documents below it are now its own
        for moved in ls.apps.rescan():
            ls.publish(moved)
    app = ls.apps.of_document(uri)
    if (uri.endswith("minicloud.toml") or "/abilities/" in uri) and app is not None:
        app.refresh_soon()  # the env's variables or the granted methods may have changed
    ls.publish(uri)


@server.feature(types.TEXT_DOCUMENT_DID_CLOSE)
def did_close(ls: MinicloudServer, params: types.DidCloseTextDocumentParams) -> None:
    ls.cancel_pending_publish(params.text_document.uri)
    ls.apps.close_document(params.text_document.uri)  # its app's last document: its index stops (apps.py)
    ls.text_document_publish_diagnostics(types.PublishDiagnosticsParams(uri=params.text_document.uri, diagnostics=[]))


def _complete(feature: Feature, ctx: Context) -> list[types.CompletionItem] | None:
    """A feature completes only where its trigger matches, and gets that match as `ctx.match`."""
    trigger = feature.completion_trigger
    if trigger is None or (match := trigger.match(ctx)) is None:
        return None
    ctx.match = match
    return feature.completion(ctx)


@server.feature(types.TEXT_DOCUMENT_COMPLETION,
                types.CompletionOptions(trigger_characters=trigger_characters(server.features), resolve_provider=True))
def completion(ls: MinicloudServer, params: types.CompletionParams) -> types.CompletionList:
    ctx = ls.context(params.text_document.uri, params.position)
    answers = list(ls.dispatch("completion", ctx.uri, ctx.language, lambda f: _complete(f, ctx)))
    items = [item for found in answers for item in found]
    return types.CompletionList(is_incomplete=any(getattr(a, "is_incomplete", False) for a in answers), items=items)


@server.feature(types.TEXT_DOCUMENT_HOVER)
def hover(ls: MinicloudServer, params: types.HoverParams) -> types.Hover | None:
    ctx = ls.context(params.text_document.uri, params.position)
    return next(ls.dispatch("hover", ctx.uri, ctx.language, lambda f: f.hover(ctx)), None)


@server.feature(types.TEXT_DOCUMENT_CODE_LENS, types.CodeLensOptions(resolve_provider=False))
def code_lens(ls: MinicloudServer, params: types.CodeLensParams) -> list[types.CodeLens]:
    uri = params.text_document.uri
    doc = ls.workspace.text_documents.get(unquote(uri))
    if doc is None:
        return []
    language, snapshot = language_of(doc.language_id, uri), ls.snapshot_for(uri)
    return [lens for found in ls.dispatch("code lenses", uri, language,
                                          lambda f: f.code_lenses(uri, doc.source, snapshot))
            for lens in found]


@server.feature(types.TEXT_DOCUMENT_CODE_ACTION,
                types.CodeActionOptions(code_action_kinds=[types.CodeActionKind.Refactor,
                                                           types.CodeActionKind.RefactorRewrite]))
def code_action(ls: MinicloudServer, params: types.CodeActionParams) -> list[types.CodeAction]:
    ctx = ls.context(params.text_document.uri, params.range.start)
    return [action for found in ls.dispatch("code actions", ctx.uri, ctx.language,
                                            lambda f: f.code_actions(ctx, params))
            for action in found]
