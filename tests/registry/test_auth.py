"""etcd with authentication enabled (fleet's etcd_username / etcd_password)."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator

import pytest

from fleet.cluster.etcd import EtcdProcess
from fleet.core.model import DesiredState, Job
from fleet.core.unitfile import UnitFile
from fleet.errors import StoreError
from fleet.ports import JobChanged, Scope, Topic
from fleet.registry.etcd import EtcdRegistry
from tests.asyncsupport import async_test

PREFIX = "/auth-test/"
BODY = UnitFile.parse("[Service]\nExecStart=/bin/true\n")


@pytest.fixture
def auth_etcd() -> Iterator[EtcdProcess]:
    with EtcdProcess() as server:
        for args in (["user", "add", "root:rootpw"], ["auth", "enable"]):
            subprocess.run(
                ["etcdctl", f"--endpoints={server.endpoint}", *args],
                check=True,
                capture_output=True,
                timeout=30,
            )
        yield server


@async_test
async def test_credentials_are_used_for_reads_writes_and_watches(auth_etcd: EtcdProcess) -> None:
    registry = await EtcdRegistry.connect(
        [auth_etcd.endpoint], PREFIX, username="root", password="rootpw"
    )
    try:
        _, revision = await registry.list_changes(Scope(Topic.JOBS))
        watch = registry.watch(Scope(Topic.JOBS), revision + 1)
        await registry.create_unit(
            "a.service", BODY.serialize(), BODY.hash, DesiredState.LOADED, is_global=False
        )
        events = await anext(watch)
        await watch.aclose()
        job = Job("a.service", BODY.hash, DesiredState.LOADED)
        assert events == [JobChanged("a.service", job, events[0].revision)]
        assert [j.name for j in await registry.list_jobs()] == ["a.service"]
    finally:
        await registry.close()


@pytest.mark.parametrize(
    ("username", "password", "message"),
    [
        pytest.param(None, None, "user name is empty", id="no-credentials"),
        pytest.param("root", "wrong", "authentication failed", id="wrong-password"),
    ],
)
@async_test
async def test_missing_or_wrong_credentials_are_refused(
    auth_etcd: EtcdProcess, username: str | None, password: str | None, message: str
) -> None:
    async def connect_and_close() -> None:
        registry = await EtcdRegistry.connect(
            [auth_etcd.endpoint], PREFIX, username=username, password=password
        )
        await registry.close()

    with pytest.raises(StoreError, match=message):
        await connect_and_close()
