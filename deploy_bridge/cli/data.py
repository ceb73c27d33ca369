"""`minicloud data ENV …` and `minicloud files ENV …`: the env's documents and files, through its data API
with the server credential (as a function would)."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from ..errors import BadInput
from .parsing import add_verb


def _client(args: argparse.Namespace):
    from ..cloud import Cloud
    from ..data import DataClient

    return DataClient(Cloud(args.workspace), args.env)


def _json_arg(text: str, what: str):
    try:
        return json.loads(text)
    except ValueError as err:
        raise BadInput(f"{what}: not JSON ({err}); e.g. '{{\"status\": \"paid\", \"total\": {{\"$gt\": 10}}}}'") \
            from None


def _sort(text: str | None) -> list | None:
    """"created:-1,name" -> [["created", -1], ["name", 1]]."""
    if not text:
        return None
    out = []
    for part in text.split(","):
        field, _, order = part.strip().partition(":")
        if order not in ("", "1", "-1", "asc", "desc"):
            raise BadInput(f"--sort {text}: FIELD[:1|-1|asc|desc], comma separated")
        out.append([field, -1 if order in ("-1", "desc") else 1])
    return out


def cmd_collections(args: argparse.Namespace) -> int:
    from . import _emit

    found = _client(args).collections()
    lines = [f"{c['name']:40} {c['count']:>10}" for c in found] or ["no collection yet"]
    _emit(args, {"env": args.env, "collections": found}, "\n".join(lines))
    return 0


def cmd_find(args: argparse.Namespace) -> int:
    from . import _emit

    filter_ = _json_arg(args.filter, "FILTER") if args.filter else {}
    if not isinstance(filter_, dict):
        raise BadInput("FILTER: a JSON object, e.g. '{\"status\": \"paid\"}'")
    docs = _client(args).find(args.collection, filter_, _sort(args.sort), args.skip, args.limit)
    _emit(args, {"env": args.env, "collection": args.collection, "data": docs},
          "\n".join(json.dumps(d, ensure_ascii=False) for d in docs) or "no document matches")
    return 0


def cmd_import(args: argparse.Namespace) -> int:
    from . import _emit, _progress

    path = Path(args.file)
    try:
        with path.open(encoding="utf-8") as lines:
            added = _client(args).import_lines(args.collection, lines, str(path), _progress(args))
    except OSError as err:
        raise BadInput(f"{path}: {err.strerror}") from None
    _emit(args, {"env": args.env, "collection": args.collection, "added": added},
          f"{added} documents added to {args.collection}")
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    count = 0
    for doc in _client(args).export(args.collection):
        sys.stdout.write(json.dumps(doc, ensure_ascii=False) + "\n")
        count += 1
    print(f"{count} documents of {args.collection}", file=sys.stderr)
    return 0


def cmd_files_ls(args: argparse.Namespace) -> int:
    from . import _emit

    found = _client(args).files(args.prefix or "")
    lines = [f"{f['fileID']:60} {f['size']:>10} {f.get('contentType', '')}" for f in found] or ["no file"]
    _emit(args, {"env": args.env, "files": found}, "\n".join(lines))
    return 0


def cmd_files_put(args: argparse.Namespace) -> int:
    from . import _emit

    local = Path(args.local)
    try:
        data = local.read_bytes()
    except OSError as err:
        raise BadInput(f"{local}: {err.strerror}") from None
    stored = _client(args).put(args.cloud_path or local.name, data)
    _emit(args, stored, f"{stored['fileID']} ({stored['size']} bytes, {stored['contentType']})")
    return 0


def cmd_files_get(args: argparse.Namespace) -> int:
    data = _client(args).get(args.cloud_path)
    if args.out and args.out != "-":
        Path(args.out).write_bytes(data)
        print(f"wrote {args.out} ({len(data)} bytes)", file=sys.stderr)
    else:
        sys.stdout.buffer.write(data)
    return 0


def cmd_files_rm(args: argparse.Namespace) -> int:
    from . import _emit

    client = _client(args)
    client.remove(args.cloud_path)
    _emit(args, {"env": args.env, "removed": client.file_id(args.cloud_path)}, f"removed {args.cloud_path}")
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    data = add_verb(sub, "data", "the env's documents (its data API): collections, find, import, export")
    data.add_argument("env", metavar="ENV")
    verbs = data.add_subparsers(dest="data_verb", required=True, metavar="VERB")
    add_verb(verbs, "collections", "each collection with its number of documents").set_defaults(func=cmd_collections)
    find = add_verb(verbs, "find", "documents matching a MongoDB filter (JSON)")
    find.add_argument("collection", metavar="COLLECTION")
    find.add_argument("filter", metavar="FILTER", nargs="?", help="e.g. '{\"total\": {\"$gt\": 10}}' (default {})")
    find.add_argument("--sort", metavar="FIELD[:-1],…")
    find.add_argument("--skip", type=int, default=0)
    find.add_argument("--limit", type=int, default=100, help="at most 1000 (default 100)")
    find.set_defaults(func=cmd_find)
    imp = add_verb(verbs, "import", "add the documents of a JSON Lines file (one object per line)")
    imp.add_argument("collection", metavar="COLLECTION")
    imp.add_argument("file", metavar="FILE.jsonl")
    imp.set_defaults(func=cmd_import)
    exp = add_verb(verbs, "export", "every document as JSON Lines on stdout")
    exp.add_argument("collection", metavar="COLLECTION")
    exp.set_defaults(func=cmd_export)

    files = add_verb(sub, "files", "the env's stored files (its data API): ls, put, get, rm")
    files.add_argument("env", metavar="ENV")
    fverbs = files.add_subparsers(dest="files_verb", required=True, metavar="VERB")
    ls = add_verb(fverbs, "ls", "the stored files, with size and type")
    ls.add_argument("prefix", nargs="?", metavar="PREFIX")
    ls.set_defaults(func=cmd_files_ls)
    put = add_verb(fverbs, "put", "upload a file (scanned, like every upload)")
    put.add_argument("local", metavar="LOCAL_FILE")
    put.add_argument("cloud_path", nargs="?", metavar="CLOUD_PATH", help="default: the file's name")
    put.set_defaults(func=cmd_files_put)
    get = add_verb(fverbs, "get", "download a file (to stdout, or --out FILE)")
    get.add_argument("cloud_path", metavar="CLOUD_PATH")
    get.add_argument("--out", "-o", metavar="FILE")
    get.set_defaults(func=cmd_files_get)
    rm = add_verb(fverbs, "rm", "remove a file")
    rm.add_argument("cloud_path", metavar="CLOUD_PATH")
    rm.set_defaults(func=cmd_files_rm)
