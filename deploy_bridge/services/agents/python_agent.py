"""minicloud's function instance for Python: generic until told which function's code to load.

    POST /specialize {name, version, dir}  loads DIR/main.py (def main(event, context), sync or async)
    POST /invoke {event, context}          runs it; answers {ok, result} or {ok: false, error}
    GET  /health                           {fn, version, pid}

Every log line of an invocation is tagged [NAME REQUEST-ID]; START and END lines frame each one.
Standard library only: it runs in the python runtime image.
"""

from __future__ import annotations

import asyncio
import contextvars
import importlib.util
import inspect
import json
import os
import resource
import sys
import threading
import time
import traceback
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

PORT = int(os.environ.get("MINICLOUD_AGENT_PORT", "9000"))
SDK_DIR = "/opt/minicloud-sdk"  # the data API's SDKs, mounted read-only by the scheduler
CALL: contextvars.ContextVar[str | None] = contextvars.ContextVar("call", default=None)
STATE: dict = {"fn": None}
LOCK = threading.Lock()


class TaggedStream:
    """stdout/stderr that start each line written during an invocation with its tag."""

    def __init__(self, stream) -> None:
        self.stream = stream
        self.at_line_start = True

    def write(self, text: str) -> int:
        tag = CALL.get()
        if tag:
            lines = text.split("\n")
            out = []
            for i, line in enumerate(lines):
                if line and (self.at_line_start or i > 0):
                    line = f"[{tag}] {line}"
                out.append(line)
            text = "\n".join(out)
        self.at_line_start = text.endswith("\n")
        self.stream.write(text)
        self.stream.flush()
        return len(text)

    def flush(self) -> None:
        self.stream.flush()


sys.stdout = TaggedStream(sys.stdout)
sys.stderr = TaggedStream(sys.stderr)


def specialize(body: dict) -> tuple[int, dict]:
    with LOCK:
        if STATE["fn"] is not None:
            return 409, {"error": f"already running {STATE['fn']['name']}"}
        path = os.path.join(body["dir"], "main.py")
        sys.path.insert(0, body["dir"])
        try:
            spec = importlib.util.spec_from_file_location(f"minicloud_fn_{body['name']}", path)
            module = importlib.util.module_from_spec(spec)
            spec.loader.exec_module(module)
        except Exception as err:  # noqa: BLE001 - the user's code: any error is the answer
            return 400, {"error": f"cannot load {body['name']}: {type(err).__name__}: {err}"}
        main = getattr(module, "main", None)
        if not callable(main):
            return 400, {"error": f"{body['name']}: main.py has no def main(event, context)"}
        STATE["fn"] = {"name": body["name"], "version": body["version"], "main": main, "invoked": False}
        return 200, {"fn": body["name"], "version": body["version"]}


class Context(dict):
    """The invocation's context: a dict (request_id, function_name, env, deadline) with time_left()."""

    def time_left(self) -> float:
        return max(0.0, self.get("deadline", 0) / 1000 - time.time())

    def get_remaining_time_in_millis(self) -> int:
        return int(self.time_left() * 1000)

    @property
    def cloud(self):
        """The env's data API with the server credential (minicloud_cloud.Cloud), made on first use."""
        if STATE.get("cloud") is None:
            if not os.environ.get("MINICLOUD_DATA_URL"):
                raise RuntimeError("context.cloud: this env has no data API (add [data] to minicloud.toml and "
                                   "run minicloud env build)")
            if SDK_DIR not in sys.path:
                sys.path.append(SDK_DIR)
            from minicloud_cloud import Cloud

            STATE["cloud"] = Cloud()
        return STATE["cloud"]


def invoke(body: dict) -> tuple[int, dict]:
    fn = STATE["fn"]
    if fn is None:
        return 409, {"error": "not specialised"}
    raw = body.get("context") or {}
    context = Context(request_id=raw.get("requestId"), function_name=fn["name"], env=raw.get("env"),
                      deadline=raw.get("deadline", 0))
    cold = bool(raw["cold"]) if "cold" in raw else not fn["invoked"]  # the scheduler knows best
    fn["invoked"] = True
    token = CALL.set(f"{fn['name']} {raw.get('requestId')}")
    started = time.perf_counter()
    print(f"START {'cold' if cold else 'warm'} version={fn['version']}")
    try:
        result = fn["main"](body.get("event"), context)
        if inspect.isawaitable(result):
            result = asyncio.run(_awaited(result))
        reply = 200, {"ok": True, "result": result}
    except Exception as err:  # noqa: BLE001 - the user's error is the answer
        reply = 200, {"ok": False, "error": {"type": type(err).__name__, "message": str(err),
                                              "stack": traceback.format_exc()}}
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"END duration={(time.perf_counter() - started) * 1000:.1f}ms {'cold' if cold else 'warm'} "
          f"peak_memory={peak:.1f}MB")
    CALL.reset(token)
    return reply


async def _awaited(awaitable):
    return await awaitable


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, format, *args) -> None:  # noqa: A002 - the base class's name
        pass

    def _answer(self, status: int, body: dict) -> None:
        try:
            data = json.dumps(body, default=str).encode()
        except (TypeError, ValueError) as err:
            status, data = 200, json.dumps({"ok": False, "error": {"type": "TypeError", "message":
                                                                    f"the result is not JSON: {err}"}}).encode()
        self.send_response(status)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self) -> None:  # noqa: N802 - http.server's name
        fn = STATE["fn"]
        if self.path == "/health":
            return self._answer(200, {"fn": fn and fn["name"], "version": fn and fn["version"], "pid": os.getpid()})
        self._answer(404, {"error": "not found"})

    def do_POST(self) -> None:  # noqa: N802
        body = json.loads(self.rfile.read(int(self.headers.get("content-length") or 0)) or b"{}")
        if self.path == "/specialize":
            return self._answer(*specialize(body))
        if self.path == "/invoke":
            return self._answer(*invoke(body))
        self._answer(404, {"error": "not found"})


if __name__ == "__main__":
    ThreadingHTTPServer.daemon_threads = True
    ThreadingHTTPServer(("0.0.0.0", PORT), Handler).serve_forever()
