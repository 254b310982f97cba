"""Which local cluster uses which bridge, subnet and machine-name prefix.

Every cluster claims its layout in a small file under ``/run/fleet-cluster``
while it exists; booting a cluster refuses a bridge, subnet or prefix that
another live cluster claimed (naming that cluster's state dir) instead of
rebuilding the bridge under its feet, and tearing one down never removes
another's bridge. A claim whose bridge is gone is stale and ignored.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

from fleet.cluster.footprint import link_exists
from fleet.cluster.state import Layout
from fleet.errors import FleetError

CLAIMS_DIR = Path("/run/fleet-cluster/claims")


@dataclass(frozen=True)
class Claim:
    state_dir: Path
    bridge: str
    subnet: str
    prefix: str

    @property
    def live(self) -> bool:
        return link_exists(self.bridge)


def _path(state_dir: Path, claims_dir: Path) -> Path:
    digest = hashlib.sha1(str(Path(state_dir).absolute()).encode()).hexdigest()[:16]
    return claims_dir / f"{digest}.json"


def claims(claims_dir: Path = CLAIMS_DIR) -> list[Claim]:
    found = []
    for path in sorted(claims_dir.glob("*.json")):
        try:
            data = json.loads(path.read_text())
            found.append(
                Claim(Path(data["state_dir"]), data["bridge"], data["subnet"], data["prefix"])
            )
        except (OSError, ValueError, KeyError, TypeError):
            continue  # a half-written or foreign file claims nothing
    return found


def others(lay: Layout, claims_dir: Path = CLAIMS_DIR) -> list[Claim]:
    """Live claims of other clusters."""
    mine = Path(lay.state_dir).absolute()
    return [c for c in claims(claims_dir) if c.state_dir.absolute() != mine and c.live]


def check_free(lay: Layout, claims_dir: Path = CLAIMS_DIR) -> None:
    """FleetError naming the other live cluster if it uses this bridge, subnet or prefix."""
    for other in others(lay, claims_dir):
        for what, value, theirs in (
            ("bridge", lay.bridge, other.bridge),
            ("subnet", lay.subnet, other.subnet),
            ("machine prefix", lay.prefix, other.prefix),
        ):
            if value == theirs:
                raise FleetError(
                    f"{what} {value} is used by the live cluster in {other.state_dir}: "
                    f"choose another --{what.split()[-1]} (or remove that cluster with "
                    f"`fleet-cluster --state-dir {other.state_dir} down`)"
                )


def claim(lay: Layout, claims_dir: Path = CLAIMS_DIR) -> None:
    check_free(lay, claims_dir)
    claims_dir.mkdir(parents=True, exist_ok=True)
    data = {
        "state_dir": str(Path(lay.state_dir).absolute()),
        "bridge": lay.bridge,
        "subnet": lay.subnet,
        "prefix": lay.prefix,
    }
    path = _path(lay.state_dir, claims_dir)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(data))
    tmp.replace(path)


def release(state_dir: Path, claims_dir: Path = CLAIMS_DIR) -> None:
    with contextlib.suppress(FileNotFoundError):
        _path(state_dir, claims_dir).unlink()


def bridge_of_another(bridge: str, state_dir: Path, claims_dir: Path = CLAIMS_DIR) -> Path | None:
    """The state dir of another live cluster using ``bridge``, if any."""
    mine = Path(state_dir).absolute()
    for other in claims(claims_dir):
        if other.bridge == bridge and other.state_dir.absolute() != mine and other.live:
            return other.state_dir
    return None
