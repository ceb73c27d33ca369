"""MongoDB-syntax documents on PostgreSQL JSONB: the store behind the data API's /db routes.

Runs inside the data container (Debian's python3-psycopg, psycopg 3.1): standard library and psycopg only.

Layout: one table per collection (`c_NAME`: `_id` text primary key, `doc` jsonb, `_owner`, `created`,
`updated`), named in the `docstore_collections` catalogue. `doc` holds the whole document, `_id` and
`_owner` included, so every filter, sort and projection sees them as ordinary fields; the columns mirror
them for the primary key and the rules' owner checks.

Safety: every SQL text here is built from fixed fragments and `sql.Identifier` table names; user keys go
in as `text[]` path parameters, user values as `jsonb` parameters and operator names as text
parameters. MongoDB's semantics live in SQL helper functions (`install()`):

- `ds_cands(doc, path)`: the values a dotted path reaches, walking arrays on the way as MongoDB does
  (an array step visits each element that is a document; a numeric step also indexes an array); a
  path that reaches nothing is "missing" (one SQL NULL).
- `ds_test(doc, path, op, value)`: one operator over those values, each array also tried element by
  element; comparisons only within a type bracket (`$gt: 5` never matches a string); a missing field
  equals null.
- `ds_key(value)`: a bytea whose byte order is BSON's order (null < numbers < strings < objects <
  arrays < booleans), so ORDER BY sorts by `ds_sortkey` (an array by its smallest or largest element)
  with plain bytea comparison; `ds_cmp` compares scalars directly and the rest by key.
- `ds_set / ds_unset / ds_inc / ds_push / ds_addtoset / ds_pull_source`: the update operators.

Equality with a plain value (not null, not an object or array) on a top-level field becomes
`doc @> {"f": v} OR doc @> {"f": [v]}`: exactly MongoDB's meaning (the field equals v, or is an array
with an element equal to v), answered by the GIN index (jsonb_path_ops). `_id` / `_owner` equality
with a string uses the columns. Everything else goes through ds_test (about 4 µs a row).

Choices (where MongoDB is not copied):
- jsonb keeps an object's keys in its own order (shorter keys first), not the insertion order: returned
  documents come back in that order, and comparing or sorting two objects uses it.
- An update without operators replaces the document (keeping `_id` and `_owner`; any `_id`/`_owner` in
  it is ignored) and needs `multi=False`, as MongoDB's replace_one. update() returns the number of
  documents matched (each is rewritten).
- `$push`/`$addToSet` take `$each` but no other modifier; `$pull` takes a value, a condition
  (`{"$gte": 5}`) or a document filter over the elements.
- A find without sort returns insertion order (`created`, then `_id`); `limit=0` means no limit.
- Stored field names may not start with `$` nor contain `.` (queries could not reach them); a client's
  `_id` must be a non-empty string.
- A path that reaches nothing (through a number, or an array without documents) is missing, so
  `{"a.b": null}` matches `{"a": 5}`; a numeric step into an array only indexes it (it does not also
  look for a field "0" in the array's documents).
"""

from __future__ import annotations

import hashlib
import math
import re
import threading
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, Protocol

import psycopg
from psycopg import sql
from psycopg.types.json import Jsonb

NAME_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,62}")
CATALOGUE = "docstore_collections"
_MISSING = object()


class QueryError(ValueError):
    """A filter, update, projection or sort the store cannot run; `code` and `path` go to the client."""

    def __init__(self, code: str, path: str, reason: str) -> None:
        self.code = code  # "unsupported_operator" | "bad_query"
        self.path = path  # e.g. "filter.age.$where"
        self.reason = reason
        super().__init__(f"{reason} at {path}")


class Denied(PermissionError):
    """A write the collection's rule refuses (the data API answers 403 `denied`)."""

    code = "denied"

    def __init__(self, path: str) -> None:
        self.path = path
        super().__init__(f"the collection's rule does not allow this document at {path}")


class RuleLike(Protocol):
    """What DocStore needs of a rule (data_rules.Rule): a SQL predicate and a check of new documents."""

    def sql(self, auth: dict | None) -> tuple[sql.Composable, list]: ...

    def allows(self, doc: dict, auth: dict | None) -> bool: ...


def _unsupported(path: str, op: str) -> QueryError:
    return QueryError("unsupported_operator", path, f"unsupported operator {op}")


def _bad(path: str, reason: str) -> QueryError:
    return QueryError("bad_query", path, reason)


# ------------------------------------------------------------------------------------- SQL pieces


@dataclass
class Frag:
    """A piece of SQL and its positional parameters, always kept together so their order agrees."""

    text: sql.Composable
    params: list = field(default_factory=list)


def _frag(template: str, *parts: Frag | sql.Composable, params: Iterable = ()) -> Frag:
    """`template` with `{}` filled by `parts` in order; `params` are those of the template's own %s,
    which must all come after the parts' placeholders (or be given for a template without parts)."""
    texts, collected = [], []
    for part in parts:
        if isinstance(part, Frag):
            texts.append(part.text)
            collected.extend(part.params)
        else:
            texts.append(part)
    return Frag(sql.SQL(template).format(*texts), collected + list(params))


def _join(frags: list[Frag], sep: str, empty: str) -> Frag:
    if not frags:
        return Frag(sql.SQL(empty))
    if len(frags) == 1:
        return frags[0]
    params: list = []
    for f in frags:
        params.extend(f.params)
    return Frag(sql.SQL("(") + sql.SQL(sep).join(f.text for f in frags) + sql.SQL(")"), params)


def _and(frags: list[Frag]) -> Frag:
    return _join(frags, " AND ", "TRUE")


def _or(frags: list[Frag]) -> Frag:
    return _join(frags, " OR ", "FALSE")


def _not(frag: Frag) -> Frag:
    return Frag(sql.SQL("NOT {}").format(_paren(frag.text)), frag.params)


def _paren(text: sql.Composable) -> sql.Composable:
    return sql.SQL("(") + text + sql.SQL(")")


# ----------------------------------------------------------------------------------- validation


def _json_value(value: Any, path: str) -> Any:
    """`value` as plain JSON (lists for tuples); anything jsonb cannot hold is a bad query."""
    if value is None or isinstance(value, bool | int):
        return value
    if isinstance(value, float):
        if not math.isfinite(value):
            raise _bad(path, "a number must be finite")
        return value
    if isinstance(value, str):
        if "\x00" in value:
            raise _bad(path, "a string may not contain the NUL character")
        return value
    if isinstance(value, list | tuple):
        return [_json_value(v, f"{path}.{i}") for i, v in enumerate(value)]
    if isinstance(value, dict):
        out = {}
        for k, v in value.items():
            if not isinstance(k, str) or "\x00" in k:
                raise _bad(path, "a field name must be a string without NUL")
            out[k] = _json_value(v, f"{path}.{k}")
        return out
    raise _bad(path, f"a {type(value).__name__} is not a JSON value")


