"""UnitStore contract against a real etcd: bodies, jobs, global mirror, GC."""

from __future__ import annotations

import hashlib

import pytest

from fleet.cluster.etcd import EtcdProcess
from fleet.core.model import DesiredState, Job
from fleet.errors import AlreadyExists, InvalidUnitName, NotFound
from fleet.registry.etcd import EtcdRegistry
from tests.asyncsupport import async_test
from tests.registry.support import current_revision, dump

PLAIN = "[Service]\nExecStart=/bin/sleep 1000\n"
OTHER = "[Service]\nExecStart=/bin/sleep 2000\n"
GLOBAL_BODY = "[Service]\nExecStart=/bin/true\n\n[X-Fleet]\nGlobal=true\n"


def sha(body: str) -> str:
    return hashlib.sha1(body.encode()).hexdigest()


async def connect(etcd: EtcdProcess, prefix: str) -> EtcdRegistry:
    return await EtcdRegistry.connect([etcd.endpoint], prefix, request_timeout=2.0)


@async_test
async def test_create_writes_body_and_job_in_one_revision(
    etcd: EtcdProcess, etcd_prefix: str
) -> None:
    async with await connect(etcd, etcd_prefix) as reg:
        await reg.create_unit(
            "a.service", PLAIN, sha(PLAIN), DesiredState.LAUNCHED, is_global=False
        )
        assert await reg.get_job("a.service") == Job("a.service", sha(PLAIN), DesiredState.LAUNCHED)
        assert await reg.get_unit_body(sha(PLAIN)) == PLAIN
        raw = await dump(reg)
        assert set(raw) == {"job/a.service", f"unit/{sha(PLAIN)}"}
        # One transaction: both keys carry the same mod_revision.
        job_kv = await reg._get(reg.keys.job("a.service"))
        body_kv = await reg._get(reg.keys.unit(sha(PLAIN)))
        assert job_kv is not None
        assert body_kv is not None
        assert job_kv.mod_revision == body_kv.mod_revision


@async_test
async def test_create_twice_is_already_exists_and_writes_nothing(
    etcd: EtcdProcess, etcd_prefix: str
) -> None:
    async with await connect(etcd, etcd_prefix) as reg:
        await reg.create_unit("a.service", PLAIN, sha(PLAIN), DesiredState.LOADED, is_global=False)
        before = await dump(reg)
        with pytest.raises(AlreadyExists, match=r"a\.service"):
            await reg.create_unit(
                "a.service", OTHER, sha(OTHER), DesiredState.LAUNCHED, is_global=False
            )
        after = await dump(reg)
        assert after == before
        assert await reg.get_unit_body(sha(OTHER)) is None


@async_test
async def test_replace_overwrites_job_and_adds_body(etcd: EtcdProcess, etcd_prefix: str) -> None:
    async with await connect(etcd, etcd_prefix) as reg:
        await reg.replace_unit("a.service", PLAIN, sha(PLAIN), DesiredState.LOADED, is_global=False)
        await reg.replace_unit(
            "a.service", OTHER, sha(OTHER), DesiredState.LAUNCHED, is_global=False
        )
        assert await reg.get_job("a.service") == Job("a.service", sha(OTHER), DesiredState.LAUNCHED)
        bodies = await reg.get_unit_bodies([sha(PLAIN), sha(OTHER), "f" * 40])
        assert bodies == {sha(PLAIN): PLAIN, sha(OTHER): OTHER}


@async_test
async def test_list_jobs_is_sorted_by_name(etcd: EtcdProcess, etcd_prefix: str) -> None:
    async with await connect(etcd, etcd_prefix) as reg:
        for name in ["c.service", "a.service", "b@1.service"]:
            await reg.create_unit(name, PLAIN, sha(PLAIN), DesiredState.INACTIVE, is_global=False)
        assert [j.name for j in await reg.list_jobs()] == ["a.service", "b@1.service", "c.service"]


@pytest.mark.parametrize("desired", list(DesiredState), ids=[d.value for d in DesiredState])
@async_test
async def test_set_desired_state(
    etcd: EtcdProcess, etcd_prefix: str, desired: DesiredState
) -> None:
    async with await connect(etcd, etcd_prefix) as reg:
        await reg.create_unit("a.service", PLAIN, sha(PLAIN), DesiredState.LOADED, is_global=False)
        await reg.set_desired_state("a.service", desired)
        assert await reg.get_job("a.service") == Job("a.service", sha(PLAIN), desired)


@async_test
async def test_set_desired_state_on_missing_unit_is_not_found(
    etcd: EtcdProcess, etcd_prefix: str
) -> None:
    async with await connect(etcd, etcd_prefix) as reg:
        with pytest.raises(NotFound):
            await reg.set_desired_state("missing.service", DesiredState.LAUNCHED)
        assert await reg.get_job("missing.service") is None


