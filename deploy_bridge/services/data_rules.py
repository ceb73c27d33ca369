"""Collection rules of the manifest's [data] section: who may read and write which documents.

One small expression language, parsed here for the editor (validation, "this rule never allows
anything") and evaluated by the data API: as a SQL predicate ANDed into reads, updates and removes
(`Rule.sql`), and in Python for each document added (`Rule.allows`). Standard library only, except
`Rule.sql`, which imports psycopg when called (the editor never calls it).

    rule    = or
    or      = and { "||" and }
    and     = primary { "&&" primary }
    primary = "(" or ")" | "true" | "false" | who | match
    who     = AUTH ("==" | "!=") "null"  |  "null" ("==" | "!=") AUTH        AUTH = "auth" | "auth.uid"
    match   = DOC "==" VALUE  |  VALUE "==" DOC                               DOC = "doc." FIELD
    VALUE   = "auth.uid" | STRING
    FIELD   = NAME { "." NAME }          NAME = [A-Za-z_][A-Za-z0-9_]*, e.g. doc._owner, doc.shop.owner
    STRING  = '…' or "…" (a backslash escapes the quote or a backslash)

`auth` is None for an anonymous caller, else {"uid": "2088…"}. `auth != null` holds for any signed-in
caller. `doc.F == auth.uid` holds when the field is exactly the caller's uid (never for an anonymous
caller, even when the field is null or missing); `doc.F == 'x'` when the field is exactly that string
(an array containing it does not count). Examples:

    true                                   anyone
    auth != null                           any signed-in user
    doc._owner == auth.uid                 only the documents a user added
    doc.public == 'yes' || (auth != null && doc.shop.owner == auth.uid)
"""

from __future__ import annotations

import itertools
import re
from dataclasses import dataclass
from typing import Any

# ------------------------------------------------------------------------------------------ AST


@dataclass(frozen=True)
class Const:
    value: bool


@dataclass(frozen=True)
class SignedIn:
    """`auth != null` (want=True) or `auth == null` (want=False)."""

    want: bool


@dataclass(frozen=True)
class FieldIs:
    """`doc.PATH == auth.uid` (literal None) or `doc.PATH == 'literal'`."""

    path: tuple[str, ...]
    literal: str | None


@dataclass(frozen=True)
class AllOf:
    items: tuple


@dataclass(frozen=True)
class AnyOf:
    items: tuple


Node = Const | SignedIn | FieldIs | AllOf | AnyOf

# ------------------------------------------------------------------------------------- parsing

_NAME = r"[A-Za-z_][A-Za-z0-9_]*"
_TOKEN = re.compile(rf"""
    (?P<space>\s+)
  | (?P<op>&&|\|\||==|!=|\(|\))
  | (?P<string>'(?:[^'\\]|\\.)*'|"(?:[^"\\]|\\.)*")
  | (?P<name>{_NAME}(?:\.{_NAME})*)
""", re.VERBOSE)


@dataclass(frozen=True)
class _Tok:
    kind: str  # op | string | name | end
    text: str
    col: int  # 1-based


def _tokens(text: str, where: str) -> list[_Tok]:
    out, pos = [], 0
    while pos < len(text):
        m = _TOKEN.match(text, pos)
        if m is None:
            raise ValueError(f"{where}: column {pos + 1}: unexpected {text[pos]!r}")
        kind = m.lastgroup or ""
        if kind != "space":
            value = m.group()
            if kind == "string":
                value = re.sub(r"\\(.)", r"\1", value[1:-1])
            out.append(_Tok(kind, value, pos + 1))
        pos = m.end()
    out.append(_Tok("end", "", len(text) + 1))
    return out


