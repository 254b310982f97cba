"""``fleetctl cluster-status``: the whole cluster's health on one screen (issue 11).

The engine leader, etcd's members and their health, the machines (ok, cordoned,
lost), the units by desired and by systemd active state, and the units the
engine cannot place with why. Read through either driver; :func:`summarise`
is pure, the two renderers too.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from fleetctl.tabwriter import tabulate

if TYPE_CHECKING:
    from fleet.core.model import ClusterInfo, EtcdMember, Machine, UnitState
    from fleet.core.views import UnitInfo
    from fleetctl.client import FleetClient
    from fleetctl.context import App

DESIRED_ORDER = ("launched", "loaded", "inactive")


@dataclass(frozen=True)
class Summary:
    leader: Machine | None
    leader_id: str | None
    leader_version: str
    members: tuple[EtcdMember, ...]
    machines: dict[str, int]  # total, ok, cordoned, lost
    units: int
    desired: dict[str, int]
    active: dict[str, int]
    unplaceable: tuple[tuple[str, str], ...]  # (unit, reason)


def summarise(
    info: ClusterInfo,
    machines: Sequence[Machine],
    units: Sequence[UnitInfo],
    states: Sequence[UnitState],
) -> Summary:
    leader_id, leader_version = info.leader if info.leader else (None, "")
    by_id = {m.id: m for m in machines}
    cordoned = sum(1 for m in machines if m.cordon is not None)
    desired = Counter(str(u.desired) for u in units)
    active = Counter(s.active_state or "unknown" for s in states)
    return Summary(
        leader=by_id.get(leader_id) if leader_id else None,
        leader_id=leader_id,
        leader_version=leader_version,
        members=info.etcd_members,
        machines={
            "total": len(machines) + len(info.lost),
            "ok": len(machines) - cordoned,
            "cordoned": cordoned,
            "lost": len(info.lost),
        },
        units=len(units),
        desired={state: desired.get(state, 0) for state in DESIRED_ORDER},
        active=dict(sorted(active.items())),
        unplaceable=tuple((u.name, u.reason) for u in units if u.reason),
    )


def _counts(counts: dict[str, int]) -> str:
    return ", ".join(f"{count} {name}" for name, count in counts.items() if count) or "none"


def render_text(summary: Summary) -> str:
    lines: list[str] = []
    if summary.leader_id is None:
        lines.append("Engine leader:\tnone (no fleetd runs the engine)")
    else:
        where = summary.leader.public_ip if summary.leader is not None else "not a live machine"
        lines.append(
            f"Engine leader:\t{summary.leader_id} ({where or '-'}), "
            f"version {summary.leader_version or '-'}"
        )
    healthy = sum(1 for m in summary.members if m.healthy)
    lines.append(f"etcd:\t{len(summary.members)} members, {healthy} healthy")
    machines = summary.machines
    lines.append(
        f"Machines:\t{machines['total']}: "
        + _counts({k: v for k, v in machines.items() if k != "total"})
    )
    lines.append(f"Units:\t{summary.units}: {_counts(summary.desired)}")
    lines.append(f"systemd states:\t{_counts(summary.active)}")
    lines.append(f"Unplaceable units:\t{len(summary.unplaceable)}")
    text = tabulate([line.split("\t", 1) for line in lines])
    if summary.members:
        rows = [["MEMBER", "ID", "HEALTH", "LEADER", "VERSION", "CLIENT URLS"]]
        for m in summary.members:
            health = "healthy" if m.healthy else f"unhealthy: {m.error or 'no answer'}"
            rows.append(
                [
                    m.name or "-",
                    m.id,
                    health,
                    "*" if m.leader else "-",
                    m.version or "-",
                    ",".join(m.client_urls) or "-",
                ]
            )
        text += "\n" + tabulate(rows)
    if summary.unplaceable:
        text += "\n" + tabulate([["UNIT", "REASON"], *map(list, summary.unplaceable)])
    return text


def render_json(summary: Summary) -> str:
    leader: dict[str, Any] | None = None
    if summary.leader_id is not None:
        leader = {
            "machine_id": summary.leader_id,
            "ip": summary.leader.public_ip or None if summary.leader is not None else None,
            "version": summary.leader_version or None,
        }
    body = {
        "leader": leader,
        "etcd_members": [
            {
                "name": m.name,
                "id": m.id,
                "healthy": m.healthy,
                "leader": m.leader,
                "version": m.version or None,
                "db_size": m.db_size,
                "client_urls": list(m.client_urls),
                "error": m.error or None,
            }
            for m in summary.members
        ],
        "machines": summary.machines,
        "units": {"total": summary.units, "desired": summary.desired, "active": summary.active},
        "unplaceable": [{"unit": name, "reason": why} for name, why in summary.unplaceable],
    }
    return json.dumps(body, indent=2) + "\n"


def cluster_status(app: App, output: str) -> int:
    async def body(client: FleetClient) -> int:
        info = await client.cluster_info(etcd=True)
        summary = summarise(
            info,
            await client.list_machines(),
            await client.list_units(),
            await client.list_unit_states(),
        )
        app.write(render_json(summary) if output == "json" else render_text(summary))
        return 0

    return app.run(body)