def _stored_value(value: Any, path: str) -> Any:
    """A value about to be stored: JSON, and no field name that queries could not reach."""
    value = _json_value(value, path)
    _check_names(value, path)
    return value


def _check_names(value: Any, path: str) -> None:
    if isinstance(value, dict):
        for k, v in value.items():
            if k.startswith("$") or "." in k or not k:
                raise _bad(f"{path}.{k}", "a stored field name may not be empty, start with $ or contain a dot")
            _check_names(v, f"{path}.{k}")
    elif isinstance(value, list):
        for i, v in enumerate(value):
            _check_names(v, f"{path}.{i}")


def _split_path(key: str, at: str) -> list[str]:
    if not isinstance(key, str) or not key:
        raise _bad(at, "a field path must be a non-empty string")
    parts = key.split(".")
    for part in parts:
        if not part:
            raise _bad(at, f"the field path {key!r} has an empty part")
        if part.startswith("$"):
            raise _unsupported(at, part)
        if "\x00" in part:
            raise _bad(at, "a field path may not contain the NUL character")
    return parts


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _is_ops(value: Any) -> bool:
    return isinstance(value, dict) and bool(value) and any(isinstance(k, str) and k.startswith("$") for k in value)


# ------------------------------------------------------------------------------------- filters

_COMPARE = {"$gt": "gt", "$gte": "gte", "$lt": "lt", "$lte": "lte"}
_LOGICAL = ("$and", "$or", "$nor")


class _Filter:
    """Compiles a MongoDB filter into a parameterised predicate over the document expression `doc`.

    `table` is true for the collection's own rows, where the `_id`/`_owner` columns and the GIN index
    on `doc` exist (not for the elements of an array that `$pull` tests).
    """

    def __init__(self, doc: sql.Composable, table: bool) -> None:
        self.doc = doc
        self.table = table
        self.regex_paths: list[str] = []

    def filter(self, spec: Any, at: str) -> Frag:
        if not isinstance(spec, dict):
            raise _bad(at, "a filter must be an object")
        parts = []
        for key, cond in spec.items():
            kat = f"{at}.{key}"
            if isinstance(key, str) and key.startswith("$"):
                if key not in _LOGICAL:
                    raise _unsupported(kat, key)
                parts.append(self._logical(key, cond, kat))
            else:
                parts.append(self.field(_split_path(key, kat), cond, kat))
        return _and(parts)

    def _logical(self, op: str, conds: Any, at: str) -> Frag:
        if not isinstance(conds, list | tuple) or not conds:
            raise _bad(at, f"{op} needs a non-empty array of filters")
        frags = [self.filter(c, f"{at}.{i}") for i, c in enumerate(conds)]
        if op == "$and":
            return _and(frags)
        return _or(frags) if op == "$or" else _not(_or(frags))

    def field(self, path: list[str], cond: Any, at: str) -> Frag:
        if _is_ops(cond):
            if not all(isinstance(k, str) and k.startswith("$") for k in cond):
                raise _bad(at, "a condition may not mix operators and field names")
            return self._ops(path, cond, at)
        return self._eq(path, _json_value(cond, at), at)

    def _test(self, path: list[str], op: str, value: Any) -> Frag:
        return _frag("ds_test({}, %s::text[], %s, %s::jsonb)", self.doc, params=[path, op, Jsonb(value)])

    def _eq(self, path: list[str], value: Any, at: str) -> Frag:
        exact = self._test(path, "eq", value)
        if not self.table or len(path) != 1:
            return exact
        key = path[0]
        if key in ("_id", "_owner"):
            # the columns mirror doc._id / doc._owner (strings, never arrays): equality is exact there
            if isinstance(value, str):
                return _frag("{} = %s", sql.Identifier(key), params=[value])
            return exact
        if value is None or isinstance(value, dict | list):
            return exact
        # For a plain value this is exactly MongoDB's equality on a top-level field: the field equals v
        # ({"key": v}), or it is an array with an element equal to v ({"key": [v]}; containment looks
        # one level into the array, as MongoDB does). The GIN index answers both.
        return _frag("({} @> %s OR {} @> %s)", self.doc, self.doc,
                     params=[Jsonb({key: value}), Jsonb({key: [value]})])

    def _ops(self, path: list[str], ops: dict, at: str) -> Frag:
        if "$options" in ops and "$regex" not in ops:
            raise _bad(f"{at}.$options", "$options needs $regex beside it")
        parts = []
        for op, arg in ops.items():
            oat = f"{at}.{op}"
            if op == "$eq":
                parts.append(self._eq(path, _json_value(arg, oat), oat))
            elif op == "$ne":
                parts.append(_not(self._eq(path, _json_value(arg, oat), oat)))
            elif op in _COMPARE:
                parts.append(self._test(path, _COMPARE[op], _json_value(arg, oat)))
            elif op in ("$in", "$nin"):
                if not isinstance(arg, list | tuple):
                    raise _bad(oat, f"{op} needs an array")
                values = _json_value(arg, oat)
                frag = self._in(path, values)
                parts.append(frag if op == "$in" else _not(frag))
            elif op == "$exists":
                frag = self._test(path, "exists", None)
                parts.append(frag if arg else _not(frag))
            elif op == "$regex":
                parts.append(self._regex(path, arg, ops.get("$options", ""), oat, f"{at}.$options"))
            elif op == "$options":
                continue
            elif op == "$not":
                if not _is_ops(arg) or not all(isinstance(k, str) and k.startswith("$") for k in arg):
                    raise _bad(oat, "$not needs an object of operators")
                parts.append(_not(self._ops(path, arg, oat)))
            else:
                raise _unsupported(oat, op)
        return _and(parts)

    def _in(self, path: list[str], values: list) -> Frag:
        if self.table and path == ["_id"] and values and all(isinstance(v, str) for v in values):
            return Frag(sql.SQL('"_id" = ANY(%s::text[])'), [values])
        return self._test(path, "in", values)

    def _regex(self, path: list[str], pattern: Any, options: Any, at: str, options_at: str) -> Frag:
        if not isinstance(pattern, str) or "\x00" in pattern:
            raise _bad(at, "$regex needs a pattern string")
        if not isinstance(options, str) or set(options) - {"i"}:
            raise _bad(options_at, "$options supports only i (case-insensitive)")
        self.regex_paths.append(at)
        return self._test(path, "iregex" if "i" in options else "regex", pattern)


