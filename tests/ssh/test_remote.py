"""fleetctl's SSH-backed commands (ssh, status, journal, restart) and ``--tunnel``,
run as a subprocess against a real etcd and a real sshd.

The machines are simulated: the test registers them in etcd (public IP
127.0.0.1, so "their" sshd is the fixture's) and plays engine and agent by
writing the schedule and unit states. This host's PID 1 is not systemd, so the
SSH sessions find fake ``systemctl``/``journalctl`` first on their PATH; they
record their argv, which is what the tests assert on.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import pytest

from fleet import units
from fleet.cluster.etcd import EtcdProcess, free_port
from fleet.core.model import DesiredState, Machine, UnitState
from fleet.core.unitfile import UnitFile
from fleet.ports import ScheduleChange
from fleet.registry.etcd import EtcdRegistry
from tests.asyncsupport import eventually
from tests.fleetctl.support import UNITS, Result, command, env, etcd_flags
from tests.functional.cluster import wait_for
from tests.ssh.conftest import SSHServer

pytestmark = pytest.mark.etcd

M1 = "aaaa1111" + "1" * 24
M2 = "bbbb2222" + "2" * 24
HELLO = UnitFile.parse((UNITS / "hello.service").read_text())
GLOBAL = UnitFile.parse((UNITS / "global.service").read_text())

FAKE_TOOL = """#!/bin/sh
echo "$(basename "$0") $*" >> {log}
echo "fake $(basename "$0") $*"
case "$*" in *failing*) exit 3;; esac
exit 0
"""
FAKE_SUDO = """#!/bin/sh
echo "sudo $*" >> {log}
exec "$@"
"""


@dataclass(frozen=True)
class Placed:
    name: str
    unit: UnitFile
    state: DesiredState
    machines: tuple[str, ...] = ()


# hello on M1, aaaa1111.service (a name that is also M1's prefix) and failing on M2,
# global on both, idle nowhere.
LAYOUT = (
    Placed("hello.service", HELLO, DesiredState.LAUNCHED, (M1,)),
    Placed("failing.service", HELLO, DesiredState.LAUNCHED, (M2,)),
    Placed("aaaa1111.service", HELLO, DesiredState.LOADED, (M2,)),
    Placed("global.service", GLOBAL, DesiredState.LAUNCHED, (M1, M2)),
    Placed("idle.service", HELLO, DesiredState.INACTIVE),
)


def unit_state(placed: Placed, machine: str, fleet_state: DesiredState) -> UnitState:
    active = "active" if fleet_state is DesiredState.LAUNCHED else "inactive"
    return UnitState(placed.name, machine, "loaded", active, "dead", placed.unit.hash, fleet_state)


async def seed(
    endpoint: str, prefix: str, machines: Sequence[str], layout: Sequence[Placed]
) -> None:
    """Register machines and place units as engine and agents would. Leases outlive
    this connection (60 s TTL) so fleetctl sees live machines afterwards."""
    async with await EtcdRegistry.connect([endpoint], prefix, request_timeout=2.0) as registry:
        leases = {
            m: await registry.register_machine(Machine(m, "127.0.0.1"), ttl=60) for m in machines
        }
        leadership = await registry.campaign("engine", "0.1.0", ttl=60)
        assert leadership is not None
        for placed in layout:
            requirements = await units.create_unit(registry, placed.name, placed.unit, placed.state)
            if placed.machines and not requirements.is_global:
                change = ScheduleChange(
                    placed.name, placed.machines[0], placed.unit.hash, placed.state
                )
                await registry.apply_schedule(leadership, [change], {})
            for machine in placed.machines:
                state = unit_state(placed, machine, placed.state)
                await registry.publish_unit_state(leases[machine], state)


class Fleetctl:
    def __init__(self, etcd: EtcdProcess, prefix: str, sshd: SSHServer, tmp: Path) -> None:
        self.etcd = etcd
        self.prefix = prefix
        self.sshd = sshd
        self.known_hosts = tmp / "known_hosts"
        self.log = sshd.dir / "calls.log"
        self.ssh_flags = (
            "--ssh-username=root",
            f"--ssh-identity-file={sshd.client_key}",
            f"--known-hosts-file={self.known_hosts}",
        )
        for tool in ("systemctl", "journalctl"):
            self._script(tool, FAKE_TOOL)
        self._script("sudo", FAKE_SUDO)

    def _script(self, name: str, text: str) -> None:
        path = self.sshd.bin / name
        path.write_text(text.format(log=self.log))
        path.chmod(0o755)

    def __call__(
        self,
        *args: str,
        stdin: str = "",
        strict: bool = False,
        driver: Sequence[str] | None = None,
        extra_env: dict[str, str] | None = None,
    ) -> Result:
        flags = list(driver or etcd_flags(self.etcd.endpoint, self.prefix))
        flags += self.ssh_flags
        if not strict:
            flags.append("--strict-host-key-checking=false")
        done = subprocess.run(
            command(*flags, *args),
            cwd=UNITS,
            env=env({"SSH_AUTH_SOCK": "", **(extra_env or {})}),
            input=stdin,
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
        return Result(done.returncode, done.stdout, done.stderr)

    def calls(self) -> list[str]:
        return self.log.read_text().splitlines() if self.log.exists() else []


@pytest.fixture
def fleetctl(etcd: EtcdProcess, etcd_prefix: str, sshd: SSHServer, tmp_path: Path) -> Fleetctl:
    asyncio.run(seed(etcd.endpoint, etcd_prefix, (M1, M2), LAYOUT))
    return Fleetctl(etcd, etcd_prefix, sshd, tmp_path)


# --- ssh --------------------------------------------------------------------------------

SSH_CASES = [
    pytest.param(("aaaa", "echo", "foo"), 0, "foo\n", "", id="machine-prefix"),
    pytest.param(("--machine", "bbbb", "--", "echo", "bar"), 0, "bar\n", "", id="machine-flag"),
    pytest.param(("-u", "hello.service", "echo", "u"), 0, "u\n", "", id="unit-flag"),
    pytest.param(("hello", "echo", "-n", "x"), 0, "x", "", id="bare-unit-and-dash-arg"),
    pytest.param(("aaaa", "exit 3"), 3, "", "", id="exit-status"),
    pytest.param(("aaaa", "echo", "a", "--", "echo", "b"), 0, "b\n", "", id="after-dashes"),
    pytest.param(
        ("aaaa1111", "true"),
        1,
        "",
        "Unable to proceed: ambiguous argument, both machine and unit found for `aaaa1111`.\n"
        "Please use flag `-m` or `-u` to refine the search\n",
        id="ambiguous",
    ),
    pytest.param(
        ("zzzz", "true"),
        1,
        "",
        "Unable to proceed: could not find matching unit or machine\n",
        id="no-match",
    ),
    pytest.param(
        ("--unit", "global.service", "true"),
        1,
        "",
        "Unable to proceed: global units unsupported\n",
        id="global-unit",
    ),
    pytest.param(
        ("--unit", "idle.service", "true"),
        1,
        "",
        "Requested machine could not be found.\n",
        id="unscheduled-unit",
    ),
    pytest.param(
        ("-m", "aaaa", "-u", "hello", "true"),
        1,
        "",
        "Both machine and unit flags provided, please specify only one.\n",
        id="both-flags",
    ),
]


@pytest.mark.parametrize(("args", "code", "out", "err"), SSH_CASES)
def test_ssh(fleetctl: Fleetctl, args: tuple[str, ...], code: int, out: str, err: str) -> None:
    result = fleetctl("ssh", f"--ssh-port={fleetctl.sshd.port}", *args)
    assert result.code == code, result.err
    assert result.out == out
    if err:
        assert result.err == err


def test_ssh_through_tunnel_hops_via_bastion(fleetctl: Fleetctl) -> None:
    # Bastion and machine are the same sshd here: it authenticates twice, the
    # bastion for the etcd forward and the ssh hop, then the machine.
    port = fleetctl.sshd.port
    log = fleetctl.sshd.dir / "sshd.log"
    before = log.read_text().count("Accepted publickey")
    result = fleetctl(f"--tunnel=127.0.0.1:{port}", "ssh", f"--ssh-port={port}", "aaaa", "echo hop")
    assert (result.code, result.out) == (0, "hop\n"), result.err
    assert log.read_text().count("Accepted publickey") - before == 2


# --- status -----------------------------------------------------------------------------

STATUS_CASES = [
    pytest.param(("hello.service",), 0, ["systemctl status -l hello.service"], id="one"),
    pytest.param(
        ("hello", "aaaa1111.service"),
        0,
        ["systemctl status -l hello.service", "systemctl status -l aaaa1111.service"],
        id="two-units",
    ),
    pytest.param(
        ("failing", "hello"), 3, ["systemctl status -l failing.service"], id="stops-at-failure"
    ),
    pytest.param(
        ("global.service",),
        0,
        ["systemctl status global.service", "systemctl status global.service"],
        id="global-on-every-machine",
    ),
    pytest.param(
        ("--no-block", "global.service"),
        0,
        ["systemctl status global.service"] * 2,
        id="no-block-accepted",
    ),
]


@pytest.mark.parametrize(("args", "code", "calls"), STATUS_CASES)
def test_status_runs_systemctl_on_the_units_machine(
    fleetctl: Fleetctl, args: tuple[str, ...], code: int, calls: list[str]
) -> None:
    result = fleetctl("status", f"--ssh-port={fleetctl.sshd.port}", *args)
    assert result.code == code, result.err
    assert fleetctl.calls() == calls
    # systemctl's own separator: a blank line between units.
    assert result.out == "\n".join(f"fake {call}\n" for call in calls)


@pytest.mark.parametrize(
    ("unit", "message"),
    [
        pytest.param("nothere", "Unit nothere.service does not exist.", id="missing"),
        pytest.param("idle", "Unit idle.service does not appear to be loaded.", id="inactive"),
    ],
)
def test_status_refuses(fleetctl: Fleetctl, unit: str, message: str) -> None:
    result = fleetctl("status", f"--ssh-port={fleetctl.sshd.port}", "hello", unit)
    assert (result.code, result.err, result.out) == (1, message + "\n", "")
    assert fleetctl.calls() == []  # every argument is checked before anything runs


def test_status_on_this_machine_runs_locally(
    etcd: EtcdProcess, etcd_prefix: str, sshd: SSHServer, tmp_path: Path
) -> None:
    local = Path("/etc/machine-id").read_text().strip()
    asyncio.run(
        seed(
            etcd.endpoint,
            etcd_prefix,
            (local,),
            [Placed("here.service", HELLO, DesiredState.LAUNCHED, (local,))],
        )
    )
    fleetctl = Fleetctl(etcd, etcd_prefix, sshd, tmp_path)
    # A closed SSH port: only a local run can succeed.
    path = f"{sshd.bin}:{os.environ['PATH']}"
    result = fleetctl("status", f"--ssh-port={free_port()}", "here", extra_env={"PATH": path})
    assert (result.code, result.out) == (0, "fake systemctl status -l here.service\n"), result.err
    assert fleetctl.calls() == ["systemctl status -l here.service"]


# --- journal ----------------------------------------------------------------------------

JOURNAL_CASES = [
    pytest.param(
        ("hello",),
        0,
        ["journalctl --unit hello.service --no-pager -n 10 --output short"],
        id="defaults",
    ),
    pytest.param(
        ("--lines", "3", "-f", "--sudo", "--output=json", "hello.service"),
        0,
        [
            "sudo journalctl --unit hello.service --no-pager -n 3 --output json -f",
            "journalctl --unit hello.service --no-pager -n 3 --output json -f",
        ],
        id="all-flags",
    ),
    pytest.param(
        ("failing",),
        3,
        ["journalctl --unit failing.service --no-pager -n 10 --output short"],
        id="exit-status",
    ),
]


@pytest.mark.parametrize(("args", "code", "calls"), JOURNAL_CASES)
def test_journal(fleetctl: Fleetctl, args: tuple[str, ...], code: int, calls: list[str]) -> None:
    result = fleetctl("journal", f"--ssh-port={fleetctl.sshd.port}", *args)
    assert result.code == code, result.err
    assert fleetctl.calls() == calls
    assert result.out == f"fake {calls[-1]}\n"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        pytest.param(
            ("global",), "Unable to retrieve journal of global unit global.service.", id="global"
        ),
        pytest.param(("idle",), "Unit idle.service does not appear to be running.", id="inactive"),
        pytest.param(("nothere",), "Unit nothere.service does not exist.", id="missing"),
        pytest.param(("hello", "idle"), "One unit file must be provided.", id="two-units"),
    ],
)
def test_journal_refuses(fleetctl: Fleetctl, args: tuple[str, ...], message: str) -> None:
    result = fleetctl("journal", f"--ssh-port={fleetctl.sshd.port}", *args)
    assert (result.code, result.err) == (1, message + "\n")
    assert fleetctl.calls() == []


# --- restart ----------------------------------------------------------------------------


def test_restart_global_unit_restarts_it_on_every_machine(fleetctl: Fleetctl) -> None:
    result = fleetctl("restart", f"--ssh-port={fleetctl.sshd.port}", "global.service", "idle")
    assert result.code == 0, result.err
    assert result.err == "Unable to restart unit idle.service in state inactive\n"
    assert fleetctl.calls() == ["systemctl restart global.service"] * 2


def asked_for(wanted: DesiredState, *, instead_of: DesiredState) -> Callable[[DesiredState], bool]:
    return lambda desired: desired is wanted and desired is not instead_of


async def play_agent(
    endpoint: str, prefix: str, name: str, steps: Sequence[DesiredState], ready: asyncio.Event
) -> list[DesiredState]:
    """Answer each desired-state change of ``name`` on M1 with the matching state report."""
    seen: list[DesiredState] = []
    async with await EtcdRegistry.connect([endpoint], prefix, request_timeout=2.0) as registry:
        lease = await registry.register_machine(Machine(M1, "127.0.0.1"), ttl=30)
        placed = Placed(name, HELLO, DesiredState.LAUNCHED, (M1,))
        await registry.publish_unit_state(lease, unit_state(placed, M1, DesiredState.LAUNCHED))
        ready.set()

        async def desired() -> DesiredState:
            job = await registry.get_job(name)
            assert job is not None
            return job.desired_state

        loop = asyncio.get_running_loop()
        deadline = loop.time() + 20  # for all the steps together
        current = DesiredState.LAUNCHED
        for wanted in steps:
            await eventually(
                desired,
                asked_for(wanted, instead_of=current),
                timeout=max(0.0, deadline - loop.time()),
                interval=0.05,
                what=f"fleetctl asking for {wanted}",
            )
            seen.append(wanted)
            current = wanted
            await registry.publish_unit_state(lease, unit_state(placed, M1, wanted))
    return seen


def test_restart_launched_unit_stops_then_starts(
    etcd: EtcdProcess, etcd_prefix: str, sshd: SSHServer, tmp_path: Path
) -> None:
    # Only the engine's half is seeded: the agent is played while fleetctl waits.
    async def seed_engine() -> None:
        async with await EtcdRegistry.connect(
            [etcd.endpoint], etcd_prefix, request_timeout=2.0
        ) as registry:
            await units.create_unit(registry, "hello.service", HELLO, DesiredState.LAUNCHED)
            leadership = await registry.campaign("engine", "0.1.0", ttl=60)
            assert leadership is not None
            change = ScheduleChange("hello.service", M1, HELLO.hash, DesiredState.LAUNCHED)
            await registry.apply_schedule(leadership, [change], {})

    asyncio.run(seed_engine())
    fleetctl = Fleetctl(etcd, etcd_prefix, sshd, tmp_path)

    async def scenario() -> tuple[list[DesiredState], Result]:
        ready = asyncio.Event()
        steps = [DesiredState.LOADED, DesiredState.LAUNCHED]
        agent = asyncio.create_task(
            play_agent(etcd.endpoint, etcd_prefix, "hello.service", steps, ready)
        )
        await ready.wait()
        result = await asyncio.to_thread(fleetctl, "restart", "hello.service")
        return await agent, result

    steps, result = asyncio.run(scenario())
    assert result.code == 0, result.err
    assert steps == [DesiredState.LOADED, DesiredState.LAUNCHED]
    assert result.out.splitlines() == [
        "Unit hello.service loaded on aaaa1111.../127.0.0.1",
        "Unit hello.service launched on aaaa1111.../127.0.0.1",
    ]


# --- --tunnel ---------------------------------------------------------------------------


def test_tunnel_known_hosts_verification(fleetctl: Fleetctl) -> None:
    """fleet's TestKnownHostsVerification, through fleetctl and the etcd driver."""
    tunnel = f"--tunnel=127.0.0.1:{fleetctl.sshd.port}"
    host = f"[127.0.0.1]:{fleetctl.sshd.port}"

    first = fleetctl(tunnel, "submit", "hello@.service", stdin="yes\n", strict=True)
    assert first.code == 0, first.err
    assert f"The authenticity of host '{host}' can't be established." in first.err
    assert f"Warning: Permanently added '{host}' (ED25519) to the list of known hosts." in (
        first.err
    )
    assert fleetctl.known_hosts.read_text().startswith(f"{host} ssh-ed25519 ")

    listed = fleetctl(tunnel, "list-unit-files", "--no-legend", "--fields=unit", strict=True)
    assert listed.code == 0, listed.err
    assert "hello@.service" in listed.out.splitlines()
    assert listed.err == ""

    fleetctl.sshd.new_host_key()
    known = fleetctl.known_hosts.read_text()
    refused = fleetctl(tunnel, "list-unit-files", stdin="yes\n", strict=True)
    assert (refused.code, refused.out) == (1, "")
    assert "WARNING: REMOTE HOST IDENTIFICATION HAS CHANGED!" in refused.err
    assert fleetctl.known_hosts.read_text() == known

    fleetctl.known_hosts.write_text("")
    again = fleetctl(tunnel, "list-unit-files", "--no-legend", stdin="y\n", strict=True)
    assert again.code == 0, again.err
    assert "hello@.service" in again.out


