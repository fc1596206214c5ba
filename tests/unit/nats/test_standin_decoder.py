"""The stand-in's line-protocol decoder follows influxdata line-protocol v2 (the decoder
of the cc-backend 1.5.4 build), so the stand-in refuses what cc-backend refuses."""

from __future__ import annotations

import pytest

from cc_slurm_adapter.testing.ccbackend.natsjobs import LineError, ProtocolLine, decode_lines


def one(data: bytes) -> ProtocolLine:
    lines = list(decode_lines(data))
    assert len(lines) == 1
    assert isinstance(lines[0], ProtocolLine), lines[0]
    return lines[0]


def test_string_field_escapes() -> None:
    # fieldStringValEscapes = `\"`: only \\ and \" are escapes; "\n" stays two characters
    line = one(b'job,function=start_job event="a\\\\b\\"c\\nd\\x" 5')
    assert line.fields["event"] == 'a\\b"c\\nd\\x'
    assert line.time_ns == 5


def test_tags_fields_and_raw_newline_in_string() -> None:
    line = one(b'job,function=stop_job,host\\ name=a\\,b x=1i,event="l1\nl2",ok=t')
    assert line.tags == {"function": "stop_job", "host name": "a,b"}
    assert line.fields == {"x": 1, "event": "l1\nl2", "ok": True}
    assert line.time_ns is None


def test_several_lines_and_comments() -> None:
    lines = list(decode_lines(b'# c\njob,function=start_job event="1"\n\n'
                              b'job,function=stop_job event="2" 9\n'))
    assert [(x.tags["function"], x.fields["event"]) for x in lines
            if isinstance(x, ProtocolLine)] == [("start_job", "1"), ("stop_job", "2")]


@pytest.mark.parametrize("data", [
    b'job,function=start_job event="{"jobId":1}"',  # unescaped quote ends the string
    b'job,function=start_job event="open',
    b'job,function= event="x"',
    b"job,function=start_job",
    b'job event="\xff"',
    b'job event="x" 12ab',
])
def test_refused(data: bytes) -> None:
    lines = list(decode_lines(data))
    assert any(isinstance(x, LineError) for x in lines)