@async_test
async def test_destroy(etcd: EtcdProcess, etcd_prefix: str) -> None:
    async with await connect(etcd, etcd_prefix) as reg:
        await reg.create_unit(
            "a.service", PLAIN, sha(PLAIN), DesiredState.LAUNCHED, is_global=False
        )
        assert await reg.destroy_unit("a.service") is True
        assert await reg.get_job("a.service") is None
        assert await reg.destroy_unit("a.service") is False


@async_test
async def test_names_with_a_slash_never_reach_etcd(etcd: EtcdProcess, etcd_prefix: str) -> None:
    async with await connect(etcd, etcd_prefix) as reg:
        revision = await current_revision(reg)
        with pytest.raises(InvalidUnitName):
            await reg.create_unit(
                "../x.service", PLAIN, sha(PLAIN), DesiredState.LAUNCHED, is_global=False
            )
        assert await dump(reg) == {}
        assert await current_revision(reg) == revision


@async_test
async def test_global_mirror_follows_the_job(etcd: EtcdProcess, etcd_prefix: str) -> None:
    async with await connect(etcd, etcd_prefix) as reg:
        await reg.create_unit(
            "g.service", GLOBAL_BODY, sha(GLOBAL_BODY), DesiredState.LOADED, is_global=True
        )
        await reg.create_unit("p.service", PLAIN, sha(PLAIN), DesiredState.LOADED, is_global=False)
        assert await reg.list_global_units() == {
            "g.service": Job("g.service", sha(GLOBAL_BODY), DesiredState.LOADED)
        }
        await reg.set_desired_state("g.service", DesiredState.LAUNCHED)
        globals_ = await reg.list_global_units()
        assert globals_["g.service"].desired_state is DesiredState.LAUNCHED
        # Replacing with a non-global body drops the mirror in the same txn.
        await reg.replace_unit(
            "g.service", PLAIN, sha(PLAIN), DesiredState.LAUNCHED, is_global=False
        )
        assert await reg.list_global_units() == {}
        await reg.replace_unit(
            "g.service", GLOBAL_BODY, sha(GLOBAL_BODY), DesiredState.LAUNCHED, is_global=True
        )
        assert set(await reg.list_global_units()) == {"g.service"}
        await reg.destroy_unit("g.service")
        assert await reg.list_global_units() == {}


@async_test
async def test_collect_garbage_removes_only_unreferenced_bodies(
    etcd: EtcdProcess, etcd_prefix: str
) -> None:
    async with await connect(etcd, etcd_prefix) as reg:
        await reg.create_unit(
            "a.service", PLAIN, sha(PLAIN), DesiredState.LAUNCHED, is_global=False
        )
        await reg.create_unit(
            "b.service", PLAIN, sha(PLAIN), DesiredState.LAUNCHED, is_global=False
        )
        await reg.create_unit(
            "c.service", OTHER, sha(OTHER), DesiredState.LAUNCHED, is_global=False
        )
        assert await reg.collect_garbage() == 0
        await reg.destroy_unit("a.service")
        await reg.destroy_unit("c.service")
        assert await reg.collect_garbage() == 1  # OTHER; PLAIN is still used by b
        assert await reg.get_unit_bodies([sha(PLAIN), sha(OTHER)]) == {sha(PLAIN): PLAIN}
        await reg.destroy_unit("b.service")
        assert await reg.collect_garbage() == 1
        assert await reg.get_unit_bodies([sha(PLAIN)]) == {}


@async_test
async def test_collect_garbage_guard_rejects_a_job_written_after_the_read(
    etcd: EtcdProcess, etcd_prefix: str
) -> None:
    async with await connect(etcd, etcd_prefix) as reg:
        await reg.create_unit(
            "a.service", PLAIN, sha(PLAIN), DesiredState.LAUNCHED, is_global=False
        )
        await reg.destroy_unit("a.service")
        read_revision = await current_revision(reg)
        # A client re-creates a job for the same body between GC's read and delete.
        await reg.create_unit(
            "b.service", PLAIN, sha(PLAIN), DesiredState.LAUNCHED, is_global=False
        )
        from fleet.registry.keys import range_end
        from fleet.registry.ops import LESS, delete, modified

        guard = modified(reg.keys.jobs(), read_revision + 1, LESS, range_end(reg.keys.jobs()))
        response = await reg._txn([guard], [delete(reg.keys.unit(sha(PLAIN)))])
        assert not response.succeeded
        assert await reg.get_unit_body(sha(PLAIN)) == PLAIN
        assert await reg.collect_garbage() == 0
