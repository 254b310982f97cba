"""Rolling commands (B6) through both drivers: every refusal is one line with nothing
written; the pure parts (globs, durations, the summary) by table.

The runs themselves (units judged healthy, pause, rollback, restarts N at a
time) need agents and systemd: tests/functional/test_rolling.py.
"""

from __future__ import annotations

from pathlib import Path

import click
import pytest

from fleet import units
from fleet.cluster.etcd import EtcdProcess
from fleet.core.model import DesiredState
from fleet.core.unitfile import UnitFile
from fleet.errors import InvalidInput
from fleetctl.commands.rolling import Duration, expand_globs
from fleetctl.rolling import Step, summary
from tests.api.support import served_api
from tests.asyncsupport import async_test
from tests.fleetctl.support import etcd_flags, one_line, run_async
from tests.registry.support import dump

PLAIN = UnitFile.parse("[Service]\nExecStart=/bin/sleep 1000\n")
GLOBAL = UnitFile.parse("[Service]\nExecStart=/bin/true\n\n[X-Fleet]\nGlobal=true\n")
ROLL = ("--max-parallel", "1", "--min-healthy-time", "1s")

REFUSALS = [
    pytest.param(
        ("start", "--replace", *ROLL, "glob.service"), 1,
        "cannot roll out new content of global unit glob.service", id="global-in-registry",
    ),
    pytest.param(
        ("start", "--replace", *ROLL, "g@1.service"), 1,
        "cannot roll out new content of global unit g@1.service", id="global-local-template",
    ),
    pytest.param(
        ("start", "--replace", *ROLL, "nope@*"), 1,
        "no unit in the cluster matches 'nope@*'", id="glob-matches-nothing",
    ),
    pytest.param(
        ("start", "--replace", *ROLL, "web@*", "glob.service"), 1,
        "cannot roll out new content of global unit glob.service", id="batch-refused-whole",
    ),
    pytest.param(
        ("start", *ROLL, "web@1.service"), 2, "Error: --max-parallel goes with --replace",
        id="no-replace",
    ),
    pytest.param(
        ("start", "--replace", "--max-parallel", "0", "web@1.service"), 2,
        "Error: Invalid value for '--max-parallel'", id="zero-parallel",
    ),
    pytest.param(
        ("rolling-restart", "--min-healthy-time", "soon", "web@1.service"), 2,
        "Error: Invalid value for '--min-healthy-time'", id="bad-duration",
    ),
    pytest.param(
        ("rolling-restart", "web@1.service", "missing.service"), 1,
        "unable to find unit missing.service", id="restart-unknown-unit",
    ),
    pytest.param(
        ("rolling-restart", "--on-failure", "rollback", "web@1.service"), 2,
        "Error: Invalid value for '--on-failure'", id="restart-has-no-rollback",
    ),
]  # fmt: skip


@pytest.mark.etcd
@pytest.mark.parametrize(("args", "code", "message"), REFUSALS)
def test_refusals_write_nothing(
    etcd: EtcdProcess,
    etcd_prefix: str,
    tmp_path: Path,
    *,
    args: tuple[str, ...],
    code: int,
    message: str,
) -> None:
    (tmp_path / "web@.service").write_text("[Service]\nExecStart=/bin/sleep 2000\n")
    (tmp_path / "g@.service").write_text(GLOBAL.serialize())
    (tmp_path / "glob.service").write_text(GLOBAL.serialize().replace("true", "false"))

    @async_test
    async def run() -> None:
        async with served_api(etcd, etcd_prefix) as api:
            await units.create_unit(api.registry, "web@1.service", PLAIN, DesiredState.LAUNCHED)
            await units.create_unit(api.registry, "web@2.service", PLAIN, DesiredState.LAUNCHED)
            await units.create_unit(api.registry, "glob.service", GLOBAL, DesiredState.LAUNCHED)
            before = await dump(api.registry)
            drivers = {
                "api": (f"--endpoint=unix://{api.socket_path}",),
                "etcd": etcd_flags(etcd.endpoint, etcd_prefix),
            }
            for driver, flags in drivers.items():
                done = await run_async(*flags, *args, cwd=tmp_path)
                assert done.code == code, (driver, done)
                assert one_line(done.err).startswith(message), (driver, done.err)
                assert done.out == ""
                assert await dump(api.registry) == before

    run()


def test_expand_globs_against_the_cluster_units() -> None:
    names = ["api.service", "web@.service", "web@1.service", "web@2.service", "web@x.socket"]
    assert expand_globs(["web@*"], names) == ["web@1.service", "web@2.service"]
    assert expand_globs(["dir/web@?.service", "api"], names) == [
        "dir/web@1.service",
        "dir/web@2.service",
        "api",
    ]
    assert expand_globs(["web@*.socket"], names) == ["web@x.socket"]
    with pytest.raises(InvalidInput, match="no unit in the cluster matches 'db@\\*'"):
        expand_globs(["db@*"], names)


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("5", 5.0), ("1s", 1.0), ("500ms", 0.5), ("2m", 120.0), ("1.5s", 1.5), ("1h", 3600.0)],
)
def test_durations(text: str, seconds: float) -> None:
    assert Duration().convert(text, None, None) == seconds


def test_duration_refuses_words() -> None:
    with pytest.raises(click.BadParameter):
        Duration().convert("5 parsecs", None, None)


def test_summary_says_which_units_run_what() -> None:
    steps = [
        Step("a.service", new=PLAIN, done="ok"),
        Step("b.service", new=PLAIN, done="failed", failed=True),
        Step("c.service", new=PLAIN),
        Step("d.service", new=PLAIN, done="rolled back", failed=True),
        Step("e.service", done="ok"),  # unchanged content, only started
    ]
    assert summary(steps, replacing=True) == [
        "new content: a.service, b.service",
        "failed: b.service, d.service",
        "old content: c.service",
        "old content (rolled back): d.service",
        "unchanged content, started: e.service",
    ]
    restarts = [Step("g.service", machine_id="1" * 32, done="ok"), Step("h.service")]
    assert summary(restarts, replacing=False) == [
        "restarted: g.service on 11111111...",
        "not restarted: h.service",
    ]
