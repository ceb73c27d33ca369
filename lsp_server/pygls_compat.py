"""Everything the server relies on in pygls beyond its documented API, in one place.

pygls 2 gives no public way to (a) run its stdio message loop over our own reader and writer
while `LanguageServer.shutdown()` still ends that loop, or (b) answer a request whose params could
not be deserialized (it drops it). What we use for that, and only here:

- `LanguageServer._stop_event`: the `threading.Event` that `shutdown()` sets and `run_async` polls;
- `JsonRPCProtocol._send_response(msg_id, result=None, error=None)`: writes one response message;
- `pygls.io_.run_async(stop_event, reader, protocol, logger, error_handler)` and the framing it
  parses (`Content-Length: N\\r\\n`, a blank line, then `readexactly(N)` from the reader);
- `JsonRPCProtocol._converter`: the cattrs converter that (de)serializes every message (warmup.py).

tests/test_pygls_compat.py asserts each of these on the installed pygls: an upgrade that renames or
changes one fails there, not in an editor.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Any

from pygls.exceptions import JsonRpcException
from pygls.io_ import run_async
from pygls.protocol import JsonRPCProtocol
from pygls.server import JsonRPCServer

STOP_EVENT_ATTRIBUTE = "_stop_event"


def converter(protocol: JsonRPCProtocol) -> Any:
    """The cattrs converter the protocol serializes messages with."""
    return protocol._converter  # private: see the module doc


def frame_header(length: int) -> bytes:
    """The one header line `run_async` accepts (it fullmatches `^Content-Length: (\\d+)\\r\\n$`)."""
    return b"Content-Length: %d\r\n" % length


def install_stop_event(server: JsonRPCServer) -> threading.Event:
    """A fresh stop event that `server.shutdown()` sets, as pygls' own `start_io` installs it."""
    event = threading.Event()
    setattr(server, STOP_EVENT_ATTRIBUTE, event)
    return event


def send_error(protocol: JsonRPCProtocol, msg_id: Any, error: JsonRpcException) -> None:
    """Answer request `msg_id` with `error`, outside a feature handler."""
    protocol._send_response(msg_id, error=error.to_response_error())  # private: see the module doc


async def run_message_loop(server: JsonRPCServer, stop_event: threading.Event, reader: Any,
                           logger: logging.Logger,
                           error_handler: Callable[[Exception, type[JsonRpcException]], Any] | None = None) -> None:
    """pygls' asynchronous message loop, over `reader` (readline/readexactly, framed as above)."""
    await run_async(stop_event=stop_event, reader=reader, protocol=server.protocol, logger=logger,
                    error_handler=error_handler)
