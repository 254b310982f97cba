"""Keys and values to typed changes: every topic, deletes, corrupt values, scopes."""

from __future__ import annotations

import pytest

from fleet.core.model import DesiredState, Job, Machine, PlacementReason, UnitState
from fleet.ports import (
    BodyChanged,
    GlobalChanged,
    JobChanged,
    Leader,
    LeaderChanged,
    MachineChanged,
    MetadataChanged,
    ReasonChanged,
    RegistryEvent,
    ScheduleChanged,
    Scope,
    Topic,
    UnitStateChanged,
)
from fleet.registry import codec
from fleet.registry.decoding import decode, scope_prefix
from fleet.registry.keys import Keys

HASH = "a" * 40
JOB = Job("a.service", HASH, DesiredState.LAUNCHED)
MACHINE = Machine("m1", "10.0.0.1", {"role": "web"})
WHY = PlacementReason("no machine", HASH, DesiredState.LAUNCHED, "0123456789abcdef")
STATE = UnitState("a.service", "m1", "loaded", "active", "running", HASH, DesiredState.LAUNCHED)


@pytest.mark.parametrize(
    ("topic", "key", "raw", "want"),
    [
        pytest.param(Topic.JOBS, "job/a.service", codec.encode_job(JOB),
                     JobChanged("a.service", JOB, 7), id="job"),
        pytest.param(Topic.JOBS, "job/a.service", None, JobChanged("a.service", None, 7),
                     id="job-deleted"),
        pytest.param(Topic.BODIES, f"unit/{HASH}", codec.encode_body("[Unit]\n"),
                     BodyChanged(HASH, "[Unit]\n", 7), id="body"),
        pytest.param(Topic.GLOBALS, "global/a.service", codec.encode_job(JOB),
                     GlobalChanged("a.service", JOB, 7), id="global"),
        pytest.param(Topic.SCHEDULE, "schedule/m1/a.service",
                     codec.encode_schedule(HASH, DesiredState.LAUNCHED),
                     ScheduleChanged("m1", "a.service", JOB, 7), id="schedule"),
        pytest.param(Topic.SCHEDULE, "schedule/m1/a.service", None,
                     ScheduleChanged("m1", "a.service", None, 7), id="unscheduled"),
        pytest.param(Topic.MACHINES, "machine/m1", codec.encode_machine(MACHINE),
                     MachineChanged("m1", MACHINE, 7), id="machine"),
        pytest.param(Topic.METADATA, "machine-metadata/m1/disk", codec.encode_metadata_value(None),
                     MetadataChanged("m1", "disk", None, 7), id="metadata-tombstone"),
        pytest.param(Topic.METADATA, "machine-metadata/m1/disk", None,
                     MetadataChanged("m1", "disk", None, 7, removed=True), id="metadata-removed"),
        pytest.param(Topic.STATES, "state/a.service/m1", codec.encode_state(STATE),
                     UnitStateChanged("a.service", "m1", STATE, 7), id="state"),
        pytest.param(Topic.REASONS, "reason/a.service", codec.encode_reason(WHY),
                     ReasonChanged("a.service", WHY, 7), id="reason"),
        pytest.param(Topic.REASONS, "reason/a.service", b'{"v":1,"reason":"no machine"}',
                     ReasonChanged("a.service", PlacementReason("no machine"), 7),
                     id="reason-without-context"),
        pytest.param(Topic.LEADER, "engine/leader", codec.encode_leader("m1", "0.1.0", 5),
                     LeaderChanged(Leader("m1", "0.1.0"), 7), id="leader"),
        pytest.param(Topic.LEADER, "engine/leader", None, LeaderChanged(None, 7),
                     id="leader-vacant"),
    ],
)  # fmt: skip
def test_each_topic_decodes_to_its_change(
    topic: Topic, key: str, raw: bytes | None, want: RegistryEvent
) -> None:
    assert decode(topic, key, raw, 7) == want


@pytest.mark.parametrize(
    ("topic", "key", "raw"),
    [
        pytest.param(Topic.JOBS, "job/broken.service", b"not json", id="corrupt-json"),
        pytest.param(Topic.SCHEDULE, "schedule/m1", b"{}", id="malformed-key"),
        pytest.param(Topic.MACHINES, "machine/m1", b'{"v":1}', id="missing-field"),
    ],
)
def test_a_value_that_cannot_be_decoded_is_dropped_and_logged(
    topic: Topic, key: str, raw: bytes, caplog: pytest.LogCaptureFixture
) -> None:
    assert decode(topic, key, raw, 1) is None
    assert key in caplog.text


def test_scopes_map_to_the_schema_prefixes() -> None:
    keys = Keys("/p")
    assert scope_prefix(keys, Scope(Topic.JOBS)) == b"/p/job/"
    assert scope_prefix(keys, Scope.schedule_of("m1")) == b"/p/schedule/m1/"
    assert scope_prefix(keys, Scope(Topic.SCHEDULE)) == b"/p/schedule/"
    assert scope_prefix(keys, Scope.metadata_of("m1")) == b"/p/machine-metadata/m1/"
    assert scope_prefix(keys, Scope(Topic.LEADER)) == b"/p/engine/leader"


def test_only_per_machine_topics_narrow_to_a_machine() -> None:
    with pytest.raises(ValueError, match="cannot be narrowed"):
        Scope(Topic.JOBS, "m1")
