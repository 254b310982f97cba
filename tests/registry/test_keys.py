"""The key schema and value codec, without etcd."""

from __future__ import annotations

import pytest

from fleet.core.model import DesiredState, Job, Machine, PlacementReason, UnitState
from fleet.errors import InvalidInput, InvalidUnitName, StoreError
from fleet.registry import codec
from fleet.registry.keys import Keys, normalise_prefix, range_end

HASH = "a" * 40


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        pytest.param("/_coreos.com/fleet/", "/_coreos.com/fleet/", id="already-normal"),
        pytest.param("/_coreos.com/fleet", "/_coreos.com/fleet/", id="adds-slash"),
        pytest.param("fleet", "fleet/", id="relative"),
    ],
)
def test_prefix_is_normalised(given: str, expected: str) -> None:
    assert normalise_prefix(given) == expected
    assert Keys(given).job("a.service") == f"{expected}job/a.service".encode()


@pytest.mark.parametrize(
    ("build", "expected"),
    [
        pytest.param(lambda k: k.unit(HASH), f"unit/{HASH}", id="unit"),
        pytest.param(lambda k: k.job("a.service"), "job/a.service", id="job"),
        pytest.param(lambda k: k.global_unit("g.service"), "global/g.service", id="global"),
        pytest.param(lambda k: k.schedule("m1", "a.service"), "schedule/m1/a.service", id="sched"),
        pytest.param(lambda k: k.schedules("m1"), "schedule/m1/", id="sched-prefix"),
        pytest.param(lambda k: k.reason("a.service"), "reason/a.service", id="reason"),
        pytest.param(lambda k: k.machine("m1"), "machine/m1", id="machine"),
        pytest.param(
            lambda k: k.machine_metadata("m1", "az"), "machine-metadata/m1/az", id="metadata"
        ),
        pytest.param(lambda k: k.state("a.service", "m1"), "state/a.service/m1", id="state"),
        pytest.param(lambda k: k.engine_leader(), "engine/leader", id="leader"),
    ],
)
def test_key_builders(build: object, expected: str) -> None:
    keys = Keys("/p/")
    assert callable(build)
    assert build(keys) == b"/p/" + expected.encode()


@pytest.mark.parametrize(
    ("build", "error"),
    [
        pytest.param(lambda k: k.job("a/b.service"), InvalidUnitName, id="slash-in-name"),
        pytest.param(lambda k: k.job(""), InvalidUnitName, id="empty-name"),
        pytest.param(lambda k: k.state("x\x00.service", "m"), InvalidUnitName, id="nul-in-name"),
        pytest.param(lambda k: k.schedule("m/1", "a.service"), InvalidInput, id="slash-in-id"),
        pytest.param(lambda k: k.unit("../etc"), InvalidInput, id="bad-hash"),
        pytest.param(lambda k: k.unit("A" * 40), InvalidInput, id="uppercase-hash"),
        pytest.param(lambda k: k.machine_metadata("m", "a/b"), InvalidInput, id="slash-in-meta"),
    ],
)
def test_key_builders_reject_unsafe_segments(build: object, error: type[Exception]) -> None:
    assert callable(build)
    with pytest.raises(error):
        build(Keys("/p/"))


@pytest.mark.parametrize(
    ("parse", "relative", "expected"),
    [
        pytest.param(Keys.parse_schedule_key, "schedule/m1/a.service", ("m1", "a.service"), id="s"),
        pytest.param(Keys.parse_state_key, "state/a.service/m1", ("a.service", "m1"), id="state"),
        pytest.param(Keys.parse_metadata_key, "machine-metadata/m1/az", ("m1", "az"), id="meta"),
    ],
)
def test_key_parsers(parse: object, relative: str, expected: tuple[str, str]) -> None:
    assert callable(parse)
    assert parse(relative) == expected


@pytest.mark.parametrize(
    "relative",
    ["schedule/m1", "schedule//a.service", "schedule/m1/a/b", "job/a.service"],
    ids=["no-name", "empty-id", "extra-segment", "wrong-kind"],
)
def test_schedule_parser_rejects_malformed(relative: str) -> None:
    with pytest.raises(InvalidInput):
        Keys.parse_schedule_key(relative)


@pytest.mark.parametrize(
    ("prefix", "end"),
    [(b"a/", b"a0"), (b"a\xff", b"b"), (b"\xff", b"\x00")],
    ids=["plain", "carry", "all"],
)
def test_range_end(prefix: bytes, end: bytes) -> None:
    assert range_end(prefix) == end


@pytest.mark.parametrize(
    ("value", "encode", "decode"),
    [
        pytest.param(
            Job("a.service", HASH, DesiredState.LAUNCHED),
            codec.encode_job,
            lambda raw: codec.decode_job(raw, "k"),
            id="job",
        ),
        pytest.param(
            Machine("m1", "10.0.0.1", {"az": "a"}, "1.0", {"DISABLE_ENGINE": False}),
            codec.encode_machine,
            lambda raw: codec.decode_machine(raw, "k"),
            id="machine",
        ),
        pytest.param(
            UnitState("a.service", "m1", "loaded", "active", "running", HASH),
            codec.encode_state,
            lambda raw: codec.decode_state(raw, "a.service", "m1", "k"),
            id="state",
        ),
        pytest.param(
            "[Service]\nExecStart=/bin/true\n",
            codec.encode_body,
            lambda raw: codec.decode_body(raw, "k"),
            id="body",
        ),
        pytest.param(
            PlacementReason("no machine", "a" * 40, DesiredState.LOADED, "0123456789abcdef"),
            codec.encode_reason,
            lambda raw: codec.decode_reason(raw, "k"),
            id="reason",
        ),
    ],
)
def test_codec_round_trip(value: object, encode: object, decode: object) -> None:
    assert callable(encode)
    assert callable(decode)
    raw = encode(value)
    assert b'"v":1' in raw
    assert decode(raw) == value


@pytest.mark.parametrize(
    "raw",
    [b"not json", b"[]", b'{"name":"a"}', b'{"v":1,"name":"a","hash":"x","desired":"bogus"}'],
    ids=["not-json", "not-object", "unversioned", "bad-desired"],
)
def test_codec_reports_corrupt_values(raw: bytes) -> None:
    with pytest.raises(StoreError, match="corrupt value at job/a"):
        codec.decode_job(raw, "job/a")