# ------------------------------------------------------------------------------------- updates

ANALYZE_BATCH = 100  # an add this large checks whether the table's statistics are stale
_UPDATE_OPS = ("$set", "$unset", "$inc", "$push", "$pull", "$addToSet")


def _each(value: Any, op: str, at: str) -> list:
    """The values $push/$addToSet add: one, or the array of `$each`."""
    if _is_ops(value):
        for key in value:
            if key != "$each":
                raise _unsupported(f"{at}.{key}", key)
        if not isinstance(value["$each"], list | tuple):
            raise _bad(f"{at}.$each", "$each needs an array")
        return [_stored_value(v, f"{at}.$each.{i}") for i, v in enumerate(value["$each"])]
    return [_stored_value(value, at)]


def _conflict(a: list[str], b: list[str]) -> bool:
    n = min(len(a), len(b))
    return a[:n] == b[:n]


def _update_steps(update: Any, at: str) -> list[Callable[[sql.Composable], Frag]]:
    """One function per field of an operator update: given the document so far, the next document."""
    steps: list[Callable[[sql.Composable], Frag]] = []
    seen: list[tuple[list[str], str]] = []
    for op, fields in update.items():
        oat = f"{at}.{op}"
        if op not in _UPDATE_OPS:
            raise _unsupported(oat, op)
        if not isinstance(fields, dict) or not fields:
            raise _bad(oat, f"{op} needs an object of fields")
        for key, value in fields.items():
            fat = f"{oat}.{key}"
            path = _split_path(key, fat)
            if path[0] in ("_id", "_owner"):
                raise _bad(fat, f"{path[0]} cannot be changed")
            for other, other_key in seen:
                if _conflict(path, other):
                    raise _bad(fat, f"{key} conflicts with {other_key} in the same update")
            seen.append((path, key))
            steps.append(_update_step(op, path, value, fat))
    return steps


def _update_step(op: str, path: list[str], value: Any, at: str) -> Callable[[sql.Composable], Frag]:
    if op == "$set":
        v = _stored_value(value, at)
        return lambda d: _frag("ds_set({}, %s::text[], %s::jsonb, %s)", d, params=[path, Jsonb(v), at])
    if op == "$unset":
        return lambda d: _frag("ds_unset({}, %s::text[])", d, params=[path])
    if op == "$inc":
        if not _is_number(value) or not math.isfinite(value):
            raise _bad(at, "$inc needs a number")
        return lambda d: _frag("ds_inc({}, %s::text[], %s::jsonb, %s)", d, params=[path, Jsonb(value), at])
    if op in ("$push", "$addToSet"):
        values = _each(value, op, at)
        fn = "ds_push" if op == "$push" else "ds_addtoset"
        return lambda d: _frag(fn + "({}, %s::text[], %s::jsonb, %s)", d, params=[path, Jsonb(values), at])
    # $pull: keep the elements the condition does not match
    element = sql.SQL("q.e")
    matcher = _Filter(element, table=False)
    if _is_ops(value):
        if not all(isinstance(k, str) and k.startswith("$") for k in value):
            raise _bad(at, "a condition may not mix operators and field names")
        cond = matcher.field([], value, at)
    elif isinstance(value, dict):
        cond = matcher.filter(value, at)
    else:
        cond = _frag("q.e = %s::jsonb", params=[Jsonb(_json_value(value, at))])

    def pull(d: sql.Composable) -> Frag:
        kept = _frag("(SELECT coalesce(jsonb_agg(q.e ORDER BY q.o), '[]'::jsonb) "
                     "FROM jsonb_array_elements(s.arr) WITH ORDINALITY AS q(e, o) WHERE NOT coalesce({}, false))",
                     cond)
        # ds_set(d, path, kept, at): the parameters in text order
        new = Frag(sql.SQL("ds_set({}, %s::text[], {}, %s)").format(d, kept.text), [path, *kept.params, at])
        return _frag("(SELECT CASE WHEN s.arr IS NULL THEN {} ELSE {} END "
                     "FROM (SELECT ds_pull_source({}, %s::text[], %s) AS arr) AS s)", d, new, d,
                     params=[path, at])

    return pull


# ----------------------------------------------------------------------------------- projection


def _projection_tree(spec: Any, at: str) -> tuple[bool | None, dict, bool]:
    """(include?, tree of paths, keep _id?) of a projection; include is None for `{}` or `{_id: 0}`."""
    if not isinstance(spec, dict):
        raise _bad(at, "a projection must be an object")
    keep_id = True
    modes: set[bool] = set()
    tree: dict = {}
    for key, flag in spec.items():
        kat = f"{at}.{key}"
        if isinstance(flag, dict):
            op = next(iter(flag), "{}")
            raise _unsupported(f"{kat}.{op}", str(op))
        if not (isinstance(flag, bool) or flag in (0, 1)):
            raise _bad(kat, "a projection value must be 1, 0, true or false")
        if key == "_id":
            keep_id = bool(flag)
            continue
        modes.add(bool(flag))
        node = tree
        path = _split_path(key, kat)
        for i, part in enumerate(path):
            last = i == len(path) - 1
            existing = node.get(part)
            if existing is True or (last and existing is not None):
                raise _bad(kat, f"the projection of {key} collides with another path")
            if last:
                node[part] = True
            else:
                node = node.setdefault(part, {})
    if len(modes) > 1:
        raise _bad(at, "a projection cannot mix inclusion and exclusion (except for _id)")
    return (modes.pop() if modes else None), tree, keep_id


def _include(value: Any, tree: dict) -> Any:
    if isinstance(value, dict):
        out = {}
        for key, sub in tree.items():
            if key in value:
                if sub is True:
                    out[key] = value[key]
                else:
                    got = _include(value[key], sub)
                    if got is not _MISSING:
                        out[key] = got
        return out
    if isinstance(value, list):
        return [got for got in (_include(v, tree) for v in value if isinstance(v, dict | list))
                if got is not _MISSING]
    return _MISSING


def _exclude(value: Any, tree: dict) -> Any:
    if isinstance(value, dict):
        out = {}
        for key, v in value.items():
            sub = tree.get(key)
            if sub is True:
                continue
            out[key] = v if sub is None else _exclude(v, sub)
        return out
    if isinstance(value, list):
        return [_exclude(v, tree) if isinstance(v, dict | list) else v for v in value]
    return value


def project(doc: dict, spec: Any, at: str = "projection") -> dict:
    """`doc` through a MongoDB projection (inclusion or exclusion; `_id` kept unless `_id: 0`)."""
    include, tree, keep_id = _projection_tree(spec, at)
    if include is True:
        out = _include(doc, tree)
        if keep_id and "_id" in doc:
            out = {"_id": doc["_id"], **out}
    else:
        out = _exclude(doc, tree) if include is False else dict(doc)
        if not keep_id:
            out.pop("_id", None)
    return out


