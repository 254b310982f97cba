"""list_unit_states re-reads etcd on every call while reusing decoded states:
what it returns must always be etcd's current content (the API lists states
once per page, so the reuse is what keeps ``list-units`` fast)."""

from __future__ import annotations

import dataclasses

from fleet.cluster.etcd import EtcdProcess
from fleet.core.model import DesiredState, Machine, UnitState
from fleet.registry.etcd import EtcdRegistry
from tests.registry import async_test

HASH = "c" * 40


def state(name: str, machine_id: str, active: str = "active") -> UnitState:
    return UnitState(name, machine_id, "loaded", active, "running", HASH, DesiredState.LAUNCHED)


@async_test
async def test_listing_follows_changes_between_calls(etcd: EtcdProcess, etcd_prefix: str) -> None:
    async with (
        await EtcdRegistry.connect([etcd.endpoint], etcd_prefix, request_timeout=2.0) as reader,
        await EtcdRegistry.connect([etcd.endpoint], etcd_prefix, request_timeout=2.0) as writer,
    ):
        lease = await writer.register_machine(Machine("m1"), ttl=5)
        a, b = state("a.service", "m1"), state("b.service", "m1")
        for s in (a, b):
            await writer.publish_unit_state(lease, s)
        assert await reader.list_unit_states() == [a, b]
        assert await reader.list_unit_states() == [a, b]  # served again, unchanged

        changed = dataclasses.replace(b, active_state="failed", sub_state="failed")
        await writer.publish_unit_state(lease, changed)
        await writer.publish_unit_state(lease, state("c.service", "m1"))
        await writer.delete_unit_state("a.service", "m1")
        assert await reader.list_unit_states() == [changed, state("c.service", "m1")]

        # Same value written again (a new revision): still the same state.
        await writer.publish_unit_state(lease, changed)
        assert await reader.list_unit_states() == [changed, state("c.service", "m1")]

        await writer.delete_unit_state("b.service", "m1")
        await writer.delete_unit_state("c.service", "m1")
        assert await reader.list_unit_states() == []
