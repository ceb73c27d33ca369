"""The document store on a real PostgreSQL (the local `postgres` recipe), checked against mongomock.

mongomock is the oracle for MongoDB's query semantics where it is right; the strategies below stay
clear of the places where it is not (each named at the strategy), and test_mongodb_cases_* pins
MongoDB's own answer there.
"""

from __future__ import annotations

import copy
import secrets
import time
import uuid
from collections.abc import Iterator
from typing import Any

import docker
import mongomock
import psycopg
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from psycopg import sql

from deploy_bridge.images import ensure_recipe
from deploy_bridge.services import data_rules
from deploy_bridge.services.docstore import Denied, DocStore, QueryError

pytestmark = pytest.mark.docker

READY_SECONDS = 90


# --------------------------------------------------------------------------------- the database


@pytest.fixture(scope="module")
def pg_dsn(docker_engine) -> Iterator[str]:
    """A PostgreSQL container of the postgres recipe on a random local port, removed with its volume."""
    client = docker.from_env()
    image = ensure_recipe(client, "postgres")
    password = secrets.token_hex(12)
    container = client.containers.run(
        image, detach=True, labels={"minicloud.test": f"docstore-{uuid.uuid4().hex[:8]}"},
        environment={"POSTGRES_PASSWORD": password, "POSTGRES_DB": "docs"},
        ports={"5432/tcp": ("127.0.0.1", None)})
    try:
        deadline = time.monotonic() + READY_SECONDS
        dsn = None
        while True:
            container.reload()
            if container.status == "exited":
                pytest.fail("the postgres container stopped:\n" + container.logs().decode()[-3000:])
            bound = (container.attrs["NetworkSettings"]["Ports"] or {}).get("5432/tcp")
            if bound:
                dsn = f"host=127.0.0.1 port={bound[0]['HostPort']} user=postgres password={password} dbname=docs"
                try:
                    # TCP only answers once the first start's set-up is done (it runs socket-only)
                    with psycopg.connect(dsn, connect_timeout=3) as conn:
                        conn.execute("SELECT 1")
                    break
                except psycopg.OperationalError:
                    pass
            if time.monotonic() > deadline:
                pytest.fail(f"postgres not ready after {READY_SECONDS}s:\n" + container.logs().decode()[-3000:])
            time.sleep(0.2)
        yield dsn
    finally:
        container.remove(force=True, v=True)


@pytest.fixture(scope="module")
def conn(pg_dsn) -> Iterator[psycopg.Connection]:
    with psycopg.connect(pg_dsn, autocommit=True) as c:
        DocStore(c).install()
        yield c


@pytest.fixture(scope="module")
def shared_store(conn) -> DocStore:
    """One store for every example of the property test (its helpers are installed once)."""
    return DocStore(conn)


class Recorder:
    """A connection that keeps the SQL text of every statement, to show no user value is in one."""

    def __init__(self, conn: psycopg.Connection) -> None:
        self._conn = conn
        self.texts: list[str] = []
        self.last: tuple[Any, Any] | None = None

    def _keep(self, query: Any, params: Any) -> None:
        self.texts.append(query.as_string(self._conn) if isinstance(query, sql.Composable) else str(query))
        self.last = (query, params)

    def execute(self, query: Any, params: Any = None, **kwargs: Any) -> psycopg.Cursor:
        self._keep(query, params)
        return self._conn.execute(query, params, **kwargs)

    def cursor(self, *args: Any, **kwargs: Any) -> _RecordingCursor:
        return _RecordingCursor(self, self._conn.cursor(*args, **kwargs))

    def transaction(self) -> Any:
        return self._conn.transaction()


class _RecordingCursor:
    def __init__(self, recorder: Recorder, cur: psycopg.Cursor) -> None:
        self._rec, self._cur = recorder, cur

    def __enter__(self) -> _RecordingCursor:
        return self

    def __exit__(self, *exc: object) -> None:
        self._cur.close()

    def executemany(self, query: Any, rows: Any) -> None:
        self._rec._keep(query, None)
        self._cur.executemany(query, rows)


