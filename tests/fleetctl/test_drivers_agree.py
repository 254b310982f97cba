"""Both fleetctl drivers over one registry: the API's and the etcd driver's answers agree.

They share :mod:`fleet.units`, so a unit looks the same and a rule refuses the
same way whichever way fleetctl reaches the cluster; in particular a unit
whose stored body no longer parses is hidden by both (and stays destroyable),
instead of one driver failing the whole listing.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path

import pytest

from fleet import units
from fleet.cluster.etcd import EtcdProcess
from fleet.core.model import DesiredState
from fleet.core.unitfile import UnitFile
from fleet.errors import FleetError, InvalidInput, TooLarge
from fleetctl.client import ClientSettings, FleetClient
from fleetctl.drivers import etcd as etcd_driver
from fleetctl.drivers.api import ApiClient
from tests.api.support import Served, served_api
from tests.asyncsupport import async_test
from tests.fleetctl.support import UNITS, etcd_flags, run_async
from tests.registry.support import dump
from tests.unitsizes import unit_of_size

pytestmark = pytest.mark.etcd

PLAIN = UnitFile.parse("[Unit]\nDescription=good\n\n[Service]\nExecStart=/bin/sleep 1000\n")
GLOBAL = UnitFile.parse("[Service]\nExecStart=/bin/true\n\n[X-Fleet]\nGlobal=true\n")
BROKEN_BODY = "this is not a unit file\n"
BROKEN_HASH = "b" * 40
OVER_LIMIT = unit_of_size(128 * 1024 + 1)
TOO_LARGE = "unit big.service is too large: 131073 bytes, the limit is 131072 bytes (128 KiB)"


@asynccontextmanager
async def both_drivers(
    etcd: EtcdProcess, prefix: str
) -> AsyncIterator[tuple[Served, FleetClient, FleetClient]]:
    async with served_api(etcd, prefix) as api:
        over_api = ApiClient(f"unix://{api.socket_path}", timeout=5.0)
        settings = ClientSettings(endpoint=etcd.endpoint, driver="etcd", etcd_key_prefix=prefix)
        over_etcd = await etcd_driver.connect(settings)
        try:
            yield api, over_api, over_etcd
        finally:
            await over_api.aclose()
            await over_etcd.aclose()


async def seed(api: Served) -> None:
    await units.create_unit(api.registry, "good.service", PLAIN, DesiredState.LAUNCHED)
    await units.create_unit(api.registry, "glob.service", GLOBAL, DesiredState.LOADED)
    await write_corrupt(api)


async def write_corrupt(api: Served) -> None:
    # Written past fleet.units, as an old or foreign client might have.
    await api.registry.replace_unit(
        "bad.service", BROKEN_BODY, BROKEN_HASH, DesiredState.LAUNCHED, is_global=False
    )


@async_test
async def test_a_corrupt_body_is_hidden_by_both_drivers(
    etcd: EtcdProcess, etcd_prefix: str
) -> None:
    async with both_drivers(etcd, etcd_prefix) as (api, over_api, over_etcd):
        await seed(api)
        listed = await over_etcd.list_units()
        assert [info.name for info in listed] == ["glob.service", "good.service"]
        assert await over_api.list_units() == listed
        for name in ("bad.service", "good.service", "glob.service", "missing.service"):
            assert await over_api.get_unit(name) == await over_etcd.get_unit(name), name
        assert await over_etcd.get_unit("bad.service") is None
        # Hidden, not lost: both can still destroy it by name.
        assert await over_etcd.destroy_unit("bad.service") is True
        await write_corrupt(api)
        assert await over_api.destroy_unit("bad.service") is True
        assert await api.registry.get_job("bad.service") is None


def test_a_corrupt_body_gives_the_same_cli_output(etcd: EtcdProcess, etcd_prefix: str) -> None:
    @async_test
    async def run() -> None:
        async with served_api(etcd, etcd_prefix) as api:
            await seed(api)
            drivers = {
                "api": (f"--endpoint=unix://{api.socket_path}",),
                "etcd": etcd_flags(etcd.endpoint, etcd_prefix),
            }
            for args in (("list-unit-files",), ("list-units",), ("cat", "bad.service")):
                results = {d: await run_async(*flags, *args) for d, flags in drivers.items()}
                api_result, etcd_result = results["api"], results["etcd"]
                assert (api_result.code, api_result.out) == (etcd_result.code, etcd_result.out)
                # The etcd driver has no fleetd log to write to: it warns on stderr.
                assert api_result.err.splitlines() == [
                    line for line in etcd_result.err.splitlines() if "does not parse" not in line
                ]
                if args[0] == "list-unit-files":
                    assert api_result.code == 0
                    names = [line.split("\t")[0] for line in api_result.out.splitlines()[1:]]
                    assert names == ["glob.service", "good.service"]
                    assert "hiding bad.service" in etcd_result.err
                if args[0] == "cat":
                    assert (api_result.code, api_result.err) == (1, "Unit bad.service not found\n")

    run()


REFUSALS = [
    pytest.param(
        lambda c: c.create_unit("new@.service", PLAIN, DesiredState.LAUNCHED),
        InvalidInput,
        'cannot activate template "new@.service"',
        id="create-template-launched",
    ),
    pytest.param(
        lambda c: c.set_desired_state("t@.service", DesiredState.LOADED),
        InvalidInput,
        'cannot activate template "t@.service"',
        id="template-loaded",
    ),
    pytest.param(
        lambda c: c.get_unit("bad name.service"),
        InvalidInput,
        "invalid unit name",
        id="get-invalid-name",
    ),
    pytest.param(
        lambda c: c.replace_unit(
            "p.service",
            UnitFile.parse("[Service]\nExecStart=/bin/true\n[X-Fleet]\nGlobal=true\nMachineOf=a\n"),
            DesiredState.INACTIVE,
        ),
        InvalidInput,
        "[X-Fleet] Global cannot be combined with MachineOf",
        id="replace-invalid-requirements",
    ),
    # Past fleetctl's own check of a batch: the API driver gets the server's 413.
    pytest.param(
        lambda c: c.create_unit("big.service", OVER_LIMIT, DesiredState.INACTIVE),
        TooLarge,
        TOO_LARGE,
        id="create-too-large",
    ),
    pytest.param(
        lambda c: c.replace_unit("big.service", OVER_LIMIT, DesiredState.LAUNCHED),
        TooLarge,
        TOO_LARGE,
        id="replace-too-large",
    ),
]


@pytest.mark.parametrize(("call", "error", "message"), REFUSALS)
def test_both_drivers_refuse_alike(
    etcd: EtcdProcess,
    etcd_prefix: str,
    call: Callable[[FleetClient], Awaitable[object]],
    error: type[FleetError],
    message: str,
) -> None:
    @async_test
    async def run() -> None:
        async with both_drivers(etcd, etcd_prefix) as (api, over_api, over_etcd):
            await units.create_unit(api.registry, "t@.service", PLAIN, DesiredState.INACTIVE)
            messages = []
            for client in (over_api, over_etcd):
                with pytest.raises(error) as caught:
                    await call(client)
                messages.append(str(caught.value))
            # The API driver sees the server's message, the etcd driver the rule's own.
            assert messages[0] == messages[1]
            assert messages[0].startswith(message), messages[0]
            assert [job.name for job in await api.registry.list_jobs()] == ["t@.service"]

    run()


def test_a_unit_over_the_size_limit_is_refused_alike_by_both_drivers(
    etcd: EtcdProcess, etcd_prefix: str, tmp_path: Path
) -> None:
    (tmp_path / "hello.service").write_text((UNITS / "hello.service").read_text())
    (tmp_path / "big.service").write_text(OVER_LIMIT.serialize())

    @async_test
    async def run() -> None:
        async with served_api(etcd, etcd_prefix) as api:
            drivers = {
                "api": (f"--endpoint=unix://{api.socket_path}",),
                "etcd": etcd_flags(etcd.endpoint, etcd_prefix),
            }
            for driver, flags in drivers.items():
                for command in ("submit", "start"):
                    # hello.service is fine: the batch is refused whole, before any write.
                    result = await run_async(
                        *flags, command, "hello.service", "big.service", cwd=tmp_path
                    )
                    assert (result.code, result.out, result.err) == (1, "", TOO_LARGE + "\n"), (
                        driver
                    )
                    assert await dump(api.registry) == {}, driver

    run()


def test_units_at_and_over_the_size_limit_by_both_drivers(
    etcd: EtcdProcess, etcd_prefix: str, tmp_path: Path
) -> None:
    at_limit = unit_of_size(128 * 1024)

    @async_test
    async def run() -> None:
        async with served_api(etcd, etcd_prefix) as api:
            drivers = {
                "api": (f"--endpoint=unix://{api.socket_path}",),
                "etcd": etcd_flags(etcd.endpoint, etcd_prefix),
            }
            for driver, flags in drivers.items():
                name = f"{driver}.service"
                (tmp_path / name).write_text(at_limit.serialize())
                submitted = await run_async(*flags, "submit", name, cwd=tmp_path)
                assert (submitted.code, submitted.err) == (0, ""), driver
                cat = await run_async(*flags, "cat", name)
                assert cat.out == at_limit.serialize()
                # --replace with a file one byte over the limit keeps the unit as it was.
                before = await dump(api.registry)
                (tmp_path / name).write_text(OVER_LIMIT.serialize())
                replaced = await run_async(*flags, "submit", "--replace", name, cwd=tmp_path)
                too_large = TOO_LARGE.replace("big.service", name)
                assert (replaced.code, replaced.err) == (1, too_large + "\n"), driver
                assert await dump(api.registry) == before, driver

    run()
