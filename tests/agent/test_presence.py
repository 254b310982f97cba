"""The agent's presence on the in-memory systemd: a lost lease is replaced at
once (awaited, not polled) and the states move to the new lease; a machine id
held by another live lease is retried until it is free."""

from __future__ import annotations

from pathlib import Path

import pytest
from aetcd import rpc

from fleet.cluster.etcd import EtcdProcess
from fleet.core.model import DesiredState
from tests.agent.support import TTL, holds, running, unit, world
from tests.asyncsupport import async_test, eventually

pytestmark = pytest.mark.etcd


@async_test
async def test_a_lost_lease_is_registered_again_and_states_republished(
    etcd: EtcdProcess, etcd_prefix: str, tmp_path: Path
) -> None:
    name = "pr-lost.service"
    body, hash = unit()
    lease_file = tmp_path / "agent.lease"
    async with world(etcd, etcd_prefix, tmp_path) as w:
        await w.create(name, body, hash)
        await w.schedule(name, hash, DesiredState.LAUNCHED)
        agent = w.agent(resync_interval=30.0, lease_file=lease_file)
        async with running(agent):
            await eventually(w.published(name, lambda s: s is not None))
            old = agent.lease
            assert old is not None
            # etcd drops the lease (as when it expires): the machine and its states go.
            await w.registry.connection.call(
                "lease", "LeaseRevoke", rpc.LeaseRevokeRequest(ID=old.lease_id)
            )
            await eventually(holds(lambda: old.lost), timeout=TTL)
            await eventually(holds(lambda: agent.lease not in (None, old)), timeout=TTL)
            new = agent.lease
            assert new is not None
            assert lease_file.read_text().split() == [w.machine.id, f"{new.lease_id:x}"]
            assert [m.id for m in await w.registry.list_machines()] == [w.machine.id]
            await eventually(
                w.published(name, lambda s: s is not None and s.active_state == "active")
            )
            assert w.systemd.started(name) == 1


@async_test
async def test_a_machine_id_held_by_another_lease_is_retried(
    etcd: EtcdProcess, etcd_prefix: str, tmp_path: Path
) -> None:
    """fleet's TestDetectMachineId: no reconciling until the presence is ours."""
    async with world(etcd, etcd_prefix, tmp_path) as w:
        other = await w.registry.register_machine(w.machine, TTL)
        agent = w.agent()
        async with running(agent, registered=False) as task:
            await eventually(holds(lambda: agent.last_error is not None))
            assert "already registered" in (agent.last_error or "")
            assert not agent.registered.is_set()
            assert agent.passes == 0
            await w.registry.unregister_machine(other)
            await eventually(holds(agent.registered.is_set))
            await eventually(holds(lambda: agent.passes >= 1))
            assert not task.done()
