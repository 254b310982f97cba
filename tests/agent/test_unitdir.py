"""Unit-file writes stay inside the units directory, are atomic and 0644."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from fleet.agent.unitdir import UnitDirectory, body_hash
from fleet.errors import InvalidUnitName

BODY = "[Service]\nExecStart=/usr/bin/sleep 3000\n"


@pytest.fixture
def units(tmp_path: Path) -> UnitDirectory:
    directory = UnitDirectory(tmp_path / "units")
    directory.ensure()
    return directory


@pytest.mark.parametrize(
    "name",
    [
        pytest.param("../escape.service", id="dotdot-prefix"),
        pytest.param("a/../../escape.service", id="dotdot-inside"),
        pytest.param("/etc/escape.service", id="absolute"),
        pytest.param("sub/x.service", id="slash"),
        pytest.param("x\0.service", id="nul"),
        pytest.param("..service", id="dotdot-name"),
        pytest.param("", id="empty"),
        pytest.param("noext", id="no-suffix"),
    ],
)
def test_bad_names_never_touch_the_disk(units: UnitDirectory, tmp_path: Path, name: str) -> None:
    with pytest.raises(InvalidUnitName):
        units.write(name, BODY)
    assert sorted(p.name for p in tmp_path.rglob("*")) == ["units"]


def test_write_is_0644_and_hash_is_sha1_of_body(units: UnitDirectory) -> None:
    os.umask(0o077)
    try:
        digest = units.write("hello.service", BODY)
    finally:
        os.umask(0o022)
    path = units.path / "hello.service"
    assert stat.S_IMODE(path.stat().st_mode) == 0o644
    assert path.read_text() == BODY
    assert digest == body_hash(BODY) == units.hash_of("hello.service")
    assert units.list() == ["hello.service"]
    assert units.hashes() == {"hello.service": digest}


def test_planted_symlink_is_replaced_not_followed(units: UnitDirectory, tmp_path: Path) -> None:
    victim = tmp_path / "victim"
    victim.write_text("precious\n")
    (units.path / "evil.service").symlink_to(victim)
    # A symlink is not a file fleet wrote: not listed, no hash.
    assert units.list() == []
    assert units.hash_of("evil.service") is None
    units.write("evil.service", BODY)
    assert victim.read_text() == "precious\n"
    assert not (units.path / "evil.service").is_symlink()
    assert (units.path / "evil.service").read_text() == BODY


def test_rewrite_replaces_atomically_and_leaves_no_temp_files(units: UnitDirectory) -> None:
    units.write("a.service", BODY)
    second = BODY + "Restart=always\n"
    assert units.write("a.service", second) == body_hash(second)
    assert (units.path / "a.service").read_text() == second
    assert sorted(os.listdir(units.path)) == ["a.service"]


def test_list_only_known_types_and_remove(units: UnitDirectory) -> None:
    for name in ("a.service", "b.socket", "c.timer", "d.path", "e.target", "f.slice"):
        units.write(name, BODY)
    (units.path / "notes.txt").write_text("x")
    assert units.list() == ["a.service", "b.socket", "c.timer", "d.path"]
    assert units.remove("a.service") is True
    assert units.remove("a.service") is False
    assert units.read("a.service") is None


def test_missing_directory_lists_nothing(tmp_path: Path) -> None:
    missing = UnitDirectory(tmp_path / "nope")
    assert missing.list() == []
    assert missing.read("a.service") is None
