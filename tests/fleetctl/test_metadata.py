"""``set-metadata`` / ``unset-metadata`` through both drivers, and :mod:`fleet.machines`' rules.

Both drivers reach :func:`fleet.machines.update_metadata` (the API route and
the etcd driver), so the same arguments write the same keys, and bad input
is refused with one line and nothing written whichever way fleetctl goes.
"""

from __future__ import annotations

import pytest

from fleet import machines
from fleet.cluster.etcd import EtcdProcess
from fleet.core.model import Machine
from fleet.core.unitfile import LINE_MAX
from fleet.errors import InvalidInput
from tests.api.support import Served, served_api
from tests.asyncsupport import async_test
from tests.fleetctl.support import driver_flags, one_line, run_async
from tests.registry.support import dump

M1 = "abc1" + "1" * 28
M2 = "abc2" + "2" * 28


async def _metadata(api: Served) -> dict[str, dict[str, str]]:
    return {m.id: dict(m.metadata) for m in await api.registry.list_machines()}


@pytest.mark.etcd
def test_set_and_unset_by_prefix_agree_across_drivers(etcd: EtcdProcess, etcd_prefix: str) -> None:
    @async_test
    async def run() -> None:
        async with served_api(etcd, etcd_prefix) as api:
            await api.registry.register_machine(Machine(M1, "10.0.0.1", {"role": "x"}), ttl=30)
            await api.registry.register_machine(Machine(M2, "10.0.0.2"), ttl=30)
            for driver, flags in driver_flags(api.socket_path, etcd.endpoint, etcd_prefix).items():
                await api.registry.set_machine_metadata(M1, "role", "x")  # the last run hid it
                done = await run_async(*flags, "set-metadata", "abc1", "disk=ssd", "az=b", "az=c")
                assert (done.code, done.err) == (0, ""), driver
                assert done.out == f"Set metadata of machine {M1}: disk=ssd, az=c\n"
                assert (await _metadata(api))[M1] == {"role": "x", "disk": "ssd", "az": "c"}
                # A key from the machine's own configuration is hidden too.
                done = await run_async(*flags, "unset-metadata", M1, "role", "az", "role")
                assert (done.code, done.out) == (0, f"Unset metadata of machine {M1}: role, az\n")
                assert await _metadata(api) == {M1: {"disk": "ssd"}, M2: {}}
                done = await run_async(*flags, "unset-metadata", M1, "disk")
                assert done.code == 0
                assert await _metadata(api) == {M1: {}, M2: {}}

    run()


BAD = [
    pytest.param(("set-metadata", "ffff", "a=b"), "Unable to proceed: machine 'ffff' does not",
                 id="unknown-machine"),
    pytest.param(("set-metadata", "abc", "a=b"), "Unable to proceed: found more than one machine",
                 id="ambiguous-prefix"),
    pytest.param(("set-metadata", "abc1", "a=b", "c"), "invalid metadata 'c': expected key=value",
                 id="no-equals"),
    pytest.param(("set-metadata", "abc1", "a=b", "b@d=x"), "invalid metadata key 'b@d'",
                 id="bad-key"),
    pytest.param(("set-metadata", "abc1", "a="), "invalid metadata 'a=': the value is empty",
                 id="empty-value"),
    pytest.param(("set-metadata", "abc1", "=v"), "invalid metadata key ''", id="empty-key"),
    pytest.param(("unset-metadata", "abc1", "a=b"), "invalid metadata key 'a=b'", id="unset-pair"),
    pytest.param(("unset-metadata", "abc1", "a", "a/b"), "invalid metadata key 'a/b'",
                 id="unset-bad-key"),
]  # fmt: skip


@pytest.mark.etcd
@pytest.mark.parametrize(("args", "message"), BAD)
def test_bad_input_writes_nothing(
    etcd: EtcdProcess, etcd_prefix: str, args: tuple[str, ...], message: str
) -> None:
    @async_test
    async def run() -> None:
        async with served_api(etcd, etcd_prefix) as api:
            await api.registry.register_machine(Machine(M1, "10.0.0.1"), ttl=30)
            await api.registry.register_machine(Machine(M2, "10.0.0.2"), ttl=30)
            before = await dump(api.registry)
            for driver, flags in driver_flags(api.socket_path, etcd.endpoint, etcd_prefix).items():
                done = await run_async(*flags, *args)
                assert done.code == 1, driver
                assert one_line(done.err).startswith(message), (driver, done.err)
                assert done.out == ""
                assert await dump(api.registry) == before

    run()


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (machines.MetadataChange("", "k", "v"), "invalid machine id ''"),
        (machines.MetadataChange("m/1", "k", "v"), "invalid machine id 'm/1'"),
        (machines.MetadataChange("m1", "k k", "v"), "invalid metadata key 'k k'"),
        (machines.MetadataChange("m1", "k", ""), "invalid value for metadata key k: add and"),
        (
            machines.MetadataChange("m1", "k", "x" * (LINE_MAX + 1)),
            f"invalid value for metadata key k: longer than {LINE_MAX} bytes",
        ),
        (machines.MetadataChange("m1", "k" * (LINE_MAX + 1), None), "invalid metadata key"),
    ],
)
def test_check_change_refuses(change: machines.MetadataChange, message: str) -> None:
    with pytest.raises(InvalidInput, match="^" + message.replace("(", r"\(")):
        machines.check_change(change)


def test_parse_assignments_and_keys() -> None:
    assert machines.parse_assignments(["a=1", "b=x=y", "a=2"]) == {"a": "2", "b": "x=y"}
    assert machines.parse_keys(["b", "a", "b"]) == ["b", "a"]
    machines.check_change(machines.MetadataChange("m1", "a.b-c_D9", None))  # no raise