def test_tunnel_unknown_host_declined(fleetctl: Fleetctl) -> None:
    result = fleetctl(f"--tunnel=127.0.0.1:{fleetctl.sshd.port}", "list-units", strict=True)
    assert result.code == 1
    assert result.err.splitlines()[-1].startswith("host key verification failed")
    assert not fleetctl.known_hosts.exists()


def test_tunnel_to_closed_port_is_one_clear_error(fleetctl: Fleetctl) -> None:
    port = free_port()
    result = fleetctl(f"--tunnel=127.0.0.1:{port}", "--ssh-timeout=2", "list-units")
    assert result.code == 1
    assert result.err.count("\n") == 1
    assert f"[127.0.0.1]:{port}" in result.err


@pytest.fixture
def api_socket(etcd: EtcdProcess, etcd_prefix: str) -> Iterator[Path]:
    """A real fleet API server on a unix socket (a child process)."""
    directory = Path(os.path.realpath("/tmp")) / f"fleet-tunnel-{os.getpid()}-{free_port()}"
    directory.mkdir()
    path = directory / "fleet.sock"
    code = (
        "import asyncio, sys\n"
        "from fleet.api.app import create_app\n"
        "from fleet.api.server import serve\n"
        "from fleet.registry.etcd import EtcdRegistry\n"
        "async def main():\n"
        "    registry = await EtcdRegistry.connect([sys.argv[1]], sys.argv[2])\n"
        "    app = create_app(registry, machine_id='api', version='0')\n"
        "    await serve(app, unix_path=sys.argv[3])\n"
        "asyncio.run(main())\n"
    )
    proc = subprocess.Popen(
        [sys.executable, "-c", code, etcd.endpoint, etcd_prefix, str(path)],
        env=env(),
    )
    try:
        wait_for(
            lambda: path.exists() or proc.poll() is not None,
            10,
            interval=0.05,
            what="the API server's socket",
        )
        assert path.exists(), "the API server died"
        yield path
    finally:
        proc.terminate()
        proc.wait(timeout=10)
        for leftover in directory.iterdir():
            leftover.unlink()
        directory.rmdir()


def test_api_driver_through_tunnel_uses_fd_forward(fleetctl: Fleetctl, api_socket: Path) -> None:
    # `fleetctl` on the bastion's PATH is this checkout.
    wrapper = fleetctl.sshd.bin / "fleetctl"
    wrapper.write_text(
        f"#!/bin/sh\nexport PYTHONPATH={UNITS.parents[2]}\n"
        f'echo "fleetctl $*" >> {fleetctl.log}\n'
        f'exec {sys.executable} -m fleetctl "$@"\n'
    )
    wrapper.chmod(0o755)
    driver = ["--driver=api", f"--endpoint=unix://{api_socket}"]
    tunnel = f"--tunnel=127.0.0.1:{fleetctl.sshd.port}"
    listed = fleetctl(tunnel, "list-unit-files", "--no-legend", "--fields=unit", driver=driver)
    assert listed.code == 0, listed.err
    assert listed.out.splitlines() == sorted(placed.name for placed in LAYOUT)
    assert fleetctl.calls() == [f"fleetctl fd-forward {api_socket}"]
