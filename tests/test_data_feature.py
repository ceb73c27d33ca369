"""The data API in the editor, from a snapshot (pure logic; the live index is in test_data_docker.py):
collection names, sampled fields at a query's keys and in orderBy, operators after `$`, the hover, and
the diagnostics (unsupported operator, unknown field, a front end's query its read rule refuses)."""

from __future__ import annotations

from lsprotocol import types

from deploy_bridge.services.mongo_ops import FILTER_OPERATORS, UPDATE_OPERATORS
from lsp_server.features.base import Context
from lsp_server.features.data import DataFeature, query_at, top_level_keys
from lsp_server.index import Snapshot

SNAP = Snapshot(env="test", app="shop",
                collections={"orders": {"count": 1234, "fields": {"status": "string", "total": "number",
                                                                  "address.city": "string", "items": "array"}},
                             "users": {"count": 2, "fields": {"name": "string"}}},
                collection_rules={"orders": {"read": "doc._owner == auth.uid", "write": "doc._owner == auth.uid"},
                                  "secrets": {"read": "false"}})


def complete(text: str, language: str = "javascript", uri: str = "file:///w/app/server.js") -> list[str]:
    offset = text.index("|")
    text = text.replace("|", "")
    before = text[:offset]
    line = before.count("\n")
    ctx = Context(uri, language, text, line, len(before) - before.rfind("\n") - 1, SNAP)
    feature = DataFeature()
    ctx.match = feature.completion_trigger.match(ctx)
    return [item.label for item in feature.completion(ctx)]


def test_collection_names_in_collection_calls():
    assert complete("db.collection('|") == ["orders", "secrets", "users"]
    assert complete('cloud.database().collection("or|', "python") == ["orders", "secrets", "users"]


def test_fields_at_a_key_of_where_update_and_in_order_by():
    fields = {"status", "total", "address.city", "items", "_id", "_owner"}
    assert set(complete("db.collection('orders').where({ st|")) == fields
    assert set(complete("db.collection('orders').where({\n  status: 'paid',\n  to|")) == fields
    assert set(complete("db.collection('orders').orderBy('|")) == fields
    assert set(complete("db.collection('users').doc(id).update({ data: { na|")) == {"name", "_id", "_owner"}
    assert complete("db.collection('orders').where({ status: 'x' }).get();\nconst y = { st|") == []
    assert complete("const y = { st|") == []


def test_operators_after_a_dollar_follow_the_kind_of_object():
    assert set(complete("db.collection('orders').where({ total: { $g|")) == set(FILTER_OPERATORS)
    assert set(complete("db.collection('orders').where({ status: 'x' }).update({ $|")) == set(UPDATE_OPERATORS)


def test_query_context():
    assert query_at("db.collection('orders').where({ a: 1, ") == ("orders", "filter")
    assert query_at("db.collection('orders').where({ a: 1 }).get()") is None
    assert query_at("db.collection('orders').add({ data: { ") == ("orders", "data")


def test_top_level_keys_skip_nested_objects_and_strings():
    text = "{ status: 'a,b: c', 'address.city': { $in: ['x'] }, total: 3 }"
    assert [k for k, _ in top_level_keys(text, 0)] == ["status", "address.city", "total"]


def hover(text: str) -> str:
    offset = text.index("|")
    text = text.replace("|", "")
    ctx = Context("file:///w/a.js", "javascript", text, 0, offset, SNAP)
    found = DataFeature().hover(ctx)
    return found.contents.value if found else ""


def test_hover_shows_count_fields_and_rules():
    text = hover("db.collection('ord|ers').get()")
    assert "1,234 documents" in text and "`address.city` | string" in text and "doc._owner == auth.uid" in text
    assert "no rules" in hover("db.collection('us|ers').get()")


def diagnose(text: str, uri: str = "file:///w/app/server.js") -> list[types.Diagnostic]:
    return DataFeature().diagnostics(uri, "javascript", text, SNAP)


def test_unsupported_operator_is_an_error_naming_it():
    found = diagnose("db.collection('orders').where({ total: { $where: 'x' } }).get();")
    assert [d.code for d in found] == ["unsupported-operator"]
    assert found[0].severity == types.DiagnosticSeverity.Error and "$where" in found[0].message
    assert diagnose("db.collection('orders').where({ total: { $gte: 5 }, status: { $in: ['a'] } }).get();") == []


def test_a_field_no_document_has_is_a_hint():
    found = diagnose("db.collection('orders').where({ stauts: 'paid', address: 1, total: 2 }).get();")
    assert [(d.code, d.severity) for d in found] == [("unknown-field", types.DiagnosticSeverity.Hint)]
    assert "stauts" in found[0].message


def test_a_front_end_query_its_read_rule_refuses_is_a_warning():
    front = "file:///w/app/miniprogram/pages/index.js"
    assert [d.code for d in diagnose("db.collection('secrets').get();", front)] == ["rule-denies"]
    assert [d.code for d in diagnose("db.collection('users').get();", front)] == ["rule-denies"]  # no rule
    assert diagnose("db.collection('orders').get();", front) == []
    assert diagnose("db.collection('secrets').get();") == []  # server code: the server credential reads it