class _Parser:
    """Recursive descent over the grammar above; errors name `where` and the column."""

    def __init__(self, text: str, where: str) -> None:
        self.where = where
        self.toks = _tokens(text, where)
        self.i = 0

    def fail(self, tok: _Tok, problem: str) -> ValueError:
        return ValueError(f"{self.where}: column {tok.col}: {problem}")

    def peek(self) -> _Tok:
        return self.toks[self.i]

    def take(self) -> _Tok:
        tok = self.toks[self.i]
        self.i += 1
        return tok

    def parse(self) -> Node:
        if self.peek().kind == "end":
            raise self.fail(self.peek(), "the rule is empty (write true, false or a condition)")
        node = self.or_()
        tok = self.peek()
        if tok.kind != "end":
            raise self.fail(tok, f"unexpected {tok.text!r} (expected && or || or the end)")
        return node

    def or_(self) -> Node:
        items = [self.and_()]
        while self.peek().text == "||" and self.peek().kind == "op":
            self.take()
            items.append(self.and_())
        return items[0] if len(items) == 1 else AnyOf(tuple(items))

    def and_(self) -> Node:
        items = [self.primary()]
        while self.peek().text == "&&" and self.peek().kind == "op":
            self.take()
            items.append(self.primary())
        return items[0] if len(items) == 1 else AllOf(tuple(items))

    def primary(self) -> Node:
        tok = self.peek()
        if tok.kind == "op" and tok.text == "(":
            self.take()
            node = self.or_()
            close = self.take()
            if close.kind != "op" or close.text != ")":
                raise self.fail(close, "expected ')'")
            return node
        if tok.kind == "name" and tok.text in ("true", "false"):
            self.take()
            return Const(tok.text == "true")
        left = self.operand()
        op = self.take()
        if op.kind != "op" or op.text not in ("==", "!="):
            raise self.fail(op, "expected == or != after " + _show(left))
        right = self.operand()
        return self.comparison(left, op, right)

    def operand(self) -> _Tok:
        tok = self.take()
        if tok.kind == "string":
            return tok
        if tok.kind == "name":
            if tok.text in ("auth", "auth.uid", "null") or tok.text.startswith("doc."):
                return tok
            if tok.text == "doc":
                raise self.fail(tok, "name a field of the document, e.g. doc._owner")
            raise self.fail(tok, f"unknown name {tok.text!r} (expected doc.FIELD, auth, auth.uid, null, "
                                 "true, false or a 'string')")
        if tok.kind == "end":
            raise self.fail(tok, "the rule ends too early")
        raise self.fail(tok, f"unexpected {tok.text!r}")

    def comparison(self, left: _Tok, op: _Tok, right: _Tok) -> Node:
        kinds = {_kind(left), _kind(right)}
        if kinds in ({"auth", "null"}, {"uid", "null"}):
            return SignedIn(op.text == "!=")
        if "doc" in kinds and len(kinds) == 2 and kinds & {"uid", "string"}:
            if op.text != "==":
                raise self.fail(op, "a document field can only be compared with ==")
            doc, other = (left, right) if _kind(left) == "doc" else (right, left)
            path = tuple(doc.text.split(".")[1:])
            return FieldIs(path, other.text if other.kind == "string" else None)
        raise self.fail(op, f"cannot compare {_show(left)} with {_show(right)} (compare doc.FIELD with "
                            "auth.uid or a 'string', or auth with null)")


def _kind(tok: _Tok) -> str:
    if tok.kind == "string":
        return "string"
    if tok.text == "auth.uid":
        return "uid"
    if tok.text == "auth":
        return "auth"
    return "null" if tok.text == "null" else "doc"


def _show(tok: _Tok) -> str:
    return repr(tok.text) if tok.kind == "string" else tok.text


# ------------------------------------------------------------------------------------ the rule


def _uid(auth: dict | None) -> str | None:
    uid = auth.get("uid") if isinstance(auth, dict) else None
    return uid if isinstance(uid, str) else None


def _lookup(doc: Any, path: tuple[str, ...]) -> Any:
    for part in path:
        if not isinstance(doc, dict) or part not in doc:
            return None
        doc = doc[part]
    return doc


