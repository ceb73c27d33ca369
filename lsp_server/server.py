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
import threading
from pathlib import Path
from typing import Any, BinaryIO

from lsprotocol import types
from pygls.exceptions import JsonRpcException
from pygls.io_ import run_async
from pygls.lsp.server import LanguageServer
from pygls.protocol import LanguageServerProtocol
from pygls.uris import to_fs_path

from . import commands
from .features.ability_files import AbilityFileFeature
from .features.base import Context, Feature, column_from_utf16
from .features.capabilities import CapabilityFeature
from .features.env_vars import EnvVarFeature
from .features.manifest import ManifestFeature
from .features.sql import SqlFeature
from .index import Index, Snapshot
from .logstream import LogStreams

log = logging.getLogger(__name__)
VERSION = "0.1.0"
LOGS_NOTIFICATION = "minicloud/logs"
LOG_BACKLOG_BYTES = 1 << 20  # log traffic queued for the editor beyond which lines wait (and the oldest drop)


class MinicloudProtocol(LanguageServerProtocol):
    """pygls drops a request whose params do not deserialize (e.g. a negative position) without an
    answer, which leaves the client waiting forever; answer it with InvalidParams instead."""

    def structure_message(self, data: dict[str, Any]):
        try:
            return super().structure_message(data)
        except JsonRpcException as exc:
            if isinstance(data, dict) and "id" in data and "method" in data:
                error = JsonRpcException(message=f"invalid params for {data['method']}", code=-32602)
                self._send_response(data["id"], error=error.to_response_error())
            raise exc


class MinicloudServer(LanguageServer):
    def __init__(self) -> None:
        super().__init__("minicloud-lsp", VERSION, protocol_cls=MinicloudProtocol)
        self.env = "test"
        self.workspace_root: Path | None = None
        self.index = Index(None, self.env)
        self.log_streams = LogStreams(congested=self.logs_congested)
        self.ability_files = AbilityFileFeature()
        self.main_loop: asyncio.AbstractEventLoop | None = None  # set at initialize; threads post to it
        self.features: list[Feature] = [ManifestFeature(), EnvVarFeature(), SqlFeature(), CapabilityFeature(),
                                        self.ability_files]

    # ---- set-up
    def configure(self, root: Path | None, env: str | None) -> None:
        from deploy_bridge.errors import MinicloudError
        from deploy_bridge.manifest import find_workspace

        if root is not None:
            # no minicloud.toml yet: the schema and catalog features still work
            with contextlib.suppress(MinicloudError):
                root = find_workspace(root)
        self.workspace_root = root
        self.env = env or self.env
        self.restart_index()

    def restart_index(self) -> None:
        self.index.stop()
        has_manifest = self.workspace_root is not None and (self.workspace_root / "minicloud.toml").is_file()
        self.index = Index(self.workspace_root if has_manifest else None, self.env, on_change=self._on_index_change)
        self.index.refresh_local()  # variables and signed packages are known from the first request
        self._update_trust()
        self.index.start()

    def _update_trust(self) -> None:
        if self.index.workspace is None:
            return
        try:
            from codegen.abilities import workspace_trust

            self.ability_files.trust = workspace_trust(self.index.workspace, self.env)
        except Exception:  # noqa: BLE001 - no keys yet: every package is from an unknown key
            self.ability_files.trust = ({}, None)

    def _on_index_change(self, snapshot: Snapshot) -> None:
        """From the refresh thread: republish diagnostics that depend on the environment."""
        self._update_trust()
        loop = self.main_loop
        if loop is not None and not loop.is_closed():
            loop.call_soon_threadsafe(self.publish_all)

    def cloud_or_error(self):
        """The workspace's Cloud, or a JSON-RPC error (also shown to the user) saying why there is none."""
        try:
            cloud = self.index.cloud()
            message = None if cloud is not None else \
                "no minicloud.toml in this workspace (create one to use the cloud commands)"
        except Exception as err:  # noqa: BLE001 - e.g. a broken manifest: say so
            cloud, message = None, err.render() if hasattr(err, "render") else str(err)
        if message is not None:
            self.window_show_message(types.ShowMessageParams(types.MessageType.Error, f"minicloud: {message}"))
            raise JsonRpcException(message=message, code=commands.REQUEST_FAILED)
        return cloud

    # ---- documents
    def context(self, uri: str, position: types.Position) -> Context | None:
        doc = self.workspace.get_text_document(uri)
        text = doc.source
        lines = text.split("\n")
        line = position.line
        if line < 0 or line >= len(lines):
            line_text, line = "", max(0, min(line, len(lines)))
        else:
            line_text = lines[line]
        return Context(uri, doc.language_id or _language_of(uri), text, line,
                       column_from_utf16(line_text, position.character), self.index.snapshot)

    def features_for(self, uri: str, language: str) -> list[Feature]:
        return [f for f in self.features if f.accepts(uri, language)]

    def publish(self, uri: str) -> None:
        doc = self.workspace.get_text_document(uri)
        language = doc.language_id or _language_of(uri)
        diagnostics: list[types.Diagnostic] = []
        for feature in self.features_for(uri, language):
            try:
                diagnostics += feature.diagnostics(uri, language, doc.source, self.index.snapshot)
            except Exception:  # noqa: BLE001 - one feature's bug must not hide the others' diagnostics
                log.exception("diagnostics of %s failed on %s", feature.name, uri)
        self.text_document_publish_diagnostics(types.PublishDiagnosticsParams(uri=uri, diagnostics=diagnostics,
                                                                              version=doc.version))

    def publish_all(self) -> None:
        for uri in list(self.workspace.text_documents):
            self.publish(uri)

    # ---- transport
    def start_io(self, stdin: BinaryIO | None = None, stdout: BinaryIO | None = None) -> None:
        """Stdio on the event loop, answers ahead of log traffic (see transport.py)."""
        if os.name == "nt":  # no pipe support for the console handles there: pygls' own transport
            super().start_io(stdin, stdout)
            return
        from .transport import PipeReader, PriorityPipeWriter

        self._stop_event = threading.Event()

        async def serve() -> None:
            reader = await PipeReader.attach(stdin or sys.stdin.buffer)
            self.protocol.set_writer(PriorityPipeWriter((stdout or sys.stdout.buffer).fileno(),
                                                        asyncio.get_running_loop()))
            await run_async(stop_event=self._stop_event, reader=reader, protocol=self.protocol, logger=log,
                            error_handler=self.report_server_error)

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
    def send_log_lines(self, stream: str, lines: list[bytes], dropped: int) -> None:
        """Deliver raw JSON log lines (from `minicloud logs --json`) to the client."""
        experimental = self.client_capabilities.experimental
        if isinstance(experimental, dict) and experimental.get("minicloudLogs"):
            # the body is built from the raw lines: nothing is parsed or re-serialised per line
            body = (b'{"jsonrpc":"2.0","method":"' + LOGS_NOTIFICATION.encode() + b'","params":{"stream":'
                    + json.dumps(stream).encode() + b',"dropped":' + str(dropped).encode()
                    + b',"lines":[' + b",".join(lines) + b"]}}")
            self._write_raw(body, bulk=True)
            return
        parsed = [json.loads(raw) for raw in lines]
        text = "\n".join(f"{ln['time']} {ln['role']}{' ' + ln['release'] if ln.get('release') else ''} | {ln['line']}"
                         for ln in parsed)
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


