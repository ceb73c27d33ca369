"""`--since` and `--tail` values: anything unusable is BadInput (exit code 2) naming the option, never
a traceback. No engine needed."""

from __future__ import annotations

import datetime as dt

import pytest

from deploy_bridge.errors import MinicloudError
from deploy_bridge.logs import parse_since, parse_tail

NOW = dt.datetime(2026, 1, 1, 12, 0, tzinfo=dt.UTC)


def test_durations_and_iso_times():
    assert parse_since("30s", NOW) == NOW - dt.timedelta(seconds=30)
    assert parse_since(" 1 d ", NOW) == NOW - dt.timedelta(days=1)
    assert parse_since("2026-01-01T10:00:00Z", NOW) == dt.datetime(2026, 1, 1, 10, tzinfo=dt.UTC)
    assert parse_since("2026-01-01T10:00:00", NOW) == dt.datetime(2026, 1, 1, 10, tzinfo=dt.UTC)
    assert parse_since(None, NOW) is None and parse_since("", NOW) is None


OUT_OF_RANGE = ["99999999999d", "999999999999999999999s", "800000d", "9" * 5000 + "s"]


@pytest.mark.parametrize("text", [*OUT_OF_RANGE, "-5m", "10 minutes", "yesterday", "2026-13-01", "1.5h", "١٠m", "  "])
def test_unusable_since_is_bad_input_naming_the_option_and_the_forms(text: str):
    with pytest.raises(MinicloudError) as err:
        parse_since(text, NOW)
    assert type(err.value).__name__ == "BadInput" and err.value.exit_code == 2
    message = err.value.render()
    assert "--since" in message and "10m" in message and "ISO time" in message
    if text in OUT_OF_RANGE:
        assert "out of range" in message


def test_tail():
    assert parse_tail("0") == 0 and parse_tail("100") == 100 and parse_tail(" 7 ") == 7
    for text in ["-1", "- 3", "ten", "1.5", "", "99999999999999999999999"]:
        with pytest.raises(MinicloudError) as err:
            parse_tail(text)
        assert type(err.value).__name__ == "BadInput" and err.value.exit_code == 2, text
        assert "--tail" in err.value.render(), text
    with pytest.raises(MinicloudError) as err:
        parse_tail("-1")
    assert "negative" in err.value.render()
    with pytest.raises(MinicloudError) as err:
        parse_tail("9" * 30)
    assert "too large" in err.value.render()
