"""What every verb's parser shares: the common options, accepted before or after the verb."""

from __future__ import annotations

import argparse
from pathlib import Path


def common_options(top_level: bool = False) -> argparse.ArgumentParser:
    """A parent parser with --workspace, --json, --quiet.

    Below the top level the defaults are SUPPRESSed, so that `minicloud --json status test` keeps the
    top-level value (a sub-parser's default would otherwise overwrite it).
    """
    parent = argparse.ArgumentParser(add_help=False)
    default = {} if top_level else {"default": argparse.SUPPRESS}
    parent.add_argument("--workspace", "-w", type=Path,
                        help="the app folder holding minicloud.toml (default: found upward from here)", **default)
    parent.add_argument("--json", action="store_true", help="print the result as JSON", **default)
    parent.add_argument("--quiet", "-q", action="store_true", help="no progress lines", **default)
    return parent


def add_verb(sub: argparse._SubParsersAction, name: str, help: str, **kwargs) -> argparse.ArgumentParser:
    """A verb's parser, with the common options."""
    return sub.add_parser(name, help=help, description=help, parents=[common_options()], **kwargs)


def verb(sub: argparse._SubParsersAction, name: str, func, help: str, env: bool = True) -> argparse.ArgumentParser:
    """A verb that runs `func`, taking the environment's name first unless `env` is False."""
    parser = add_verb(sub, name, help)
    if env:
        parser.add_argument("env", metavar="ENV", help="environment name from minicloud.toml (e.g. test, prod)")
    parser.set_defaults(func=func)
    return parser
