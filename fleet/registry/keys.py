"""The etcd v3 key schema: the one place that knows how fleet's keys are spelled.

Every key lives under the configurable ``etcd_key_prefix``; builders return
absolute ``bytes`` keys, parsers take keys relative to the prefix
(:mod:`fleet.registry.decoding` turns them into typed changes).
``docs/etcd-schema.md`` documents each key, its value, writer and lifetime.
A name is never allowed to contain ``/``: it would let one key impersonate
another (``schedule/<m>/<name>``), so the builders reject it even though
callers validate names first.
"""

from __future__ import annotations

from fleet.errors import InvalidInput, InvalidUnitName

DEFAULT_PREFIX = "/_coreos.com/fleet/"
"""fleet's default ``etcd_key_prefix``."""

UNIT = "unit/"
JOB = "job/"
GLOBAL = "global/"
SCHEDULE = "schedule/"
REASON = "reason/"
MACHINE = "machine/"
MACHINE_METADATA = "machine-metadata/"
MACHINE_SEEN = "machine-seen/"
STATE = "state/"
ENGINE_LEADER = "engine/leader"
ENGINE_VERSION = "engine/version"
MAINTENANCE = "maintenance/"
EVENTS = "events/"
EVENTS_UNIT, EVENTS_MACHINE = "unit", "machine"
CORDON, DRAIN, DRAIN_STATUS = "cordon", "drain", "drain-status"
MAINTENANCE_KINDS = (CORDON, DRAIN, DRAIN_STATUS)

_HEX = frozenset("0123456789abcdef")


def normalise_prefix(prefix: str) -> str:
    """fleet accepted ``etcd_key_prefix`` with or without the trailing slash."""
    if not prefix:
        raise InvalidInput("etcd key prefix must not be empty")
    return prefix if prefix.endswith("/") else prefix + "/"


def _unit_name(name: str) -> str:
    if not name or "/" in name or "\x00" in name:
        raise InvalidUnitName(f"invalid unit name {name!r} for an etcd key")
    return name


def _segment(what: str, value: str) -> str:
    if not value or "/" in value or "\x00" in value:
        raise InvalidInput(f"invalid {what} {value!r} for an etcd key")
    return value


def _hash(value: str) -> str:
    if len(value) != 40 or not _HEX.issuperset(value):
        raise InvalidInput(f"invalid unit hash {value!r}: want 40 lowercase hex digits")
    return value


def range_end(prefix: bytes) -> bytes:
    """The exclusive end of every key starting with ``prefix`` (etcd's prefix range)."""
    trimmed = prefix.rstrip(b"\xff")
    if not trimmed:
        return b"\x00"  # every key: etcd's "range to the end of the keyspace"
    return trimmed[:-1] + bytes([trimmed[-1] + 1])


