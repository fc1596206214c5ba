"""The line-protocol job event (contract §9.2, behaviour §5) and the Nats-Msg-Id."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest
from hypothesis import given
from hypothesis import strategies as st

from cc_slurm_adapter.nats import event_message, message_id
from cc_slurm_adapter.nats import message as message_module
from cc_slurm_adapter.testing.ccbackend.natsjobs import LineError, decode_lines


@pytest.fixture(autouse=True)
def host(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setattr("socket.gethostname", lambda: "adapter01")
    message_module._static_tags.cache_clear()
    yield
    message_module._static_tags.cache_clear()


def test_start_message_is_upstreams_format() -> None:
    # behaviour §5: job,function=start_job,hostname=<host>,type=node,type-id=0
    # event="<escaped JSON>" <startTime in ns>
    payload = b'{"jobId":7,"cluster":"c","startTime":1700000000}'
    assert event_message("start_job", payload) == (
        b'job,function=start_job,hostname=adapter01,type=node,type-id=0 '
        b'event="{\\"jobId\\":7,\\"cluster\\":\\"c\\",\\"startTime\\":1700000000}" '
        b'1700000000000000000')


def test_stop_message_takes_the_stop_time() -> None:
    payload = b'{"jobId":7,"cluster":"c","jobState":"failed","stopTime":1700000600}'
    line = event_message("stop_job", payload)
    assert line.startswith(b"job,function=stop_job,hostname=adapter01,type=node,type-id=0 ")
    assert line.endswith(b'" 1700000600000000000')


def test_backslashes_and_quotes_are_escaped_nothing_else() -> None:
    # JSON escapes \" \\ \n stay JSON escapes after the line-protocol decoder's
    # \\ -> \ and \" -> " (influxdata line-protocol v2)
    payload = json.dumps({"n": 'a"b\\c\nd\tü'}, ensure_ascii=False).encode()
    assert payload == b'{"n": "a\\"b\\\\c\\nd\\t\xc3\xbc"}'
    line = event_message("start_job", payload)
    assert b' event="{\\"n\\": \\"a\\\\\\"b\\\\\\\\c\\\\nd\\\\t\xc3\xbc\\"}"' in line
    assert line.endswith(b'}"')  # no startTime in the payload: no timestamp


@pytest.mark.parametrize("payload", [
    b'{"startTime":1.5}', b'{"startTime":"1700000000"}', b'{"startTime":-1}',
    b'{"startTime":99999999999999999}', b"[1,2]", b"not json", b""])
def test_no_usable_time_no_timestamp(payload: bytes) -> None:
    line = event_message("start_job", payload)
    assert line.endswith(b'"')


def test_unknown_kind() -> None:
    with pytest.raises(ValueError, match="unknown NATS job event"):
        event_message("nodestate", b"{}")  # type: ignore[arg-type]


@pytest.mark.parametrize(("host", "tag"), [
    ("node 1,x=y", b",hostname=node\\ 1\\,x\\=y,"), ("a\nb", b",hostname=ab,"),
    ("", b"job,function=start_job,type=node,")])
def test_hostname_tag_escaped_or_left_out(monkeypatch: pytest.MonkeyPatch, host: str,
                                          tag: bytes) -> None:
    monkeypatch.setattr("socket.gethostname", lambda: host)
    message_module._static_tags.cache_clear()
    line = event_message("start_job", b"{}")
    assert tag in line
    decoded = next(decode_lines(line))
    assert not isinstance(decoded, LineError)
    assert decoded.tags.get("function") == "start_job"


def test_message_id() -> None:
    assert message_id("testcluster", 123, 1700000000, "start_job") == \
        "testcluster:123:1700000000:start_job"
    # a cluster name cannot forge another event's id, nor break the header line
    assert message_id("a:1", 2, 3, "stop_job") == "a%3A1:2:3:stop_job"
    assert "\n" not in message_id("a\r\nb", 1, 2, "stop_job")
    assert message_id("c", 1, 2, "start_job") != message_id("c", 1, 2, "stop_job")


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner,
                                                                max_size=4),
    max_leaves=12)


@given(st.dictionaries(st.text(), json_values, max_size=6), st.booleans())
def test_decoder_gives_back_the_payload(doc: dict[str, object], ascii_only: bool) -> None:
    payload = json.dumps(doc, ensure_ascii=ascii_only).encode()
    lines = list(decode_lines(event_message("stop_job", payload)))
    assert len(lines) == 1
    line = lines[0]
    assert not isinstance(line, LineError), line
    assert line.measurement == "job"
    assert line.tags == {"function": "stop_job", "hostname": "adapter01", "type": "node",
                         "type-id": "0"}
    assert line.fields == {"event": payload.decode()}