def coll_name(prefix: str) -> str:
    return f"{prefix}_{uuid.uuid4().hex[:10]}"


def ids(docs: list[dict]) -> list[str]:
    return [d["_id"] for d in docs]


# ------------------------------------------------------------------- property test vs mongomock

# Numbers never equal to 0 or 1: mongomock compares with Python's ==, where True == 1 and False == 0
# (a mongomock bug: MongoDB never equates booleans and numbers). 3 and 3.0 are both here on purpose.
NUMS = st.sampled_from([-3, -2, -1, 2, 3, 7, 10, -1.5, -0.25, 0.5, 2.5, 3.0, 7.75])
STRS = st.sampled_from(["", "a", "ab", "abc", "b", "B", "Ab", "ba", "é", "aé"])
SCALARS = st.one_of(st.none(), st.booleans(), NUMS, STRS)
NON_NULL = st.one_of(st.booleans(), NUMS, STRS)
# Objects with keys in jsonb's own key order (same length, sorted): MongoDB compares objects in
# insertion order, jsonb keeps its own; with these both orders agree.
SMALL_DOCS = st.fixed_dictionaries({}, optional={"p": SCALARS, "q": SCALARS}).map(lambda d: dict(sorted(d.items())))
N_DOCS = st.fixed_dictionaries({}, optional={"x": st.one_of(SCALARS, st.lists(SCALARS, max_size=3)),
                                             "y": SCALARS}).map(lambda d: dict(sorted(d.items())))
DOCS = st.fixed_dictionaries({}, optional={
    "a": st.one_of(SCALARS, st.lists(st.one_of(SCALARS, st.lists(SCALARS, max_size=2)), max_size=3)),
    "s": st.one_of(SCALARS, SMALL_DOCS),
    "t": SCALARS,
    "k": NUMS,
    "l": st.lists(SCALARS, max_size=4),
    # n is never a scalar nor an empty array: on those mongomock finds no value for n.x, where MongoDB
    # finds a missing one ({"n.x": null} matches there)
    "n": st.one_of(N_DOCS, st.lists(N_DOCS, min_size=1, max_size=3)),
    "m": st.fixed_dictionaries({}, optional={"k": NUMS, "z": SCALARS}),
})

TOP = ["a", "s", "t", "k", "l", "n", "m"]
DOTTED = ["n.x", "n.y", "m.z", "m.k"]
# Through a value that may be a scalar or an empty array: no null operand there (mongomock sees no
# value where MongoDB sees a missing one, which equals null).
SHAKY = ["s.p", "a.0"]
REGEXES = st.sampled_from(["a", "^a", "b$", "A", "^$", "a.", "^[ab]+$"])


@st.composite
def field_conditions(draw: st.DrawFn) -> tuple[str, Any]:
    path = draw(st.sampled_from(TOP + DOTTED + SHAKY))
    top = path in TOP
    value = NON_NULL if path in SHAKY else SCALARS
    kinds = ["implicit", "eq", "ne", "cmp", "in", "nin", "regex"]
    if path not in SHAKY:
        kinds.append("not")  # mongomock's $not fails where it sees no value at all (MongoDB's holds)
    if top:
        # $exists and several operators on one field only on top-level paths: mongomock tests them per
        # value reached (n.x over an array of documents), MongoDB over all the values at once
        kinds += ["exists", "range"]
    kind = draw(st.sampled_from(kinds))
    if kind == "implicit":
        # no {}: mongomock lets {"a": {}} match a missing a (MongoDB only a == {})
        return path, draw(st.one_of(value, SMALL_DOCS.filter(bool), st.lists(value, max_size=2)))
    if kind == "exists":
        return path, {"$exists": draw(st.booleans())}
    if kind == "range":
        return path, {"$gt": draw(NON_NULL), "$lt": draw(NON_NULL)}
    return path, draw(single_operator(kind if kind != "not" else draw(st.sampled_from(["eq", "cmp", "in", "regex"])),
                                      value, negate=kind == "not"))


