"""The shared vocabulary: desired states, machines, unit records and unit states.

These frozen dataclasses are what the registry stores, what the engine and
agent reason about, what the API serialises and what fleetctl renders.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from enum import StrEnum


class DesiredState(StrEnum):
    """fleet's cluster states, in order: a unit steps through them one by one."""

    INACTIVE = "inactive"
    LOADED = "loaded"
    LAUNCHED = "launched"

    @property
    def rank(self) -> int:
        return _RANK[self]


_RANK = {DesiredState.INACTIVE: 0, DesiredState.LOADED: 1, DesiredState.LAUNCHED: 2}


@dataclass(frozen=True, slots=True)
class Machine:
    """A live machine as its agent published it (plus dynamic metadata)."""

    id: str
    public_ip: str = ""
    metadata: Mapping[str, str] = field(default_factory=dict)
    version: str = ""
    capabilities: Mapping[str, bool] = field(default_factory=dict)
    # None, or the reason (maybe "") it is cordoned: nothing new is placed on it.
    cordon: str | None = None

    @property
    def short_id(self) -> str:
        return self.id[:8]

    def overlaid(self, dynamic: Mapping[str, str | None]) -> Machine:
        """This machine with dynamic metadata (API PATCH) over its configured one:
        dynamic values win, ``None`` (fleet's ``""`` tombstone) removes a key."""
        if not dynamic:
            return self
        metadata = dict(self.metadata)
        for key, value in dynamic.items():
            if value is None:
                metadata.pop(key, None)
            else:
                metadata[key] = value
        return replace(self, metadata=metadata)

    def cordoned(self, reason: str | None) -> Machine:
        """This machine with its cordon (None: not cordoned)."""
        return self if reason == self.cordon else replace(self, cordon=reason)

    def matches_id(self, wanted: str) -> bool:
        """fleet's MatchID: the full id or its 8-character short form."""
        return wanted == self.id or (len(wanted) == 8 and wanted == self.short_id)


@dataclass(frozen=True, slots=True)
class LostMachine:
    """A machine whose presence expired without it leaving on purpose (issue 11):
    what it last published, and since when (wall clock) an engine saw it gone
    (None: no engine has noticed yet)."""

    machine: Machine
    since: float | None


@dataclass(frozen=True, slots=True)
class EtcdMember:
    """One etcd cluster member and how it answered a status request."""

    id: str  # hex, as etcdctl prints it
    name: str
    client_urls: tuple[str, ...]
    healthy: bool
    leader: bool = False
    version: str = ""
    db_size: int = 0
    error: str = ""  # why it is not healthy


@dataclass(frozen=True, slots=True)
class ClusterInfo:
    """The cluster beyond its live machines and units: who leads the engine, which
    machines are lost, and (when asked) etcd's members."""

    leader: tuple[str, str] | None  # (machine id, engine version)
    lost: tuple[LostMachine, ...] = ()
    etcd_members: tuple[EtcdMember, ...] = ()


@dataclass(frozen=True, slots=True)
class Job:
    """The desired-state record of one unit (`job/<name>` in etcd)."""

    name: str
    hash: str  # sha1 hex of the canonical unit file body
    desired_state: DesiredState


def machine_set_fingerprint(machines: Iterable[Machine]) -> str:
    """A short digest of which machines there are and their metadata: what a
    placement verdict was judged against."""
    import hashlib  # OpenSSL's start-up: only the engine and unit views pay for it

    digest = hashlib.sha1(usedforsecurity=False)
    for machine in sorted(machines, key=lambda m: m.id):
        digest.update(machine.id.encode())
        for key in sorted(machine.metadata):
            digest.update(f"\0{key}={machine.metadata[key]}".encode())
        if machine.cordon is not None:
            digest.update(b"\0\0cordoned")
        digest.update(b"\n")
    return digest.hexdigest()[:16]


@dataclass(frozen=True, slots=True)
class PlacementReason:
    """Why the engine could not place a unit, and what it judged: the unit's content
    (``hash``), its ``desired`` state and the machine set (``machines``, a
    :func:`machine_set_fingerprint`). A change to any of them makes the reason
    stale: it no longer explains anything and is not reported (the engine's next
    pass gives a new verdict). A reason without context (written by an older
    engine) is taken as it is."""

    text: str
    hash: str = ""
    desired: DesiredState | None = None
    machines: str = ""

    def explains(self, job: Job, machines: str) -> bool:
        if not self.hash:
            return True
        return (
            self.hash == job.hash
            and self.desired is job.desired_state
            and self.machines == machines
        )


@dataclass(frozen=True, slots=True)
class UnitState:
    """systemd's view of one unit on one machine, as that machine's agent published it.

    ``fleet_state`` is what the agent has done with the unit (``loaded`` or
    ``launched``); fleet's currentState is derived from it. Beyond fleet, so that
    a launch has an honest outcome (:func:`fleet.core.outcome.launch_outcome`):
    ``result`` is systemd's Result of the unit (``success``, ``exit-code``, ...;
    "" when unknown), ``start_result`` the result of the start job the agent
    last queued for it (``done``, ``failed``, ...; ``queued`` while it runs, ""
    when there was none), and ``error`` the agent's last failed action on it ("" if
    none).
    """

    name: str
    machine_id: str
    load_state: str
    active_state: str
    sub_state: str
    hash: str
    fleet_state: DesiredState = DesiredState.LOADED
    result: str = ""
    start_result: str = ""
    error: str = ""
