"""Property-based tests: value encodings, hostlists, IDX ranges, gres_detail."""

from __future__ import annotations

import hostlist
from hypothesis import given
from hypothesis import strategies as st

from cc_slurm_adapter.slurm.gres import gpus_from_detail, parse_gres_detail
from cc_slurm_adapter.slurm.parse import parse_exit_code
from cc_slurm_adapter.slurm.values import (
    BASE_STATES,
    as_epoch,
    as_int,
    as_str,
    expand_hostlist,
    is_infinite,
    parse_index_list,
    split_state,
)

ints = st.integers(min_value=0, max_value=2**31)
anything = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner,
                                                                  max_size=3),
    max_leaves=10)


@given(ints)
def test_int_encodings_agree(n: int) -> None:
    assert as_int(n) == as_int({"set": True, "infinite": False, "number": n}) == n
    assert as_int(str(n)) == n


@given(ints)
def test_unset_and_infinite_structs(n: int) -> None:
    assert as_int({"set": False, "infinite": False, "number": n}) is None
    assert as_int({"set": True, "infinite": True, "number": n}) is None
    assert is_infinite({"set": True, "infinite": True, "number": n})


@given(anything)
def test_accessors_never_raise(value: object) -> None:
    as_int(value)
    as_epoch(value)
    as_str(value)
    split_state(value)
    expand_hostlist(value)
    parse_exit_code(value)


def test_sentinels_and_special_values() -> None:
    values: tuple[object, ...] = (None, {}, [], 4294967294, 4294967295, 2**64 - 2,
                                  "Infinity", "NaN", True)
    for v in values:
        assert as_int(v) is None
    assert is_infinite(4294967295) and not is_infinite(4294967294)
    assert as_epoch(0) is None and as_epoch({"set": True, "infinite": False, "number": 0}) is None
    assert as_epoch(1700000000) == 1700000000


@given(st.text(alphabet="ABCDEFGHIJKLMNOPQRSTUVWXYZ_", min_size=1, max_size=12),
       st.lists(st.text(alphabet="ABCDEFGHIJKLMNOPQRSTUVWXYZ_", min_size=1, max_size=12),
                max_size=3))
def test_state_string_or_list(base: str, flags: list[str]) -> None:
    states = ["RUNNING", "PENDING", "COMPLETED", "TIMEOUT", "NODE_FAIL"]
    real = states[len(base) % len(states)]
    extra = [f for f in flags if f not in BASE_STATES]  # a flag is never a base state
    assert split_state(real) == (real, ())
    assert split_state([real, *extra]) == (real, tuple(extra))
    assert split_state([*extra, real]) == (real, tuple(extra))


@given(st.lists(st.integers(min_value=0, max_value=5000), min_size=1, max_size=60, unique=True))
def test_index_list_roundtrip(indices: list[int]) -> None:
    indices.sort()
    ranges: list[str] = []
    start = prev = indices[0]
    for i in [*indices[1:], None]:
        if i is not None and i == prev + 1:
            prev = i
            continue
        ranges.append(f"{start}-{prev}" if prev != start else str(start))
        if i is not None:
            start = prev = i
    assert parse_index_list(",".join(ranges)) == tuple(indices)


@given(st.text(max_size=20))
def test_index_list_never_raises(text: str) -> None:
    result = parse_index_list(text)
    assert result is None or all(i >= 0 for i in result)


hostnames = st.builds(lambda p, n, w: f"{p}{n:0{w}d}",
                      st.sampled_from(["n", "gpu", "cn-a", "node"]),
                      st.integers(min_value=0, max_value=999),
                      st.integers(min_value=1, max_value=4))


@given(st.lists(hostnames, min_size=1, max_size=40, unique=True))
def test_hostlist_roundtrip(hosts: list[str]) -> None:
    compressed = hostlist.collect_hostlist(hosts)
    assert sorted(expand_hostlist(compressed) or ()) == sorted(hosts)


@given(st.lists(st.tuples(st.sampled_from([None, "a100", "h100", "rtx-6000"]),
                          st.lists(st.integers(min_value=0, max_value=15), min_size=0,
                                   max_size=8, unique=True)),
                min_size=1, max_size=3))
def test_gres_detail_roundtrip(groups: list[tuple[str | None, list[int]]]) -> None:
    parts: list[str] = []
    want: list[tuple[int, str | None]] = []
    for gtype, idx in groups:
        idx.sort()
        head = f"gpu:{gtype}:{len(idx)}" if gtype else f"gpu:{len(idx)}"
        parts.append(f"{head}(IDX:{','.join(map(str, idx))})")
        want.extend((i, gtype) for i in idx)
    text = ",".join(parts)
    got = gpus_from_detail(text)
    assert got is not None
    assert [(g.index, g.type) for g in got] == want
    entries = parse_gres_detail(text)
    assert entries is not None and len(entries) == len(groups)


@given(st.text(max_size=40))
def test_gres_never_raises(text: str) -> None:
    gpus_from_detail(text)


def test_gres_special_forms() -> None:
    assert gpus_from_detail("gpu:1(IDX:N/A)") == ()
    assert [g.index for g in gpus_from_detail("shard:2(1/4,1/4,0/4,0/4)") or ()] == [0, 1]
    assert [g.index for g in gpus_from_detail("gpu:tesla:2(S:0-1)(IDX:0-1)") or ()] == [0, 1]
    assert [g.type for g in gpus_from_detail("gpu:(null):2(IDX:0-1)") or ()] == [None, None]


def test_exit_code_raw_wait_status() -> None:
    ec = parse_exit_code(768)
    assert ec is not None and (ec.status, ec.return_code, ec.signal) == ("ERROR", 3, None)
    ec = parse_exit_code(15)
    assert ec is not None and (ec.status, ec.signal) == ("SIGNALED", 15)
    assert parse_exit_code(4294967295) is None  # 23.02.0-3 running job
    ec = parse_exit_code({"set": True, "infinite": False, "number": 256})
    assert ec is not None and ec.return_code == 1