@st.composite
def single_operator(draw: st.DrawFn, kind: str, value: st.SearchStrategy, negate: bool) -> dict:
    # comparisons never with null: mongomock's $gte/$lte null do not match a missing field (MongoDB's do)
    if kind in ("eq", "ne"):
        cond = {f"${kind}": draw(st.one_of(value, SMALL_DOCS))}
    elif kind == "cmp":
        cond = {draw(st.sampled_from(["$gt", "$gte", "$lt", "$lte"])): draw(st.one_of(NON_NULL, SMALL_DOCS))}
    elif kind in ("in", "nin"):
        cond = {f"${kind}": draw(st.lists(st.one_of(value, SMALL_DOCS), max_size=3))}
    else:
        cond = {"$regex": draw(REGEXES)}
        # not under $not: mongomock refuses $options there ("unknown operator: $options")
        if not negate and draw(st.booleans()):
            cond["$options"] = "i"
    return {"$not": cond} if negate else cond


def _merge(conds: list[tuple[str, Any]]) -> dict:
    out: dict = {}
    for path, cond in conds:
        out.setdefault(path, cond)
    return out


FILTERS = st.recursive(
    st.lists(field_conditions(), max_size=2).map(_merge),
    lambda inner: st.one_of(
        st.builds(lambda op, subs: {op: subs}, st.sampled_from(["$and", "$or", "$nor"]),
                  st.lists(inner, min_size=1, max_size=3)),
        st.builds(lambda a, b: {**a, **b}, inner, st.lists(field_conditions(), max_size=1).map(_merge))),
    max_leaves=4)

# sort keys never reach an array: mongomock sorts an array by its first element, MongoDB by its
# smallest (ascending) or largest (descending)
SORTS = st.lists(st.tuples(st.sampled_from(["s", "t", "k", "m.z"]), st.sampled_from([1, -1])),
                 max_size=2, unique_by=lambda kv: kv[0])
PROJECTIONS = st.one_of(
    st.none(),
    st.lists(st.sampled_from(["a", "s", "n.x", "m", "k"]), min_size=1, max_size=3, unique=True)
    .map(lambda keys: dict.fromkeys(keys, 1)),
    st.lists(st.sampled_from(["a", "s", "n.y", "m.z", "l"]), min_size=1, max_size=2, unique=True)
    .map(lambda keys: dict.fromkeys(keys, 0)),
    st.just({"_id": 0, "t": 1}),
)

# (operator, path) slots: one operator per path, no path inside another (both stores refuse that)
_SLOTS = {
    "s": ["$set", "$unset"], "t": ["$set", "$unset"], "a": ["$set", "$unset"], "m.z": ["$set", "$unset"],
    "k": ["$inc", "$unset"], "m.k": ["$inc"], "l": ["$push", "$addToSet", "$pull", "$unset"],
}


@st.composite
def updates(draw: st.DrawFn) -> dict:
    paths = draw(st.lists(st.sampled_from(sorted(_SLOTS)), min_size=1, max_size=3, unique=True))
    update: dict = {}
    for path in paths:
        op = draw(st.sampled_from(_SLOTS[path]))
        if op == "$set":
            value = draw(st.one_of(SCALARS, SMALL_DOCS, st.lists(SCALARS, max_size=2)))
        elif op == "$unset":
            value = ""
        elif op == "$inc":
            value = draw(NUMS)
        elif op == "$push":
            value = draw(st.one_of(SCALARS, SMALL_DOCS, st.fixed_dictionaries({"$each": st.lists(SCALARS, max_size=3)})))
        elif op == "$addToSet":
            # $each values distinct: mongomock adds a value twice when $each repeats it (MongoDB once)
            value = draw(st.one_of(SCALARS, st.fixed_dictionaries({"$each": st.lists(SCALARS, max_size=3, unique=True)})))
        else:
            value = draw(st.one_of(SCALARS, st.fixed_dictionaries({"$gte": NUMS}),
                                   st.fixed_dictionaries({"$in": st.lists(SCALARS, max_size=3)})))
        update.setdefault(op, {})[path] = value
    return update


def _same_docs(store: DocStore, oracle: Any, coll: str) -> None:
    ours = store.find(coll, {}, sort=[["_id", 1]], limit=0)
    theirs = list(oracle.find({}).sort("_id", 1))
    assert ours == theirs


