"""The order of ``fleetctl start`` arguments never changes the outcome.

``start c b a``, where b follows a (``MachineOf``) and c follows b, used to exit 2
("follows b.service, which is not scheduled") in about 40% of tries: the engine
judged a follower while the unit it follows still waited for its desired state.
fleetctl now writes every desired state in one transaction. Each of the 6 orders
twice on the session's real cluster (shuffled), each started (blocking) and
destroyed: at the old 40% failure rate, 12 tries all pass by chance with p < 0.3%.
"""

from __future__ import annotations

import itertools
import random
from pathlib import Path

import pytest

from tests.functional.cluster import Cluster
from tests.functional.unitviews import active_units

pytestmark = pytest.mark.functional

ROUNDS = 2  # each order of the three units this many times
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
    orders = [list(order) for order in itertools.permutations(UNITS)] * ROUNDS
    random.Random(20261201).shuffle(orders)
    outcomes = []
    for order in orders:
        result = fleet.fleetctl(
            "start", "--block-attempts=10", *(str(paths[n]) for n in order), check=False
        )
        placed = active_units(fleet)
        machines = {m for name in UNITS for m in placed.get(name, [])}
        outcomes.append((order, result.returncode, result.stderr.strip(), len(machines)))
        fleet.fleetctl("destroy", *UNITS)
    failures = [o for o in outcomes if o[1:] != (0, "", 1)]
    assert failures == [], f"{len(failures)} of {len(orders)} orders differ: {failures[:3]}"
