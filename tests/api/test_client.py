"""fleetctl's API driver against the served app: every FleetClient method
round-trips, errors map onto fleet.errors, endpoints parse like fleetctl's."""

from __future__ import annotations

import pytest

from fleet.cluster.etcd import EtcdProcess
from fleet.core.model import DesiredState, Machine, PlacementReason, UnitState
from fleet.core.unitfile import UnitFile
from fleet.errors import AlreadyExists, FleetError, InvalidInput, NotFound, StoreUnavailable
from fleet.ports import ScheduleChange
from fleetctl.drivers.api import ApiClient, parse_endpoint
from tests.api.support import served_api, short_tmpdir
from tests.asyncsupport import async_test

UNIT = UnitFile.parse("[Unit]\nDescription=hello\n\n[Service]\nExecStart=/bin/sleep 1000\n")
OTHER = UnitFile.parse("[Service]\nExecStart=/bin/sleep 2000\n")
GLOBAL = UnitFile.parse("[Service]\nExecStart=/bin/true\n\n[X-Fleet]\nGlobal=true\n")
M1 = "a" * 32


@async_test
async def test_every_method_round_trips(etcd: EtcdProcess, etcd_prefix: str) -> None:
    async with served_api(etcd, etcd_prefix, token_limit=2) as api:
        client = ApiClient(f"unix://{api.socket_path}", timeout=5.0)
        try:
            assert await client.list_units() == []
            await client.create_unit("a.service", UNIT, DesiredState.LAUNCHED)
            await client.create_unit("g.service", GLOBAL, DesiredState.LAUNCHED)
            for i in range(3):  # more than one page
                await client.create_unit(f"p{i}.service", OTHER, DesiredState.INACTIVE)
            with pytest.raises(AlreadyExists):
                await client.create_unit("a.service", OTHER, DesiredState.LOADED)

            leader = await api.registry.campaign(M1, "1", 10.0)
            assert leader is not None
            await api.registry.apply_schedule(
                leader,
                [ScheduleChange("a.service", M1, UNIT.hash)],
                {"p0.service": PlacementReason("why not")},
            )
            got = await client.get_unit("a.service")
            assert got is not None
            assert (got.unit, got.hash, got.desired, got.machine_id) == (
                UNIT,
                UNIT.hash,
                DesiredState.LAUNCHED,
                M1,
            )
            assert got.current is DesiredState.INACTIVE
            assert not got.is_global
            assert got.description == "hello"
            glob = await client.get_unit("g.service")
            assert glob is not None
            assert glob.is_global
            assert glob.current is None
            assert await client.get_unit("nope.service") is None

            units = await client.list_units()
            assert [u.name for u in units] == [
                "a.service",
                "g.service",
                "p0.service",
                "p1.service",
                "p2.service",
            ]
            assert units[2].reason == "why not"

            await client.set_desired_state("a.service", DesiredState.LOADED)
            job = await api.registry.get_job("a.service")
            assert job is not None
            assert job.desired_state is DesiredState.LOADED
            with pytest.raises(NotFound):
                await client.set_desired_state("nope.service", DesiredState.LOADED)

            await client.replace_unit("a.service", OTHER, DesiredState.LAUNCHED)
            replaced = await client.get_unit("a.service")
            assert replaced is not None
            assert (replaced.hash, replaced.desired) == (OTHER.hash, DesiredState.LAUNCHED)

            assert await client.destroy_unit("p2.service") is True
            assert await client.destroy_unit("p2.service") is False

            lease = await api.registry.register_machine(Machine(M1, "10.1.1.1", {"az": "x"}), 10)
            state = UnitState("a.service", M1, "loaded", "active", "running", OTHER.hash)
            await api.registry.publish_unit_state(lease, state)
            assert await client.list_machines() == [Machine(M1, "10.1.1.1", {"az": "x"})]
            assert await client.list_unit_states() == [state]
            assert await client.list_unit_states(machine_id=M1, unit_name="a.service") == [state]
            assert await client.list_unit_states(machine_id="b" * 32) == []

            await client.set_machine_metadata(M1, "disk", "ssd")
            machines = await client.list_machines()
            assert machines[0].metadata == {"az": "x", "disk": "ssd"}
            await client.set_machine_metadata(M1, "disk", None)
            assert (await client.list_machines())[0].metadata == {"az": "x"}
        finally:
            await client.aclose()


@async_test
async def test_errors_map_onto_fleet_errors(etcd: EtcdProcess, etcd_prefix: str) -> None:
    async with served_api(etcd, etcd_prefix) as api:
        client = ApiClient(f"file://{api.socket_path}", timeout=5.0)
        try:
            with pytest.raises(InvalidInput, match=r'cannot activate template "t@\.service"'):
                await client.create_unit("t@.service", UNIT, DesiredState.LAUNCHED)
            api.ready.value = False
            with pytest.raises(StoreUnavailable, match="unable to communicate with etcd"):
                await client.list_units()
        finally:
            await client.aclose()


@async_test
async def test_unreachable_socket_is_a_clear_error() -> None:
    with short_tmpdir() as tmp:
        client = ApiClient(f"unix://{tmp}/none.sock", timeout=1.0)
        try:
            with pytest.raises(FleetError, match=r"unable to reach the fleet API at unix://"):
                await client.list_machines()
        finally:
            await client.aclose()


@pytest.mark.parametrize(
    ("endpoint", "expected"),
    [
        pytest.param(
            "unix:///var/run/fleet.sock", ("http://fleet", "/var/run/fleet.sock"), id="unix"
        ),
        pytest.param("file:///run/x.sock", ("http://fleet", "/run/x.sock"), id="file"),
        pytest.param("http://10.0.0.1:49153", ("http://10.0.0.1:49153", None), id="http"),
        pytest.param("https://h.example:8443/", ("https://h.example:8443", None), id="https"),
    ],
)
def test_parse_endpoint(endpoint: str, expected: tuple[str, str | None]) -> None:
    assert parse_endpoint(endpoint) == expected


@pytest.mark.parametrize(
    ("endpoint", "message"),
    [
        pytest.param(
            "unix://var/run/fleet.sock",
            'unable to connect to host "var" with scheme "unix"',
            id="missing-slash",
        ),
        pytest.param("ftp://h:1", 'unable to connect to host "h:1" with scheme "ftp"', id="ftp"),
        pytest.param("unix://", "no socket path", id="no-path"),
    ],
)
def test_bad_endpoints(endpoint: str, message: str) -> None:
    with pytest.raises(FleetError, match=message):
        ApiClient(endpoint, timeout=1.0)


@async_test
async def test_fleetctl_connect_picks_this_driver(etcd: EtcdProcess, etcd_prefix: str) -> None:
    from fleetctl.client import ClientSettings, connect

    async with served_api(etcd, etcd_prefix) as api:
        client = await connect(ClientSettings(endpoint=f"unix://{api.socket_path}", driver="api"))
        try:
            assert isinstance(client, ApiClient)
            assert await client.list_machines() == []
        finally:
            await client.aclose()