@settings(max_examples=800, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(docs=st.lists(DOCS, max_size=8), data=st.data())
def test_docstore_agrees_with_mongomock(shared_store, docs, data):
    store = shared_store
    coll = "prop_vs_mongomock"
    store.remove(coll, {})
    oracle = mongomock.MongoClient().db.prop
    rows = [{"_id": f"d{i:02}", **copy.deepcopy(d)} for i, d in enumerate(docs)]
    assert store.add(coll, copy.deepcopy(rows), None) == ids(rows)
    if rows:
        oracle.insert_many([{**copy.deepcopy(r), "_owner": None} for r in rows])

    for _ in range(3):
        filt = data.draw(FILTERS, label="filter")
        step = data.draw(st.sampled_from(["find", "find", "count", "update", "remove"]), label="step")
        if step == "find":
            sort = data.draw(SORTS, label="sort")
            projection = data.draw(PROJECTIONS, label="projection")
            full = [*sort, ("_id", 1)]
            skip = data.draw(st.integers(0, 3), label="skip")
            limit = data.draw(st.integers(0, 4), label="limit")
            ours = store.find(coll, filt, projection=projection, sort=[list(kv) for kv in full], skip=skip, limit=limit)
            theirs = list(oracle.find(filt, projection).sort(full).skip(skip).limit(limit))
            assert ours == theirs
        elif step == "count":
            assert store.count(coll, filt) == oracle.count_documents(filt)
        elif step == "update":
            update = data.draw(updates(), label="update")
            assert store.update(coll, filt, update) == oracle.update_many(filt, copy.deepcopy(update)).matched_count
            _same_docs(store, oracle, coll)
        else:
            assert store.remove(coll, filt) == oracle.delete_many(filt).deleted_count
            _same_docs(store, oracle, coll)


# ------------------------------------------------------------------- MongoDB where mongomock errs


def test_mongodb_cases_mongomock_gets_wrong(conn):
    """MongoDB's answers in the places the property test keeps away from."""
    store, coll = DocStore(conn), coll_name("mongo")
    store.add(coll, [
        {"_id": "bool", "v": True},
        {"_id": "one", "v": 1},
        {"_id": "scalar", "a": 5},
        {"_id": "docs", "a": [{"b": 1}, {"b": 10}], "arr": [9, 3]},
        {"_id": "empty", "a": [], "arr": [5]},
        {"_id": "none"},
    ], None)
    assert ids(store.find(coll, {"v": 1})) == ["one"]  # a boolean is not a number
    assert ids(store.find(coll, {"v": {"$gte": None}, "_id": {"$in": ["one", "none"]}})) == ["none"]
    # a.b reaches nothing in a number or an empty array: missing, which equals null
    assert ids(store.find(coll, {"a.b": None})) == ["bool", "one", "scalar", "empty", "none"]
    # each operator may be met by a different element
    assert ids(store.find(coll, {"a.b": {"$gt": 5, "$lt": 5}})) == ["docs"]
    assert ids(store.find(coll, {"a.b": {"$exists": False}})) == ["bool", "one", "scalar", "empty", "none"]
    # an array sorts by its smallest element ascending, its largest descending
    assert ids(store.find(coll, {"arr": {"$exists": True}}, sort=[["arr", 1]])) == ["docs", "empty"]
    assert ids(store.find(coll, {"arr": {"$exists": True}}, sort=[["arr", -1]])) == ["docs", "empty"]
    assert store.find(coll, {"_id": "docs"}, sort=[["arr", -1]], projection={"arr": 1}) == [
        {"_id": "docs", "arr": [9, 3]}]


def test_sort_follows_bson_order_across_types(conn):
    store, coll = DocStore(conn), coll_name("order")
    values = [None, -10.5, -2, 0, 0.001, 3, 12, "", "B", "a", "ab", "é", {"p": 1}, {"p": 1, "q": 0}, [], [1],
              False, True]
    store.add(coll, [{"_id": f"v{i:02}", "x": v} for i, v in enumerate(reversed(values))], None)
    ascending = [d["x"] for d in store.find(coll, {}, sort=[["x", 1]], limit=0) if not isinstance(d["x"], list)]
    assert ascending == [v for v in values if not isinstance(v, list)]
    assert store.count(coll, {"x": {"$gt": 0}}) == 4  # numbers only: 0.001, 3, 12, and [1] by its element
    assert store.count(coll, {"x": {"$lt": "b"}}) == 4  # "", "B", "a", "ab"


def test_update_forms_and_refusals(conn):
    store, coll = DocStore(conn), coll_name("upd")
    store.add(coll, [{"_id": "a", "n": 1, "tags": ["x"]}, {"_id": "b", "n": 2}], "2088000000000001")
    assert store.update(coll, {}, {"$inc": {"n": 10}}, multi=False) == 1
    assert [d["n"] for d in store.find(coll, {}, sort=[["_id", 1]])] == [11, 2]
    # a replacement keeps _id and _owner, and needs multi=false
    assert store.update(coll, {"_id": "b"}, {"fresh": True, "_owner": "someone else"}, multi=False) == 1
    assert store.find(coll, {"_id": "b"}) == [{"_id": "b", "_owner": "2088000000000001", "fresh": True}]
    with pytest.raises(QueryError) as err:
        store.update(coll, {}, {"fresh": False})
    assert err.value.code == "bad_query" and err.value.path == "update"
    for bad, path in [({"$set": {"_id": "x"}}, "update.$set._id"), ({"$set": {"a": 1}, "$unset": {"a.b": 1}},
                      "update.$unset.a.b"), ({"$inc": {"tags": 1}}, "update.$inc.tags"),
                      ({"$push": {"n": 1}}, "update.$push.n"), ({"$inc": {"n": "1"}}, "update.$inc.n")]:
        with pytest.raises(QueryError) as err:
            store.update(coll, {"_id": "a"}, bad)
        assert err.value.path == path, bad
    assert store.find(coll, {"_id": "a"})[0] == {"_id": "a", "_owner": "2088000000000001", "n": 11, "tags": ["x"]}
    # $pull with a document filters the array's documents; a numeric step sets inside an array
    store.update(coll, {"_id": "a"}, {"$set": {"items": [{"sku": "x", "q": 1}, {"sku": "y"}, 3]}})
    store.update(coll, {"_id": "a"}, {"$pull": {"items": {"sku": "x"}}, "$set": {"tags.2": "z"}})
    got = store.find(coll, {"_id": "a"}, projection={"items": 1, "tags": 1})
    assert got == [{"_id": "a", "items": [{"sku": "y"}, 3], "tags": ["x", None, "z"]}]
    assert store.remove(coll, {"n": {"$gt": 0}}, multi=False) == 1
    assert store.count(coll, {}) == 1


def test_collections_and_fields(conn):
    store, coll = DocStore(conn), coll_name("meta")
    assert store.find(coll, {}) == [] and store.count(coll, {}) == 0 and store.update(coll, {}, {"$set": {"a": 1}}) == 0
    store.add(coll, [{"name": "x", "price": 3, "items": [{"sku": "a"}]}, {"name": None, "price": "4"}], None)
    assert {"name": coll, "count": 2} in store.collections()
    fields = store.sample_fields(coll)
    assert fields["name"] == "string" and fields["price"] == "mixed" and fields["items.sku"] == "string"
    # a taken _id refuses the whole batch, naming the document
    with pytest.raises(QueryError) as err:
        store.add(coll, [{"_id": "new1"}, {"_id": store.find(coll, {"name": "x"})[0]["_id"]}], None)
    assert err.value.path == "data.1._id" and store.count(coll, {}) == 2
    long_name = "L" * 63
    store.add(long_name, [{"x": 1}], None)
    assert {"name": long_name, "count": 1} in store.collections()
    with pytest.raises(QueryError):
        store.find("9starts_with_digit", {})


def test_equality_on_a_field_can_use_the_index(conn):
    rec = Recorder(conn)
    store, coll = DocStore(rec), coll_name("idx")
    store.add(coll, [{"status": f"s{i % 50}", "n": i} for i in range(500)], None)
    assert len(store.find(coll, {"status": "s7"}, limit=0)) == 10
    query, params = rec.last
    conn.execute("SET enable_seqscan = off")
    try:
        plan = "\n".join(r[0] for r in conn.execute(sql.SQL("EXPLAIN ") + query, params).fetchall())
    finally:
        conn.execute("RESET enable_seqscan")
    assert "Bitmap Index Scan" in plan and "doc" in plan, plan


# ------------------------------------------------------------------------------------- injection

PAYLOADS = ["'); DROP TABLE c_victim; --", 'x" OR "1"="1', "a'b\"c\\d", "$where", "';--", "Robert'); DELETE FROM"]


def test_injection_in_keys_values_and_operators(conn):
    rec = Recorder(conn)
    store, coll = DocStore(rec), coll_name("inj")
    weird_key = "k'); DROP TABLE c_victim; --"
    store.add(coll, [{"_id": "w", weird_key: "v'); DROP TABLE x; --", "plain": 1}, {"_id": "p", "plain": 2}], None)
    attempts: list[tuple[str, Any]] = []
    for p in PAYLOADS:
        attempts += [("find", {p: 1}), ("find", {"plain": p}), ("find", {"plain": {"$in": [p]}}),
                     ("find", {"plain": {p: 1}}), ("find", {p: {"$regex": p}}), ("find", {f"n.{p}": {"$gt": p}}),
                     ("sort", [[p, 1]]), ("update", {"$set": {p: p}}), ("update", {p: {"a": 1}})]
    attempts += [("find", {"$where": "this.plain == 1"}), ("find", {"plain": {"$where": "1"}}),
                 ("find", {'a"b': 1}), ("find", {"a.$where": 1}), ("find", {"$or": [{"$where": "1"}]})]
    for kind, spec in attempts:
        try:
            if kind == "find":
                assert store.find(coll, spec) == [] and store.count(coll, spec) == 0, spec
            elif kind == "sort":
                assert len(store.find(coll, {}, sort=spec)) == 2
            else:
                store.update(coll, {"_id": "p"}, spec)
        except QueryError:
            pass
    # the weird key and value are data: reachable by an exact query, and nothing was dropped
    assert ids(store.find(coll, {weird_key: "v'); DROP TABLE x; --"})) == ["w"]
    assert store.count(coll, {}) == 2
    assert conn.execute("SELECT to_regclass(%s)", [f'"c_{coll}"']).fetchone()[0] is not None
    for bad_name in ["x; DROP TABLE c_victim", 'a"b', "orders'--", "a" * 64]:
        with pytest.raises(QueryError):
            store.find(bad_name, {})
    texts = "\n".join(rec.texts)
    assert "SELECT" in texts and "ds_test" in texts
    for user_value in [*PAYLOADS, weird_key, "this.plain", 'a"b', "v'); DROP"]:
        assert user_value not in texts, user_value


# ----------------------------------------------------------------------------------------- rules

U1, U2 = "2088000000000001", "2088000000000002"


def test_rules_keep_each_user_to_their_documents(conn):
    store, coll = DocStore(conn), coll_name("rules")
    own = data_rules.parse("doc._owner == auth.uid", "test.orders.read")
    store.add(coll, [{"_id": f"a{i}", "i": i} for i in range(3)], U1, rule=own, auth={"uid": U1})
    store.add(coll, [{"_id": f"b{i}", "i": i} for i in range(2)], U2, rule=own, auth={"uid": U2})
    store.add(coll, [{"_id": "server", "i": 9}], None)
    for uid, mine in ((U1, ["a0", "a1", "a2"]), (U2, ["b0", "b1"])):
        auth = {"uid": uid}
        assert ids(store.find(coll, {}, sort=[["_id", 1]], rule=own, auth=auth)) == mine
        assert store.count(coll, {}, rule=own, auth=auth) == len(mine)
        assert store.count(coll, {"i": 0}, rule=own, auth=auth) == 1
    assert store.find(coll, {}, rule=own, auth=None) == [] and store.count(coll, {}, rule=own) == 0
    # writes under the rule reach only the caller's documents
    assert store.update(coll, {}, {"$set": {"seen": True}}, rule=own, auth={"uid": U2}) == 2
    assert store.remove(coll, {"_id": "a0"}, rule=own, auth={"uid": U2}) == 0
    assert store.count(coll, {"seen": True}) == 2
    with pytest.raises(Denied):
        store.add(coll, [{"_id": "forged"}], U1, rule=own, auth={"uid": U2})
    assert store.count(coll, {"_id": "forged"}) == 0
    nobody = data_rules.parse("false", "test.orders.read")
    assert store.find(coll, {}, rule=nobody, auth={"uid": U1}) == [] and store.count(coll, {}, rule=nobody) == 0
    assert nobody.always_false(True) and own.always_false(False) and not own.always_false(True)
    public = data_rules.parse("doc.kind == 'public' || (auth != null && doc._owner == auth.uid)", "test.read")
    store.add(coll, [{"_id": "pub", "kind": "public"}], U2)
    assert ids(store.find(coll, {}, sort=[["_id", 1]], rule=public, auth=None)) == ["pub"]
    assert len(store.find(coll, {}, rule=public, auth={"uid": U1})) == 4


def test_an_update_may_not_move_a_document_out_of_the_writers_reach(conn):
    """The write rule holds for the documents an update leaves behind, not only for those it matched."""
    store, coll = DocStore(conn), coll_name("handover")
    shop = data_rules.parse("doc.shop == auth.uid", "test.shops.write")
    store.add(coll, [{"_id": "s1", "shop": U1, "n": 1}], U1)
    with pytest.raises(Denied):
        store.update(coll, {"_id": "s1"}, {"$set": {"shop": U2}}, rule=shop, auth={"uid": U1})
    assert store.find(coll, {"_id": "s1"})[0]["shop"] == U1  # nothing of the refused update stays
    assert store.update(coll, {"_id": "s1"}, {"$inc": {"n": 1}}, rule=shop, auth={"uid": U1}) == 1
    assert store.find(coll, {"_id": "s1"})[0]["n"] == 2


def test_rule_errors_name_where_and_column():
    with pytest.raises(ValueError, match=r"data\.rules\.orders\.read: column 12: .*==") as err:
        data_rules.parse("doc._owner != auth.uid", "data.rules.orders.read")
    assert "column" in str(err.value)
    with pytest.raises(ValueError, match="column 1"):
        data_rules.parse("owner == auth.uid", "w")
    assert data_rules.parse("doc.a == 'x' && doc.a == 'y'", "w").always_false(True)


# ----------------------------------------------------------------------------- unknown operators


@pytest.mark.parametrize(("call", "op", "path"), [
    (lambda s, c: s.find(c, {"age": {"$where": "1"}}), "$where", "filter.age.$where"),
    (lambda s, c: s.find(c, {"$where": "1"}), "$where", "filter.$where"),
    (lambda s, c: s.count(c, {"$and": [{"tags": {"$size": 2}}]}), "$size", "filter.$and.0.tags.$size"),
    (lambda s, c: s.find(c, {"a": {"$not": {"$elemMatch": {}}}}), "$elemMatch", "filter.a.$not.$elemMatch"),
    (lambda s, c: s.update(c, {}, {"$rename": {"a": "b"}}), "$rename", "update.$rename"),
    (lambda s, c: s.update(c, {}, {"$push": {"l": {"$each": [1], "$slice": 2}}}), "$slice", "update.$push.l.$slice"),
    (lambda s, c: s.find(c, {}, projection={"l": {"$slice": 2}}), "$slice", "projection.l.$slice"),
])
def test_an_unknown_operator_names_itself_and_its_path(conn, call, op, path):
    store, coll = DocStore(conn), coll_name("ops")
    store.add(coll, [{"a": 1}], None)
    with pytest.raises(QueryError) as err:
        call(store, coll)
    assert err.value.code == "unsupported_operator"
    assert err.value.path == path
    assert op in str(err.value) and path in str(err.value)
