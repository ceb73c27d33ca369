"""What lsp_server/pygls_compat.py relies on in the installed pygls: each private attribute exists and
behaves as used. A pygls upgrade that renames or changes one fails here."""

from __future__ import annotations

import asyncio
import inspect
import json
import logging
import threading

from lsprotocol import types
from pygls.exceptions import JsonRpcException
from pygls.io_ import run_async
from pygls.lsp.server import LanguageServer
from pygls.protocol import JsonRPCProtocol, LanguageServerProtocol

from lsp_server import pygls_compat
from lsp_server.transport import PipeReader


class CaptureWriter:
    def __init__(self) -> None:
        self.data = b""

    def write(self, data: bytes) -> None:
        self.data += data

    def close(self) -> None:
        pass

    def messages(self) -> list[dict]:
        out, data = [], self.data
        while data:
            header, _, rest = data.partition(b"\r\n\r\n")
            length = next(int(line.split(b":")[1]) for line in header.split(b"\r\n")
                          if line.lower().startswith(b"content-length:"))
            out.append(json.loads(rest[:length]))
            data = rest[length:]
        return out


def test_shutdown_sets_the_stop_event_we_install():
    server = LanguageServer("compat", "0")
    assert hasattr(server, pygls_compat.STOP_EVENT_ATTRIBUTE), "pygls renamed LanguageServer._stop_event"
    event = pygls_compat.install_stop_event(server)
    assert isinstance(event, threading.Event) and not event.is_set()
    server.shutdown()
    assert event.is_set(), "LanguageServer.shutdown() no longer sets _stop_event"


def test_send_response_writes_an_error_answer():
    assert "_send_response" in vars(JsonRPCProtocol), "pygls renamed JsonRPCProtocol._send_response"
    params = inspect.signature(JsonRPCProtocol._send_response).parameters
    assert list(params)[:4] == ["self", "msg_id", "result", "error"]
    server = LanguageServer("compat", "0")
    writer = CaptureWriter()
    server.protocol.set_writer(writer)
    pygls_compat.send_error(server.protocol, 7, JsonRpcException(message="invalid params for x", code=-32602))
    [answer] = writer.messages()
    assert answer["id"] == 7 and answer["error"] == {"code": -32602, "message": "invalid params for x"}


def test_structure_message_raises_on_bad_params_so_the_server_can_answer():
    """MinicloudProtocol answers InvalidParams from its structure_message override: pygls must still
    raise a JsonRpcException there (rather than answer or drop silently)."""
    from lsp_server.server import MinicloudProtocol

    assert issubclass(MinicloudProtocol, LanguageServerProtocol)
    server = LanguageServer("compat", "0", protocol_cls=MinicloudProtocol)
    writer = CaptureWriter()
    server.protocol.set_writer(writer)
    bad = {"jsonrpc": "2.0", "id": 3, "method": types.TEXT_DOCUMENT_HOVER,
           "params": {"textDocument": {"uri": "file:///a.js"}, "position": {"line": -1, "character": 0}}}
    try:
        json.loads(json.dumps(bad), object_hook=server.protocol.structure_message)
    except JsonRpcException:
        pass
    else:
        raise AssertionError("structure_message accepted a negative position")
    [answer] = writer.messages()
    assert answer["id"] == 3 and answer["error"]["code"] == -32602


def test_run_async_reads_our_framing_and_stops_at_end_of_input():
    """run_async over PipeReader: the header we frame is the one it parses, each body is handled
    once, and an empty readline ends the loop."""
    assert list(inspect.signature(run_async).parameters) == ["stop_event", "reader", "protocol", "logger",
                                                             "error_handler"]
    handled: list[dict] = []

    class Protocol:
        def structure_message(self, data):
            return data

        def handle_message(self, message):
            handled.append(message)

    class Server:
        protocol = Protocol()

    async def scenario() -> None:
        stream = asyncio.StreamReader()
        for i in range(3):
            body = json.dumps({"jsonrpc": "2.0", "method": "m", "params": {"i": i}}).encode()
            stream.feed_data(b"Content-Length: %d\r\n\r\n" % len(body) + body)
        stream.feed_eof()
        await asyncio.wait_for(pygls_compat.run_message_loop(Server(), threading.Event(), PipeReader(stream),
                                                             logging.getLogger("compat")), 5)

    asyncio.run(scenario())
    assert [m["params"]["i"] for m in handled] == [0, 1, 2]
    assert pygls_compat.frame_header(12) == b"Content-Length: 12\r\n"


def test_the_protocols_converter_is_reachable_and_every_warmed_message_converts():
    """warmup.py converts a sample of each message through pygls' own converter: an lsprotocol or pygls
    upgrade that moves the converter or changes a type fails here, not as a slow first completion."""
    from lsp_server import pygls_compat, warmup
    from lsp_server.server import server

    converter = pygls_compat.converter(server.protocol)
    took, failed = warmup.warm(converter)
    assert failed == []
    completion = converter.unstructure(warmup.OUTGOING[0])
    assert completion["isIncomplete"] is True and completion["items"][0]["textEdit"]["newText"] == "x"