# ---------------------------------------------------------------------------------- the store


def _table_for(coll: str, at: str = "collection") -> str:
    """The table of a collection: c_NAME, or for names too long for PostgreSQL's 63-byte identifiers
    a shortened name with a hash (the catalogue keeps the collection's own name)."""
    if not isinstance(coll, str) or not NAME_RE.fullmatch(coll):
        raise _bad(at, f"{coll!r} is not a collection name (letters, digits and _, not starting with a "
                       "digit, at most 63)")
    if len(coll) <= 61:
        return "c_" + coll
    return f"c_{coll[:52]}_{hashlib.sha256(coll.encode()).hexdigest()[:8]}"


class DocStore:
    """The collections of one database, through one psycopg 3 connection (autocommit=True).

    Methods are serialised by a lock: `add` runs in a transaction, which must not interleave with
    another thread's statements on the same connection.
    """

    def __init__(self, conn: psycopg.Connection) -> None:
        self._conn = conn
        self._lock = threading.RLock()
        self._tables: set[str] = set()
        self._installed = False

    # ---- set-up

    def install(self) -> None:
        """Create or replace the SQL helpers and the catalogue; safe to run from every process."""
        with self._lock:
            self._conn.execute(_INSTALL_SQL)
            self._installed = True

    def _ready(self) -> None:
        if not self._installed:
            self.install()

    def _exists(self, table: str) -> bool:
        if table in self._tables:
            return True
        row = self._conn.execute(
            "SELECT 1 FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
            "WHERE c.relname = %s AND n.nspname = current_schema() AND c.relkind = 'r'", [table]).fetchone()
        if row:
            self._tables.add(table)
        return row is not None

    def _create(self, coll: str, table: str) -> None:
        ident = sql.Identifier(table)
        with self._conn.transaction():
            self._conn.execute("SELECT pg_advisory_xact_lock(hashtext('docstore:' || %s))", [table])
            self._tables.discard(table)
            if not self._exists(table):
                self._conn.execute(sql.SQL(
                    "CREATE TABLE {} (_id text PRIMARY KEY, doc jsonb NOT NULL, _owner text, "
                    "created timestamptz NOT NULL DEFAULT clock_timestamp(), "
                    "updated timestamptz NOT NULL DEFAULT clock_timestamp())").format(ident))
                # fastupdate off: a GIN's pending list (bulk adds land there until a vacuum) is scanned
                # whole by every query and priced so by the planner, which then scans the table instead
                self._conn.execute(sql.SQL("CREATE INDEX ON {} USING gin (doc jsonb_path_ops) "
                                           "WITH (fastupdate = off)").format(ident))
                self._conn.execute(sql.SQL("CREATE INDEX ON {} (_owner)").format(ident))
                self._conn.execute(sql.SQL("CREATE INDEX ON {} (created, _id)").format(ident))
            self._conn.execute(sql.SQL("INSERT INTO {} (name, tbl) VALUES (%s, %s) ON CONFLICT DO NOTHING")
                               .format(sql.Identifier(CATALOGUE)), [coll, table])
        self._tables.add(table)

    def _run(self, query: Frag, filt: _Filter | None = None) -> psycopg.Cursor:
        """Execute, turning the helpers' refusals and bad patterns into QueryError."""
        try:
            return self._conn.execute(query.text, query.params)
        except psycopg.errors.InvalidRegularExpression as err:
            where = filt.regex_paths[0] if filt and filt.regex_paths else "filter"
            raise _bad(where, f"invalid regular expression ({err.diag.message_primary})") from None
        except psycopg.Error as err:
            if err.sqlstate == "DS400":
                raise _bad(err.diag.message_detail or "update", err.diag.message_primary or "refused") from None
            raise

    def _where(self, filter: Any, rule: RuleLike | None, auth: dict | None) -> tuple[Frag, _Filter]:
        compiler = _Filter(sql.Identifier("doc"), table=True)
        parts = [compiler.filter(filter if filter is not None else {}, "filter")]
        if rule is not None:
            text, params = rule.sql(auth)
            parts.append(Frag(_paren(text), list(params)))
        return _and(parts), compiler

    def _readable(self, coll: str) -> str | None:
        table = _table_for(coll)
        self._ready()
        return table if self._exists(table) else None

    # ---- reading

    def collections(self) -> list[dict]:
        """Every collection with its number of documents, by name."""
        with self._lock:
            self._ready()
            out = []
            rows = self._conn.execute(sql.SQL("SELECT name, tbl FROM {} ORDER BY name")
                                      .format(sql.Identifier(CATALOGUE))).fetchall()
            for name, table in rows:
                self._tables.discard(table)
                if self._exists(table):
                    count = self._conn.execute(sql.SQL("SELECT count(*) FROM {}").format(sql.Identifier(table)))
                    out.append({"name": name, "count": count.fetchone()[0]})
            return out

    def find(self, coll: str, filter: dict, projection: dict | None = None, sort: list | None = None,
             skip: int = 0, limit: int = 100, rule: RuleLike | None = None, auth: dict | None = None) -> list[dict]:
        """The documents matching `filter` (and the rule), sorted, paged and projected."""
        for name, value in (("skip", skip), ("limit", limit)):
            if not isinstance(value, int) or isinstance(value, bool) or value < 0:
                raise _bad(name, f"{name} must be a whole number >= 0")
        if projection:
            _projection_tree(projection, "projection")  # refuse a bad projection before touching the table
        order = _order(sort)
        with self._lock:
            where, compiler = self._where(filter, rule, auth)
            table = self._readable(coll)
            if table is None:
                return []
            query = _frag("SELECT doc FROM {} WHERE {} ORDER BY {} OFFSET %s LIMIT %s",
                          sql.Identifier(table), where, order, params=[skip, limit or None])
            try:
                rows = self._run(query, compiler).fetchall()
            except psycopg.errors.UndefinedTable:
                self._tables.discard(table)
                return []
        docs = [row[0] for row in rows]
        return [project(d, projection) for d in docs] if projection else docs

    def count(self, coll: str, filter: dict, rule: RuleLike | None = None, auth: dict | None = None) -> int:
        """How many documents match `filter` (and the rule)."""
        with self._lock:
            where, compiler = self._where(filter, rule, auth)
            table = self._readable(coll)
            if table is None:
                return 0
            try:
                return self._run(_frag("SELECT count(*) FROM {} WHERE {}", sql.Identifier(table), where),
                                 compiler).fetchone()[0]
            except psycopg.errors.UndefinedTable:
                self._tables.discard(table)
                return 0

    def sample_fields(self, coll: str, limit: int = 200) -> dict[str, str]:
        """Dotted path -> JSON type ("string", "number", "boolean", "object", "array", "null", or "mixed")
        over the newest `limit` documents, for the editor's completion of field names."""
        with self._lock:
            table = self._readable(coll)
            if table is None:
                return {}
            rows = self._conn.execute(sql.SQL("SELECT doc FROM {} ORDER BY created DESC, _id DESC LIMIT %s")
                                      .format(sql.Identifier(table)), [max(0, int(limit))]).fetchall()
        types: dict[str, str] = {}
        for (doc,) in rows:
            _sample(doc, "", types)
        return dict(sorted(types.items()))

    # ---- writing

    def add(self, coll: str, docs: list[dict], owner: str | None, rule: RuleLike | None = None,
            auth: dict | None = None) -> list[str]:
        """Insert `docs` (all or none) owned by `owner`; returns their `_id`s (the client's, else new)."""
        table = _table_for(coll)
        if not isinstance(docs, list | tuple):
            raise _bad("data", "data must be a document or an array of documents")
        rows, ids = [], []
        for i, doc in enumerate(docs):
            at = f"data.{i}"
            if not isinstance(doc, dict):
                raise _bad(at, "a document must be an object")
            given = doc.get("_id", _MISSING)
            if given is not _MISSING and (not isinstance(given, str) or not given or "\x00" in given):
                raise _bad(f"{at}._id", "_id must be a non-empty string")
            doc_id = given if given is not _MISSING else uuid.uuid4().hex
            if doc_id in ids:
                raise _bad(f"{at}._id", f"_id {doc_id!r} appears twice")
            body = _stored_value({k: v for k, v in doc.items() if k not in ("_id", "_owner")}, at)
            full = {"_id": doc_id, "_owner": owner, **body}
            if rule is not None and not rule.allows(full, auth):
                raise Denied(at)
            ids.append(doc_id)
            rows.append((doc_id, Jsonb(full), owner))
        if not rows:
            return []
        with self._lock:
            self._ready()
            if not self._exists(table):
                self._create(coll, table)
            query = sql.SQL("INSERT INTO {} (_id, doc, _owner, created, updated) "
                            "VALUES (%s, %s, %s, clock_timestamp(), clock_timestamp())").format(sql.Identifier(table))
            try:
                with self._conn.transaction(), self._conn.cursor() as cur:
                    cur.executemany(query, rows)
            except psycopg.errors.UniqueViolation:
                taken = {r[0] for r in self._conn.execute(
                    sql.SQL("SELECT _id FROM {} WHERE _id = ANY(%s::text[])").format(sql.Identifier(table)),
                    [ids]).fetchall()}
                first = next((i for i, d in enumerate(ids) if d in taken), 0)
                raise _bad(f"data.{first}._id", f"a document with _id {ids[first]!r} already exists") from None
            if len(rows) >= ANALYZE_BATCH:
                self._analyze_if_stale(table)
        return ids

    def _analyze_if_stale(self, table: str) -> None:
        """After a large add: refresh the planner's statistics when a tenth of the table is new. Until
        autovacuum gets to it (a minute or more), a collection filled by an import looks empty to the
        planner, which then scans it whole instead of using the GIN index (a find at ~15 ms, not ~1)."""
        row = self._conn.execute("SELECT n_mod_since_analyze, GREATEST(c.reltuples, 0) FROM pg_stat_user_tables s "
                                 "JOIN pg_class c ON c.oid = s.relid WHERE s.relname = %s", [table]).fetchone()
        if row is not None and row[0] >= max(ANALYZE_BATCH, 0.1 * row[1]):
            self._conn.execute(sql.SQL("ANALYZE {}").format(sql.Identifier(table)))

    def update(self, coll: str, filter: dict, update: dict, multi: bool = True, rule: RuleLike | None = None,
               auth: dict | None = None) -> int:
        """Apply `update` to the matching documents (the first one only unless `multi`); the number matched."""
        if not isinstance(update, dict) or not update:
            raise _bad("update", "an update must be a non-empty object")
        operators = [k for k in update if isinstance(k, str) and k.startswith("$")]
        if operators and len(operators) != len(update):
            raise _bad("update", "an update may not mix operators and fields")
        if operators:
            steps = _update_steps(update, "update")
            # one LATERAL step per field, each reading the document the step before made
            chain = [sql.SQL(f"SELECT x{len(steps)}.d FROM (SELECT t.doc AS d) AS x0")]
            params: list = []
            for i, step in enumerate(steps, 1):
                frag = step(sql.SQL(f"x{i - 1}.d"))
                chain.append(sql.SQL(", LATERAL (SELECT {} AS d) AS ").format(frag.text) + sql.SQL(f"x{i}"))
                params.extend(frag.params)
            new_doc = Frag(_paren(sql.Composed(chain)), params)
        else:
            if multi:
                raise _bad("update", "a replacement document (no operators) needs multi=false")
            body = _stored_value({k: v for k, v in update.items() if k not in ("_id", "_owner")}, "update")
            new_doc = Frag(sql.SQL("(%s::jsonb || jsonb_build_object('_id', t._id, '_owner', t._owner))"),
                           [Jsonb(body)])
        with self._lock:
            where, compiler = self._where(filter, rule, auth)
            table = self._readable(coll)
            if table is None:
                return 0
            ident = sql.Identifier(table)
            if not multi:
                where = _frag("t._id = (SELECT _id FROM {} WHERE {} ORDER BY created, _id LIMIT 1)", ident, where)
            query = _frag("UPDATE {} AS t SET doc = {}, updated = clock_timestamp() WHERE {} RETURNING t.doc",
                          ident, new_doc, where)
            try:
                with self._conn.transaction():
                    cursor = self._run(query, compiler)
                    if rule is not None:  # what a member writes must still be theirs to write afterwards
                        for (doc,) in cursor.fetchall():
                            if not rule.allows(doc, auth):
                                raise Denied(f"update of {doc.get('_id')!r} (it would leave the writer's reach)")
                    return cursor.rowcount
            except psycopg.errors.UndefinedTable:
                self._tables.discard(table)
                return 0

    def remove(self, coll: str, filter: dict, multi: bool = True, rule: RuleLike | None = None,
               auth: dict | None = None) -> int:
        """Delete the matching documents (the first one only unless `multi`); the number removed."""
        with self._lock:
            where, compiler = self._where(filter, rule, auth)
            table = self._readable(coll)
            if table is None:
                return 0
            ident = sql.Identifier(table)
            if not multi:
                where = _frag("_id = (SELECT _id FROM {} WHERE {} ORDER BY created, _id LIMIT 1)", ident, where)
            try:
                return self._run(_frag("DELETE FROM {} WHERE {}", ident, where), compiler).rowcount
            except psycopg.errors.UndefinedTable:
                self._tables.discard(table)
                return 0


