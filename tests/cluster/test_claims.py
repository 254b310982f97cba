"""Claims of local clusters on bridges, subnets and prefixes (no machines booted).

A claim is live while its bridge exists; ``lo`` stands in for a live bridge.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from fleet.cluster import claims
from fleet.cluster.state import Layout
from fleet.errors import FleetError


def _layout(
    state_dir: Path, bridge: str = "lo", subnet: str = "10.9.0", prefix: str = "a"
) -> Layout:
    return Layout(state_dir, prefix, subnet, bridge)


@pytest.mark.parametrize(
    ("changes", "what"),
    [
        pytest.param({"subnet": "10.9.1", "prefix": "b"}, "bridge lo", id="same-bridge"),
        pytest.param({"bridge": "nosuchbr0", "prefix": "b"}, "subnet 10.9.0", id="same-subnet"),
        pytest.param(
            {"bridge": "nosuchbr0", "subnet": "10.9.1"}, "machine prefix a", id="same-prefix"
        ),
    ],
)  # fmt: skip
def test_a_live_cluster_keeps_its_layout(
    tmp_path: Path, changes: dict[str, str], what: str
) -> None:
    first = _layout(tmp_path / "one")
    claims.claim(first, tmp_path / "claims")
    second = _layout(tmp_path / "two", **changes)
    with pytest.raises(
        FleetError, match=f"{what} is used by the live cluster in {tmp_path / 'one'}"
    ):
        claims.claim(second, tmp_path / "claims")
    assert claims.bridge_of_another("lo", tmp_path / "two", tmp_path / "claims") == tmp_path / "one"


def test_a_cluster_reclaims_its_own_layout_and_release_frees_it(tmp_path: Path) -> None:
    lay = _layout(tmp_path / "one")
    claims.claim(lay, tmp_path / "claims")
    claims.claim(lay, tmp_path / "claims")  # the same state dir: booting again is fine
    claims.release(lay.state_dir, tmp_path / "claims")
    claims.claim(_layout(tmp_path / "two"), tmp_path / "claims")


def test_a_claim_whose_bridge_is_gone_is_stale(tmp_path: Path) -> None:
    claims.claim(_layout(tmp_path / "one", bridge="nosuchbr0"), tmp_path / "claims")
    claims.check_free(_layout(tmp_path / "two", bridge="nosuchbr0"), tmp_path / "claims")


def test_unreadable_claim_files_claim_nothing(tmp_path: Path) -> None:
    (tmp_path / "claims").mkdir()
    (tmp_path / "claims" / "x.json").write_text("{not json")
    assert claims.claims(tmp_path / "claims") == []
