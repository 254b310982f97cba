"""MaxPerMachine and SpreadBy (feature B15) on real machines: instances of one template
kept apart by a per-machine limit, and spread evenly over a metadata key.

The limit runs on the session's 3 machines; the spread needs zones, so it gets a
fresh cluster of 4 machines, three in zone a and one in zone b, where fleet's
usual least-loaded placement would put three instances in zone a and one in b.
Every placement fleet reports is also checked in the machine's own systemd.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.functional.cluster import Cluster
from tests.functional.unitviews import (
    assert_systemd_runs,
    list_unit_files,
    wait_active,
)

pytestmark = pytest.mark.functional

ClusterFactory = Callable[..., Cluster]


def template(tmp_path: Path, x_fleet: str) -> str:
    path = tmp_path / "web@.service"
    path.write_text(
        "[Unit]\nDescription=web instance %i\n\n"
        "[Service]\nExecStart=/bin/sleep infinity\n\n"
        f"[X-Fleet]\n{x_fleet}\n"
    )
    return str(path)


def one_machine_each(placed: dict[str, list[str]]) -> dict[str, str]:
    out = {}
    for unit, machines in placed.items():
        assert len(machines) == 1, f"{unit} active on {len(machines)} machines"
        out[unit] = machines[0]
    return out


def test_max_per_machine(fleet: Cluster, tmp_path: Path) -> None:
    """MaxPerMachine=1: three instances run on three distinct machines; a fourth is
    refused by ``fleetctl start`` at once (exit 2), naming the rule on every machine."""
    fleet.fleetctl("submit", template(tmp_path, "MaxPerMachine=1"))
    fleet.fleetctl("start", *(f"web@{i}.service" for i in range(1, 4)))
    placed = one_machine_each(wait_active(fleet, 3))
    assert sorted(placed) == ["web@1.service", "web@2.service", "web@3.service"]
    assert sorted(placed.values()) == sorted(m.machine_id for m in fleet.machines)
    assert_systemd_runs(fleet, {u: [m] for u, m in placed.items()})

    proc = fleet.fleetctl("start", "web@4.service", check=False)
    assert proc.returncode == 2, proc
    assert "web@4.service cannot be placed on any of the 3 machines" in proc.stderr
    assert (
        "MaxPerMachine: holds 1 instance of web@.service already (MaxPerMachine=1)" in proc.stderr
    )
    assert list_unit_files(fleet)["web@4.service"].state == "inactive"
    assert one_machine_each(wait_active(fleet, 3)) == placed

    # On a unit that is no template instance the option is refused before anything is written.
    plain = tmp_path / "plain.service"
    plain.write_text("[Service]\nExecStart=/bin/sleep infinity\n\n[X-Fleet]\nMaxPerMachine=1\n")
    refused = fleet.fleetctl("submit", str(plain), check=False)
    assert refused.returncode == 1, refused
    assert refused.stderr.count("\n") == 1, refused.stderr
    assert "MaxPerMachine only applies to instances of a template" in refused.stderr
    assert "plain.service" not in list_unit_files(fleet)


def test_spread_by_zone(cluster_factory: ClusterFactory, tmp_path: Path) -> None:
    """SpreadBy=zone over zones a (3 machines) and b (1 machine): 4 instances, 2 per zone."""
    zones = [{"zone": "a"}, {"zone": "a"}, {"zone": "a"}, {"zone": "b"}]
    fleet = cluster_factory(4, metadata=zones)
    zone_of = {m.machine_id: zones[m.index - 1]["zone"] for m in fleet.machines}
    fleet.fleetctl("submit", template(tmp_path, "SpreadBy=zone"))
    fleet.fleetctl("start", *(f"web@{i}.service" for i in range(1, 5)))
    placed = one_machine_each(wait_active(fleet, 4))
    assert Counter(zone_of[m] for m in placed.values()) == {"a": 2, "b": 2}
    # Zone a's two instances are on two of its machines (least-loaded within the value).
    assert len({m for m in placed.values() if zone_of[m] == "a"}) == 2
    assert_systemd_runs(fleet, {u: [m] for u, m in placed.items()})