def _order(sort: Any, at: str = "sort") -> Frag:
    """ORDER BY for a MongoDB sort ([[field, 1|-1], …] or {field: 1|-1}), then insertion order."""
    if sort is None:
        items: list = []
    elif isinstance(sort, dict):
        items = list(sort.items())
    elif isinstance(sort, list | tuple):
        items = list(sort)
    else:
        raise _bad(at, "sort must be an array of [field, 1 or -1] pairs")
    keys = []
    for i, item in enumerate(items):
        iat = f"{at}.{i}"
        if not isinstance(item, list | tuple) or len(item) != 2:
            raise _bad(iat, "a sort key must be a [field, 1 or -1] pair")
        key, direction = item
        if isinstance(direction, bool) or direction not in (1, -1):
            raise _bad(iat, "a sort direction must be 1 or -1")
        path = _split_path(key, iat)
        desc = direction == -1
        if path == ["_id"]:
            keys.append(Frag(sql.SQL('"_id" COLLATE "C" DESC' if desc else '"_id" COLLATE "C"')))
        else:
            keys.append(Frag(sql.SQL("ds_sortkey(doc, %s::text[], %s) " + ("DESC" if desc else "ASC")),
                             [path, desc]))
    keys.append(Frag(sql.SQL('created, "_id"')))
    params: list = []
    for k in keys:
        params.extend(k.params)
    return Frag(sql.SQL(", ").join(k.text for k in keys), params)