class Keys:
    """Key builders and parsers for one ``etcd_key_prefix``."""

    def __init__(self, prefix: str) -> None:
        self.prefix_text = normalise_prefix(prefix)
        self.prefix = self.prefix_text.encode()

    def _key(self, relative: str) -> bytes:
        return self.prefix + relative.encode()

    def absolute(self, relative: str) -> bytes:
        """Any relative key or prefix (``job/``, ``schedule/<id>/``) made absolute."""
        if "\x00" in relative:
            raise InvalidInput(f"invalid key {relative!r}")
        return self._key(relative)

    def relative(self, key: bytes) -> str:
        if not key.startswith(self.prefix):
            raise InvalidInput(f"key {key!r} is outside prefix {self.prefix_text!r}")
        return key[len(self.prefix) :].decode()

    # --- builders -----------------------------------------------------------

    def unit(self, hash: str) -> bytes:
        return self._key(UNIT + _hash(hash))

    def units(self) -> bytes:
        return self._key(UNIT)

    def job(self, name: str) -> bytes:
        return self._key(JOB + _unit_name(name))

    def jobs(self) -> bytes:
        return self._key(JOB)

    def global_unit(self, name: str) -> bytes:
        return self._key(GLOBAL + _unit_name(name))

    def global_units(self) -> bytes:
        return self._key(GLOBAL)

    def schedule(self, machine_id: str, name: str) -> bytes:
        return self._key(f"{SCHEDULE}{_segment('machine id', machine_id)}/{_unit_name(name)}")

    def schedules(self, machine_id: str | None = None) -> bytes:
        if machine_id is None:
            return self._key(SCHEDULE)
        return self._key(f"{SCHEDULE}{_segment('machine id', machine_id)}/")

    def reason(self, name: str) -> bytes:
        return self._key(REASON + _unit_name(name))

    def reasons(self) -> bytes:
        return self._key(REASON)

    def machine(self, machine_id: str) -> bytes:
        return self._key(MACHINE + _segment("machine id", machine_id))

    def machines(self) -> bytes:
        return self._key(MACHINE)

    def machine_seen(self, machine_id: str) -> bytes:
        """The lease-less record of a machine that joined (lost machines, issue 11)."""
        return self._key(MACHINE_SEEN + _segment("machine id", machine_id))

    def machines_seen(self) -> bytes:
        return self._key(MACHINE_SEEN)

    def machine_metadata(self, machine_id: str, key: str) -> bytes:
        return self._key(
            f"{MACHINE_METADATA}{_segment('machine id', machine_id)}/"
            f"{_segment('metadata key', key)}"
        )

    def machine_metadata_of(self, machine_id: str) -> bytes:
        return self._key(f"{MACHINE_METADATA}{_segment('machine id', machine_id)}/")

    def machine_metadata_all(self) -> bytes:
        return self._key(MACHINE_METADATA)

    def state(self, name: str, machine_id: str) -> bytes:
        return self._key(f"{STATE}{_unit_name(name)}/{_segment('machine id', machine_id)}")

    def states(self, name: str | None = None) -> bytes:
        if name is None:
            return self._key(STATE)
        return self._key(f"{STATE}{_unit_name(name)}/")

    def engine_leader(self) -> bytes:
        return self._key(ENGINE_LEADER)

    def engine_version(self) -> bytes:
        return self._key(ENGINE_VERSION)

    def maintenance(self, machine_id: str | None = None) -> bytes:
        """``maintenance/`` (every machine) or ``maintenance/<machine-id>/``."""
        if machine_id is None:
            return self._key(MAINTENANCE)
        return self._key(f"{MAINTENANCE}{_segment('machine id', machine_id)}/")

    def cordon(self, machine_id: str) -> bytes:
        return self.maintenance(machine_id) + CORDON.encode()

    def drain(self, machine_id: str) -> bytes:
        return self.maintenance(machine_id) + DRAIN.encode()

    def drain_status(self, machine_id: str) -> bytes:
        return self.maintenance(machine_id) + DRAIN_STATUS.encode()

    def events(self) -> bytes:
        """``events/``: every event stream (feature B13)."""
        return self._key(EVENTS)

    def event_stream(self, unit: str | None, machine_id: str | None) -> bytes:
        """``events/unit/<name>/`` when the event is about a unit, else
        ``events/machine/<machine-id>/``."""
        if unit is not None:
            return self._key(f"{EVENTS}{EVENTS_UNIT}/{_unit_name(unit)}/")
        if machine_id is None:
            raise InvalidInput("an event names a unit or a machine")
        return self._key(f"{EVENTS}{EVENTS_MACHINE}/{_segment('machine id', machine_id)}/")

    def event(self, unit: str | None, machine_id: str | None, event_id: str) -> bytes:
        return self.event_stream(unit, machine_id) + _segment("event id", event_id).encode()

    # --- parsers (relative keys) -------------------------------------------

    @staticmethod
    def parse_leaf(relative: str, kind: str) -> str:
        """The last segment of ``<kind><leaf>`` (``job/x.service`` -> ``x.service``)."""
        if not relative.startswith(kind):
            raise InvalidInput(f"key {relative!r} is not under {kind!r}")
        leaf = relative[len(kind) :]
        if not leaf or "/" in leaf:
            raise InvalidInput(f"malformed key {relative!r}")
        return leaf

    @staticmethod
    def _pair(relative: str, kind: str) -> tuple[str, str]:
        if not relative.startswith(kind):
            raise InvalidInput(f"key {relative!r} is not under {kind!r}")
        first, sep, second = relative[len(kind) :].partition("/")
        if not sep or not first or not second or "/" in second:
            raise InvalidInput(f"malformed key {relative!r}")
        return first, second

    @classmethod
    def parse_schedule_key(cls, relative: str) -> tuple[str, str]:
        """``schedule/<machine-id>/<name>`` -> (machine id, unit name)."""
        return cls._pair(relative, SCHEDULE)

    @classmethod
    def parse_state_key(cls, relative: str) -> tuple[str, str]:
        """``state/<name>/<machine-id>`` -> (unit name, machine id)."""
        return cls._pair(relative, STATE)

    @classmethod
    def parse_maintenance_key(cls, relative: str) -> tuple[str, str]:
        """``maintenance/<machine-id>/<kind>`` -> (machine id, kind)."""
        machine_id, kind = cls._pair(relative, MAINTENANCE)
        if kind not in MAINTENANCE_KINDS:
            raise InvalidInput(f"unknown maintenance key {relative!r}")
        return machine_id, kind

    @staticmethod
    def parse_event_key(relative: str) -> tuple[str, str]:
        """``events/<unit|machine>/<name>/<id>`` -> (the stream's relative prefix, id)."""
        if not relative.startswith(EVENTS):
            raise InvalidInput(f"key {relative!r} is not under {EVENTS!r}")
        parts = relative[len(EVENTS) :].split("/")
        if len(parts) != 3 or parts[0] not in (EVENTS_UNIT, EVENTS_MACHINE) or not all(parts):
            raise InvalidInput(f"malformed key {relative!r}")
        return f"{EVENTS}{parts[0]}/{parts[1]}/", parts[2]

    @classmethod
    def parse_metadata_key(cls, relative: str) -> tuple[str, str]:
        """``machine-metadata/<machine-id>/<key>`` -> (machine id, metadata key)."""
        return cls._pair(relative, MACHINE_METADATA)