@dataclass(frozen=True)
class Rule:
    """A parsed rule; `text` as written, `node` its tree."""

    text: str
    node: Node

    def allows(self, doc: dict, auth: dict | None) -> bool:
        """Whether `doc` (as it will be stored, with _id and _owner) may be written by `auth`."""
        return _eval(self.node, doc, auth)

    def sql(self, auth: dict | None) -> tuple[Any, list]:
        """A parameterised boolean predicate over a collection row (columns doc, _id, _owner)."""
        return _sql(self.node, auth)

    def always_false(self, auth_known: bool) -> bool:
        """True when the rule can never hold for a caller who is signed in (`auth_known`) or anonymous
        (not `auth_known`), whatever the document: `false`, `auth == null && auth != null`,
        `doc.a == 'x' && doc.a == 'y'`, `doc._owner == auth.uid` for an anonymous caller."""
        atoms = sorted({a for a in _atoms(self.node) if auth_known or a.literal is not None},
                       key=lambda a: (a.path, a.literal or ""))
        if len(atoms) > 16:
            return False  # too many to try every case: not known to be false
        for values in itertools.product((False, True), repeat=len(atoms)):
            world = dict(zip(atoms, values, strict=True))
            if not _consistent(world) or not _holds(self.node, world, auth_known):
                continue
            return False
        return True


def parse(text: str, where: str) -> Rule:
    """Parse a rule; a ValueError names `where` (e.g. "[data.rules] orders.read") and the column."""
    if not isinstance(text, str):
        raise ValueError(f"{where}: a rule must be a string, e.g. \"doc._owner == auth.uid\"")
    return Rule(text, _Parser(text, where).parse())


def _eval(node: Node, doc: dict, auth: dict | None) -> bool:
    if isinstance(node, Const):
        return node.value
    if isinstance(node, SignedIn):
        return (auth is not None) == node.want
    if isinstance(node, FieldIs):
        target = node.literal if node.literal is not None else _uid(auth)
        if target is None:
            return False
        value = _lookup(doc, node.path)
        return isinstance(value, str) and value == target
    if isinstance(node, AllOf):
        return all(_eval(n, doc, auth) for n in node.items)
    return any(_eval(n, doc, auth) for n in node.items)


def _sql(node: Node, auth: dict | None) -> tuple[Any, list]:
    from psycopg import sql
    from psycopg.types.json import Jsonb

    if isinstance(node, Const):
        return sql.SQL("TRUE" if node.value else "FALSE"), []
    if isinstance(node, SignedIn):
        return sql.SQL("TRUE" if (auth is not None) == node.want else "FALSE"), []
    if isinstance(node, FieldIs):
        target = node.literal if node.literal is not None else _uid(auth)
        if target is None:
            return sql.SQL("FALSE"), []
        if node.path in (("_owner",), ("_id",)):
            return sql.SQL("coalesce({} = %s, false)").format(sql.Identifier(node.path[0])), [target]
        nested: Any = target
        for part in reversed(node.path):
            nested = {part: nested}
        # containment lets the GIN index find the rows; #> keeps it to exact equality (not array membership)
        return (sql.SQL("(doc @> %s AND coalesce(doc #> %s::text[] = %s::jsonb, false))"),
                [Jsonb(nested), list(node.path), Jsonb(target)])
    parts = [_sql(n, auth) for n in node.items]
    joiner = " AND " if isinstance(node, AllOf) else " OR "
    params: list = []
    for _, p in parts:
        params.extend(p)
    return sql.SQL("(") + sql.SQL(joiner).join(t for t, _ in parts) + sql.SQL(")"), params


def _atoms(node: Node) -> set[FieldIs]:
    if isinstance(node, FieldIs):
        return {node}
    if isinstance(node, AllOf | AnyOf):
        return set().union(*(_atoms(n) for n in node.items))
    return set()


def _consistent(world: dict[FieldIs, bool]) -> bool:
    """A field equals at most one string: two different literals cannot both hold on one path."""
    held: dict[tuple[str, ...], str] = {}
    for atom, value in world.items():
        if value and atom.literal is not None and held.setdefault(atom.path, atom.literal) != atom.literal:
            return False
    return True


def _holds(node: Node, world: dict[FieldIs, bool], signed_in: bool) -> bool:
    if isinstance(node, Const):
        return node.value
    if isinstance(node, SignedIn):
        return signed_in == node.want
    if isinstance(node, FieldIs):
        return world.get(node, False)  # an anonymous caller's uid matches nothing: not in the world
    if isinstance(node, AllOf):
        return all(_holds(n, world, signed_in) for n in node.items)
    return any(_holds(n, world, signed_in) for n in node.items)