def _language_of(uri: str) -> str:
    suffix = uri.rsplit(".", 1)[-1].lower()
    return {"js": "javascript", "mjs": "javascript", "cjs": "javascript", "ts": "typescript", "py": "python",
            "java": "java", "toml": "toml", "json": "json", "jsx": "javascriptreact",
            "tsx": "typescriptreact"}.get(suffix, suffix)


server = MinicloudServer()
commands.register(server)


@server.feature(types.INITIALIZE)
def initialize(ls: MinicloudServer, params: types.InitializeParams) -> None:
    with contextlib.suppress(RuntimeError):
        ls.main_loop = asyncio.get_running_loop()
    options = params.initialization_options if isinstance(params.initialization_options, dict) else {}
    root = None
    if params.workspace_folders:
        root = to_fs_path(params.workspace_folders[0].uri)
    elif params.root_uri:
        root = to_fs_path(params.root_uri)
    elif params.root_path:
        root = params.root_path
    ls.configure(Path(root) if root else None, options.get("env"))


@server.feature(types.SHUTDOWN)
def shutdown(ls: MinicloudServer, params: None) -> None:
    ls.log_streams.close_all()
    ls.index.stop()


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
    ls.publish(params.text_document.uri)


@server.feature(types.TEXT_DOCUMENT_DID_CHANGE)
def did_change(ls: MinicloudServer, params: types.DidChangeTextDocumentParams) -> None:
    ls.publish(params.text_document.uri)


@server.feature(types.TEXT_DOCUMENT_DID_SAVE)
def did_save(ls: MinicloudServer, params: types.DidSaveTextDocumentParams) -> None:
    uri = params.text_document.uri
    if uri.endswith("minicloud.toml") or "/abilities/" in uri:
        ls.index.refresh_soon()  # the env's variables or the granted methods may have changed
    ls.publish(uri)


@server.feature(types.TEXT_DOCUMENT_DID_CLOSE)
def did_close(ls: MinicloudServer, params: types.DidCloseTextDocumentParams) -> None:
    ls.text_document_publish_diagnostics(types.PublishDiagnosticsParams(uri=params.text_document.uri, diagnostics=[]))


@server.feature(types.TEXT_DOCUMENT_COMPLETION,
                types.CompletionOptions(trigger_characters=[".", "[", "'", '"', "/", " ", "=", "{", ",", "("]))
def completion(ls: MinicloudServer, params: types.CompletionParams) -> types.CompletionList:
    ctx = ls.context(params.text_document.uri, params.position)
    items: list[types.CompletionItem] = []
    for feature in ls.features_for(ctx.uri, ctx.language):
        trigger = feature.completion_trigger
        if trigger is None or trigger.match(ctx) is None:
            continue
        try:
            items += feature.completion(ctx)
        except Exception:  # noqa: BLE001 - answer with what the other features found
            log.exception("completion of %s failed", feature.name)
    return types.CompletionList(is_incomplete=False, items=items)


@server.feature(types.TEXT_DOCUMENT_HOVER)
def hover(ls: MinicloudServer, params: types.HoverParams) -> types.Hover | None:
    ctx = ls.context(params.text_document.uri, params.position)
    for feature in ls.features_for(ctx.uri, ctx.language):
        try:
            if (answer := feature.hover(ctx)) is not None:
                return answer
        except Exception:  # noqa: BLE001
            log.exception("hover of %s failed", feature.name)
    return None


@server.feature(types.TEXT_DOCUMENT_CODE_ACTION,
                types.CodeActionOptions(code_action_kinds=[types.CodeActionKind.Refactor,
                                                           types.CodeActionKind.RefactorRewrite]))
def code_action(ls: MinicloudServer, params: types.CodeActionParams) -> list[types.CodeAction]:
    ctx = ls.context(params.text_document.uri, params.range.start)
    actions: list[types.CodeAction] = []
    for feature in ls.features_for(ctx.uri, ctx.language):
        try:
            actions += feature.code_actions(ctx, params)
        except Exception:  # noqa: BLE001
            log.exception("code actions of %s failed", feature.name)
    return actions