def _json_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, str):
        return "string"
    return "array" if isinstance(value, list) else "object"


def _sample(value: Any, prefix: str, types: dict[str, str]) -> None:
    if isinstance(value, dict):
        for key, v in value.items():
            path = f"{prefix}{key}"
            kind = _json_type(v)
            known = types.get(path)
            if known is None or known == "null":
                types[path] = kind
            elif kind != known and kind != "null":
                types[path] = "mixed"
            _sample(v, path + ".", types)
    elif isinstance(value, list):
        for v in value:
            if isinstance(v, dict):
                _sample(v, prefix, types)


# ------------------------------------------------------------------------------ the SQL helpers

_INSTALL_SQL = r"""
SELECT pg_advisory_xact_lock(hashtext('docstore:install'));

CREATE TABLE IF NOT EXISTS docstore_collections (
    name text PRIMARY KEY, tbl text NOT NULL UNIQUE, created timestamptz NOT NULL DEFAULT now());

-- MongoDB's type brackets, in BSON sort order
CREATE OR REPLACE FUNCTION ds_bracket(v jsonb) RETURNS int LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
  SELECT CASE jsonb_typeof(v) WHEN 'null' THEN 1 WHEN 'number' THEN 2 WHEN 'string' THEN 3
    WHEN 'object' THEN 4 WHEN 'array' THEN 5 WHEN 'boolean' THEN 6 END $$;

CREATE OR REPLACE FUNCTION ds_flip(b bytea) RETURNS bytea LANGUAGE plpgsql IMMUTABLE STRICT PARALLEL SAFE AS $$
DECLARE i int;
BEGIN
  FOR i IN 0 .. length(b) - 1 LOOP b := set_byte(b, i, 255 - get_byte(b, i)); END LOOP;
  RETURN b;
END $$;

-- A key whose byte order is BSON's order: bracket byte, then numbers as sign, exponent and digits
-- (negatives flipped and closed by 0xff), strings as UTF-8 closed by 0x00, objects as (bracket, name,
-- value) per field and arrays as their elements, both closed by 0x00.
CREATE OR REPLACE FUNCTION ds_key(v jsonb) RETURNS bytea LANGUAGE plpgsql IMMUTABLE STRICT PARALLEL SAFE AS $$
DECLARE n numeric; s text; ip text; fp text; e int; digits text; r bytea; k text; x jsonb; i int;
BEGIN
  CASE jsonb_typeof(v)
  WHEN 'null' THEN RETURN '\x01'::bytea;
  WHEN 'boolean' THEN RETURN CASE WHEN v = 'true'::jsonb THEN '\x0601'::bytea ELSE '\x0600'::bytea END;
  WHEN 'string' THEN RETURN '\x03'::bytea || convert_to(v #>> '{}', 'UTF8') || '\x00'::bytea;
  WHEN 'number' THEN
    n := v::numeric;
    IF n = 0 THEN RETURN '\x0202'::bytea; END IF;
    s := abs(n)::text;
    ip := ltrim(split_part(s, '.', 1), '0');
    fp := split_part(s, '.', 2);
    IF ip <> '' THEN
      e := length(ip) - 1; digits := ip || fp;
    ELSE
      e := length(ltrim(fp, '0')) - length(fp) - 1; digits := ltrim(fp, '0');
    END IF;
    r := convert_to(lpad((e + 5000000)::text, 8, '0') || rtrim(digits, '0'), 'UTF8');
    IF n > 0 THEN RETURN '\x0203'::bytea || r; END IF;
    RETURN '\x0201'::bytea || ds_flip(r) || '\xff'::bytea;
  WHEN 'object' THEN
    r := '\x04'::bytea;
    FOR k, x IN SELECT j.key, j.value FROM jsonb_each(v) AS j LOOP
      r := r || set_byte('\x00'::bytea, 0, ds_bracket(x)) || convert_to(k, 'UTF8') || '\x00'::bytea || ds_key(x);
    END LOOP;
    RETURN r || '\x00'::bytea;
  ELSE
    r := '\x05'::bytea;
    FOR i IN 0 .. jsonb_array_length(v) - 1 LOOP
      r := r || ds_key(v -> i);
    END LOOP;
    RETURN r || '\x00'::bytea;
  END CASE;
END $$;

-- The values a path reaches (MongoDB's walk through arrays); a path that reaches nothing is missing
-- (one NULL). The last step's arrays are not expanded here: ds_test tries them whole and per element.
CREATE OR REPLACE FUNCTION ds_cands(d jsonb, p text[]) RETURNS jsonb[] LANGUAGE plpgsql IMMUTABLE PARALLEL SAFE AS $$
DECLARE cur jsonb[] := ARRAY[d]; nxt jsonb[]; node jsonb; k text; e jsonb; i int;
BEGIN
  FOREACH k IN ARRAY p LOOP
    nxt := '{}';
    FOREACH node IN ARRAY cur LOOP
      IF node IS NULL THEN
        nxt := array_append(nxt, NULL::jsonb);
      ELSIF jsonb_typeof(node) = 'object' THEN
        nxt := array_append(nxt, node -> k);
      ELSIF jsonb_typeof(node) = 'array' THEN
        IF k ~ '^[0-9]{1,9}$' THEN
          nxt := array_append(nxt, node -> k::int);
        ELSE
          FOR i IN 0 .. jsonb_array_length(node) - 1 LOOP
            e := node -> i;
            IF jsonb_typeof(e) = 'object' THEN nxt := array_append(nxt, e -> k); END IF;
          END LOOP;
        END IF;
      ELSE
        nxt := array_append(nxt, NULL::jsonb);
      END IF;
    END LOOP;
    cur := nxt;
  END LOOP;
  IF cardinality(cur) = 0 THEN RETURN ARRAY[NULL::jsonb]; END IF;
  RETURN cur;
END $$;

-- BSON comparison of two values of the same bracket: -1, 0 or 1 (scalars directly, others by key).
CREATE OR REPLACE FUNCTION ds_cmp(x jsonb, v jsonb) RETURNS int LANGUAGE plpgsql IMMUTABLE PARALLEL SAFE AS $$
DECLARE a text; b text; kx bytea; kv bytea;
BEGIN
  CASE jsonb_typeof(x)
  WHEN 'number' THEN RETURN sign(x::numeric - v::numeric)::int;
  WHEN 'string' THEN
    a := x #>> '{}'; b := v #>> '{}';
    RETURN CASE WHEN a COLLATE "C" = b COLLATE "C" THEN 0 WHEN a COLLATE "C" < b COLLATE "C" THEN -1 ELSE 1 END;
  WHEN 'boolean' THEN RETURN CASE WHEN x = v THEN 0 WHEN x < v THEN -1 ELSE 1 END;
  WHEN 'null' THEN RETURN 0;
  ELSE
    kx := ds_key(x); kv := ds_key(v);
    RETURN CASE WHEN kx = kv THEN 0 WHEN kx < kv THEN -1 ELSE 1 END;
  END CASE;
END $$;

-- One value against one operator (no array expansion here).
CREATE OR REPLACE FUNCTION ds_hit(x jsonb, op text, v jsonb, vb int) RETURNS boolean
LANGUAGE plpgsql IMMUTABLE PARALLEL SAFE AS $$
DECLARE i int;
BEGIN
  CASE op
  WHEN 'eq' THEN RETURN x = v;
  WHEN 'in' THEN
    IF jsonb_typeof(x) NOT IN ('object', 'array') THEN
      RETURN v @> jsonb_build_array(x);  -- for a scalar: some element of v equals it
    END IF;
    FOR i IN 0 .. jsonb_array_length(v) - 1 LOOP
      IF v -> i = x THEN RETURN true; END IF;
    END LOOP;
    RETURN false;
  WHEN 'gt' THEN RETURN ds_bracket(x) = vb AND ds_cmp(x, v) > 0;
  WHEN 'gte' THEN RETURN ds_bracket(x) = vb AND ds_cmp(x, v) >= 0;
  WHEN 'lt' THEN RETURN ds_bracket(x) = vb AND ds_cmp(x, v) < 0;
  WHEN 'lte' THEN RETURN ds_bracket(x) = vb AND ds_cmp(x, v) <= 0;
  WHEN 'regex' THEN RETURN jsonb_typeof(x) = 'string' AND (x #>> '{}') ~ (v #>> '{}');
  WHEN 'iregex' THEN RETURN jsonb_typeof(x) = 'string' AND (x #>> '{}') ~* (v #>> '{}');
  END CASE;
END $$;

-- One operator on a path: true when any value it reaches (or any element of such an array) passes.
CREATE OR REPLACE FUNCTION ds_test(d jsonb, p text[], op text, v jsonb) RETURNS boolean
LANGUAGE plpgsql IMMUTABLE PARALLEL SAFE AS $$
DECLARE c jsonb := d; cands jsonb[]; vb int; i int; t text; simple boolean := true;
BEGIN
  -- the common case first: a path through objects only reaches one value (or none)
  FOR i IN 1 .. cardinality(p) LOOP
    t := jsonb_typeof(c);
    IF t = 'object' THEN
      c := c -> p[i];
    ELSIF t = 'array' THEN
      simple := false;
      EXIT;
    ELSE
      c := NULL;
      EXIT;
    END IF;
  END LOOP;
  cands := CASE WHEN simple THEN ARRAY[c] ELSE ds_cands(d, p) END;
  IF op = 'exists' THEN
    FOREACH c IN ARRAY cands LOOP
      IF c IS NOT NULL THEN RETURN true; END IF;
    END LOOP;
    RETURN false;
  END IF;
  vb := ds_bracket(v);
  FOREACH c IN ARRAY cands LOOP
    IF c IS NULL THEN
      -- a missing field equals null (and is >= and <= null)
      IF (op IN ('eq', 'gte', 'lte') AND vb = 1) OR (op = 'in' AND v @> '[null]'::jsonb) THEN
        RETURN true;
      END IF;
    ELSE
      IF ds_hit(c, op, v, vb) THEN RETURN true; END IF;
      IF jsonb_typeof(c) = 'array' THEN
        FOR i IN 0 .. jsonb_array_length(c) - 1 LOOP
          IF ds_hit(c -> i, op, v, vb) THEN RETURN true; END IF;
        END LOOP;
      END IF;
    END IF;
  END LOOP;
  RETURN false;
END $$;

-- The sort key of a path: the smallest (ascending) or largest (descending) value it reaches, an
-- array by its elements; missing sorts as null, an empty array before null.
CREATE OR REPLACE FUNCTION ds_sortkey(d jsonb, p text[], descending boolean) RETURNS bytea
LANGUAGE plpgsql IMMUTABLE PARALLEL SAFE AS $$
DECLARE c jsonb; i int; k bytea; best bytea;
BEGIN
  FOREACH c IN ARRAY ds_cands(d, p) LOOP
    IF c IS NULL THEN
      k := '\x01'::bytea;
      best := CASE WHEN best IS NULL THEN k WHEN descending THEN greatest(best, k) ELSE least(best, k) END;
    ELSIF jsonb_typeof(c) = 'array' THEN
      IF jsonb_array_length(c) = 0 THEN
        k := '\x00'::bytea;
        best := CASE WHEN best IS NULL THEN k WHEN descending THEN greatest(best, k) ELSE least(best, k) END;
      END IF;
      FOR i IN 0 .. jsonb_array_length(c) - 1 LOOP
        k := ds_key(c -> i);
        best := CASE WHEN best IS NULL THEN k WHEN descending THEN greatest(best, k) ELSE least(best, k) END;
      END LOOP;
    ELSE
      k := ds_key(c);
      best := CASE WHEN best IS NULL THEN k WHEN descending THEN greatest(best, k) ELSE least(best, k) END;
    END IF;
  END LOOP;
  RETURN coalesce(best, '\x01'::bytea);
END $$;

-- Update helpers. `at` (e.g. update.$inc.n) names the field in the error a refusal raises.
CREATE OR REPLACE FUNCTION ds_fail(reason text, at text) RETURNS jsonb LANGUAGE plpgsql IMMUTABLE AS $$
BEGIN
  RAISE EXCEPTION USING ERRCODE = 'DS400', MESSAGE = reason, DETAIL = at;
END $$;

CREATE OR REPLACE FUNCTION ds_get(d jsonb, p text[]) RETURNS jsonb LANGUAGE plpgsql IMMUTABLE PARALLEL SAFE AS $$
DECLARE k text;
BEGIN
  FOREACH k IN ARRAY p LOOP
    IF jsonb_typeof(d) = 'object' THEN
      d := d -> k;
    ELSIF jsonb_typeof(d) = 'array' AND k ~ '^[0-9]{1,9}$' THEN
      d := d -> k::int;
    ELSE
      RETURN NULL;
    END IF;
  END LOOP;
  RETURN d;
END $$;

CREATE OR REPLACE FUNCTION ds_set(d jsonb, p text[], v jsonb, at text) RETURNS jsonb
LANGUAGE plpgsql IMMUTABLE PARALLEL SAFE AS $$
DECLARE k text; i int; n int;
BEGIN
  IF cardinality(p) = 0 THEN RETURN v; END IF;
  k := p[1];
  IF d IS NULL OR jsonb_typeof(d) = 'object' THEN
    d := coalesce(d, '{}'::jsonb);
    RETURN d || jsonb_build_object(k, ds_set(d -> k, p[2:], v, at));
  ELSIF jsonb_typeof(d) = 'array' AND k ~ '^[0-9]{1,5}$' THEN
    i := k::int;
    n := jsonb_array_length(d);
    IF i < n THEN RETURN jsonb_set(d, ARRAY[k], ds_set(d -> i, p[2:], v, at)); END IF;
    -- past the end: MongoDB pads with nulls
    RETURN d || coalesce((SELECT jsonb_agg('null'::jsonb) FROM generate_series(n, i - 1)), '[]'::jsonb)
             || jsonb_build_array(ds_set(NULL, p[2:], v, at));
  END IF;
  RETURN ds_fail(format('cannot create the field %s inside a %s', k, jsonb_typeof(d)), at);
END $$;

CREATE OR REPLACE FUNCTION ds_unset(d jsonb, p text[]) RETURNS jsonb LANGUAGE plpgsql IMMUTABLE PARALLEL SAFE AS $$
DECLARE k text := p[1];
BEGIN
  IF cardinality(p) = 0 THEN RETURN d; END IF;
  IF jsonb_typeof(d) = 'object' THEN
    IF NOT (d ? k) THEN RETURN d; END IF;
    IF cardinality(p) = 1 THEN RETURN d - k; END IF;
    RETURN d || jsonb_build_object(k, ds_unset(d -> k, p[2:]));
  ELSIF jsonb_typeof(d) = 'array' AND k ~ '^[0-9]{1,9}$' AND k::int < jsonb_array_length(d) THEN
    -- MongoDB keeps the array's length: an unset element becomes null
    IF cardinality(p) = 1 THEN RETURN jsonb_set(d, ARRAY[k], 'null'::jsonb); END IF;
    RETURN jsonb_set(d, ARRAY[k], ds_unset(d -> k::int, p[2:]));
  END IF;
  RETURN d;
END $$;

CREATE OR REPLACE FUNCTION ds_inc(d jsonb, p text[], n jsonb, at text) RETURNS jsonb
LANGUAGE plpgsql IMMUTABLE PARALLEL SAFE AS $$
DECLARE cur jsonb := ds_get(d, p);
BEGIN
  IF cur IS NULL THEN RETURN ds_set(d, p, n, at); END IF;
  IF jsonb_typeof(cur) <> 'number' THEN
    RETURN ds_fail('cannot apply $inc to a value of type ' || jsonb_typeof(cur), at);
  END IF;
  RETURN ds_set(d, p, to_jsonb(cur::numeric + n::numeric), at);
END $$;

CREATE OR REPLACE FUNCTION ds_push(d jsonb, p text[], vals jsonb, at text) RETURNS jsonb
LANGUAGE plpgsql IMMUTABLE PARALLEL SAFE AS $$
DECLARE cur jsonb := ds_get(d, p);
BEGIN
  IF cur IS NULL THEN RETURN ds_set(d, p, vals, at); END IF;
  IF jsonb_typeof(cur) <> 'array' THEN
    RETURN ds_fail('cannot push to a value of type ' || jsonb_typeof(cur), at);
  END IF;
  RETURN ds_set(d, p, cur || vals, at);
END $$;

CREATE OR REPLACE FUNCTION ds_addtoset(d jsonb, p text[], vals jsonb, at text) RETURNS jsonb
LANGUAGE plpgsql IMMUTABLE PARALLEL SAFE AS $$
DECLARE cur jsonb := ds_get(d, p); x jsonb;
BEGIN
  IF cur IS NULL THEN
    cur := '[]'::jsonb;
  ELSIF jsonb_typeof(cur) <> 'array' THEN
    RETURN ds_fail('cannot add to a set in a value of type ' || jsonb_typeof(cur), at);
  END IF;
  FOR x IN SELECT j.value FROM jsonb_array_elements(vals) WITH ORDINALITY AS j(value, o) ORDER BY j.o LOOP
    IF NOT EXISTS (SELECT 1 FROM jsonb_array_elements(cur) AS c WHERE c.value = x) THEN
      cur := cur || jsonb_build_array(x);
    END IF;
  END LOOP;
  RETURN ds_set(d, p, cur, at);
END $$;

-- The array $pull filters: NULL when the field is missing (nothing to do), an error for a non-array.
CREATE OR REPLACE FUNCTION ds_pull_source(d jsonb, p text[], at text) RETURNS jsonb
LANGUAGE plpgsql IMMUTABLE PARALLEL SAFE AS $$
DECLARE cur jsonb := ds_get(d, p);
BEGIN
  IF cur IS NULL OR jsonb_typeof(cur) = 'array' THEN RETURN cur; END IF;
  RETURN ds_fail('cannot pull from a value of type ' || jsonb_typeof(cur), at);
END $$;
"""

__all__ = ["DocStore", "QueryError", "Denied", "NAME_RE", "project"]
