"""`minicloud-lsp` / `python -m lsp_server`: stdio by default, or `--tcp HOST:PORT`."""

from __future__ import annotations

import argparse
import logging
import sys


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="minicloud-lsp", description="The minicloud language server.")
    parser.add_argument("--stdio", action="store_true", help="talk over stdin/stdout (the default)")
    parser.add_argument("--tcp", metavar="HOST:PORT", help="listen on a TCP socket instead")
    parser.add_argument("--log-file", help="write the server's own log there (stderr by default)")
    parser.add_argument("--log-level", default="WARNING")
    args = parser.parse_args(argv)
    logging.basicConfig(filename=args.log_file, level=args.log_level.upper(),
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    # The index refreshes in worker threads (Docker, SQL); a short GIL switch interval lets the event
    # loop (completions) take the GIL back quickly instead of waiting the default 5 ms each time.
    sys.setswitchinterval(0.0005)
    from .server import server

    if args.tcp:
        host, _, port = args.tcp.rpartition(":")
        if not port.isdigit():
            parser.error("--tcp expects HOST:PORT, e.g. 127.0.0.1:2087")
        server.start_tcp(host or "127.0.0.1", int(port))
    else:
        server.start_io()
    return 0


if __name__ == "__main__":
    sys.exit(main())
