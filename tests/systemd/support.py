"""Helpers shared by the systemd and agent tests: one throw-away systemd machine
booted through :mod:`fleet.cluster.nodes`, a per-test unit directory inside it,
and polling with a deadline."""

from __future__ import annotations

import os
import shutil
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import pytest

from fleet.cluster import nodes
from tests.asyncsupport import eventually

T = TypeVar("T")


@dataclass(frozen=True)
class NodeLayout:
    state_dir: Path
    prefix: str
    subnet: str
    bridge: str


def boot_one(layout: NodeLayout) -> Iterator[nodes.Node]:
    """Boot one machine for a test session and always tear it down."""
    if os.geteuid() != 0:
        pytest.fail("systemd tests boot an nspawn machine and must run as root")
    booted = nodes.boot(
        1,
        state_dir=layout.state_dir,
        prefix=layout.prefix,
        subnet=layout.subnet,
        bridge=layout.bridge,
        tmpfs="64m",
    )
    try:
        yield booted[0]
    finally:
        nodes.teardown(layout.state_dir, layout.prefix, layout.bridge)


@dataclass(frozen=True)
class NodeUnitDir:
    """A unit directory inside the machine: ``host`` is where this process writes,
    ``inside`` the same directory as the machine's systemd sees it."""

    host: Path
    inside: Path


def node_unit_dir(node: nodes.Node, name: str) -> Iterator[NodeUnitDir]:
    # The machine's /run is its own tmpfs: reach it through its PID 1's root.
    inside = Path("/run/fleet-test") / name
    host = Path(f"/proc/{node.leader_pid}/root") / inside.relative_to("/")
    host.mkdir(parents=True, exist_ok=True)
    try:
        yield NodeUnitDir(host, inside)
    finally:
        shutil.rmtree(host, ignore_errors=True)


# ASYNC109: the timeout goes to eventually's deadline (see there).
async def wait_for(
    probe: Callable[[], Awaitable[T]],
    accept: Callable[[T], bool],
    *,
    timeout: float = 5.0,  # noqa: ASYNC109
    interval: float = 0.02,
    what: str = "condition",
) -> T:
    """Poll ``probe`` until ``accept`` holds (:func:`tests.asyncsupport.eventually`
    with this tier's defaults); the failure names the last value seen."""
    return await eventually(probe, accept, timeout=timeout, interval=interval, what=what)
