"""The order of ``fleetctl start`` arguments never changes the outcome.

``start c b a``, where b follows a (``MachineOf``) and c follows b, used to exit 2
("follows b.service, which is not scheduled") in about 40% of tries: the engine
judged a follower while the unit it follows still waited for its desired state.
fleetctl now writes every desired state in one transaction. 50 random orders on
the session's real cluster, each started (blocking) and destroyed.
"""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from tests.functional.cluster import Cluster
from tests.functional.unitviews import active_units

pytestmark = pytest.mark.functional

ORDERS = 50
UNITS = {
    "order-a.service": "",
    "order-b.service": "MachineOf=order-a.service\n",
    "order-c.service": "MachineOf=order-b.service\n",
}


def test_any_order_of_start_arguments_gives_the_same_outcome(
    fleet: Cluster, tmp_path: Path
) -> None:
    paths = {}
    for name, x_fleet in UNITS.items():
        paths[name] = tmp_path / name
        paths[name].write_text(
            "[Service]\nExecStart=/usr/bin/sleep 1000\n"
            + (f"\n[X-Fleet]\n{x_fleet}" if x_fleet else "")
        )
    rng = random.Random(20261201)
    outcomes = []
    for _ in range(ORDERS):
        order = list(UNITS)
        rng.shuffle(order)
        result = fleet.fleetctl(
            "start", "--block-attempts=10", *(str(paths[n]) for n in order), check=False
        )
        placed = active_units(fleet)
        machines = {m for name in UNITS for m in placed.get(name, [])}
        outcomes.append((order, result.returncode, result.stderr.strip(), len(machines)))
        fleet.fleetctl("destroy", *UNITS)
    failures = [o for o in outcomes if o[1:] != (0, "", 1)]
    assert failures == [], f"{len(failures)} of {ORDERS} orders differ: {failures[:3]}"
