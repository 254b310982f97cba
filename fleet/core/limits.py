"""How large a unit may be: the one size rule every unit passes before it is written.

A unit is stored once, as its canonical text (:meth:`UnitFile.serialize`),
under ``unit/<sha1>``, in one etcd transaction with its job record
``job/<name>`` (and, for a global unit, the job's ``global/<name>`` mirror).
etcd refuses any request over its ``--max-request-bytes`` (1.5 MiB by
default) and the registry keeps its own transactions under 1 MiB
(``fleet.registry.ops.MAX_TXN_BYTES``). The registry's codec stores the body
as an escaped JSON string, which makes it at worst six times longer (a control
character becomes ``\\u00XX``; plain ASCII barely grows). So the limit,
:data:`MAX_UNIT_BYTES` = 128 KiB of canonical text, keeps even the worst unit
at 768 KiB in etcd plus a few hundred bytes of keys and job records: a single
transaction within the registry's own budget and half of etcd's default limit.
512 KiB or 1 MiB would let a unit of escaped characters be refused by etcd,
a store error instead of a clear answer. Real unit files are a few KiB; 128 KiB
is 64 lines of systemd's longest (2048 bytes) or thousands of ordinary ones,
and anything larger belongs in a file the unit refers to.

The size counted is that of the canonical text in UTF-8, what ``fleetctl cat``
prints and the hash covers: comments, blank lines and continuations in the
file a user wrote do not count. The rule guards writes only; a unit already
stored larger (by an older fleet, or straight into etcd) is still shown,
scheduled and destroyed.
"""

from __future__ import annotations

from fleet.core.unitfile import UnitFile
from fleet.errors import TooLarge

MAX_UNIT_BYTES = 128 * 1024


def check_unit_size(name: str, unit: UnitFile) -> None:
    """Raise :class:`TooLarge` (one line: the unit, its size, the limit) unless
    ``unit``'s canonical text fits in :data:`MAX_UNIT_BYTES`."""
    if unit.size > MAX_UNIT_BYTES:
        raise TooLarge(
            f"unit {name} is too large: {unit.size} bytes, "
            f"the limit is {MAX_UNIT_BYTES} bytes ({MAX_UNIT_BYTES // 1024} KiB)"
        )
