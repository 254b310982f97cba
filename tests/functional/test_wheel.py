"""fleet as a user gets it: the wheel of this checkout, installed in a fresh virtualenv.

The wheel is built once (``pip wheel --no-deps`` of a copy of the checkout, so
the checkout gets no ``build/``); every venv is new, made under /var/tmp (the
machines mount their own /tmp, so a venv there would be invisible to them) and
installed with ``-c constraints.txt``. Nothing runs from the editable install:
the commands run from the new venv with a scrubbed environment (no
``PYTHONPATH``, no ``FLEETCTL_*``, no ssh-agent, an empty ``HOME``, so no
``~/.ssh`` key or ``~/.fleetctl/known_hosts`` can help).

* A laptop install (no extra): pip's ``--report`` of the install (what
  ``--dry-run --report`` would say, from an install the test then uses) lists
  fleetctl's libraries and none of the daemon's; ``fleetd`` says in one line
  that it needs the daemon extra and exits 1; fleetctl runs with both drivers;
  ``fleet-cluster up`` refuses before touching anything.
* ``fleet[daemon]``: the documentation's console blocks, run as written (with
  the substitutions :func:`_adapt` lists) against a cluster that the venv's
  ``fleet-cluster`` boots: docs/local-cluster.md's block (``up`` to ``down``)
  around the README's (``eval "$(fleet-cluster env)"``, ``fleetctl start``,
  ``fleetctl list-units``, their output compared with the README's). In
  between, ``fleetctl ssh``, ``status``, ``journal`` and ``--tunnel`` with
  stdin closed: the env's identity file and known_hosts are all they have, also
  after ``replace`` and ``add`` changed the machines. After ``down``, nothing is
  left: no state dir, bridge, netns, machine, cgroup, mount, claim or etcd.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import pytest

from fleet.cluster import claims, footprint
from tests.docexamples import REPO, Example, console_block

pytestmark = pytest.mark.functional

PREFIX, SUBNET, BRIDGE = "fwhn", "10.251.230", "fwhbr"
LAYOUT_ARGS = ("--prefix", PREFIX, "--subnet", SUBNET, "--bridge", BRIDGE, "--etcd-port", "0")
WORK_ROOT = Path("/var/tmp")  # on the host's root file system: the machines see it
DAEMON_STACK = {"fastapi", "uvicorn", "dbus-fast", "prometheus-client"}
FLEETCTL_STACK = {"aetcd", "grpcio", "protobuf", "paramiko", "click", "httpx"}
_COPY_IGNORED = shutil.ignore_patterns(
    ".git", ".venv", "build", "dist", "*.egg-info", "__pycache__", ".*_cache", ".hypothesis"
)
_MACHINE = re.compile(r"\b[0-9a-f]{8}\.\.\./\d{1,3}(?:\.\d{1,3}){3}\b")
T = TypeVar("T")


@dataclass
class Wheel:
    path: Path
    work: Path  # holds the wheel, the venvs and the cluster's state dir
    build_seconds: float
    reported: bool = False

    def report(self, timings: dict[str, float]) -> None:
        if not self.reported:
            timings["wheel build"] = self.build_seconds
            self.reported = True


def _run(
    argv: Sequence[str | Path],
    *,
    env: Mapping[str, str] | None = None,
    cwd: Path = REPO,
    timeout: float = 180,
    check: bool = True,
) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(
        [str(a) for a in argv],
        env=env,
        cwd=cwd,
        stdin=subprocess.DEVNULL,  # nothing can answer a prompt
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    if check and proc.returncode != 0:
        raise AssertionError(
            f"{' '.join(map(str, argv))} exited {proc.returncode}\n"
            f"stdout: {proc.stdout}\nstderr: {proc.stderr}"
        )
    return proc


def _poll(predicate: Callable[[], T | None], timeout: float, what: str, interval: float = 0.5) -> T:
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value is not None:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not within {timeout:.0f}s")
        time.sleep(interval)


@pytest.fixture(scope="module")
def wheel() -> Iterator[Wheel]:
    work = Path(tempfile.mkdtemp(prefix="fwh", dir=WORK_ROOT))
    try:
        source = work / "src"
        shutil.copytree(REPO, source, symlinks=True, ignore=_COPY_IGNORED)
        started = time.monotonic()
        _run(
            [sys.executable, "-m", "pip", "wheel", "--no-deps", "-w", work / "dist", source],
            cwd=work,
            timeout=300,
        )
        seconds = time.monotonic() - started
        (path,) = (work / "dist").glob("fleet-*.whl")
        shutil.rmtree(source)
        yield Wheel(path, work, seconds)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _install(venv: Path, requirement: str) -> dict[str, Any]:
    """A new venv with ``requirement`` installed under constraints.txt; pip's report."""
    _run([sys.executable, "-m", "venv", "--without-pip", venv])
    report = venv / "pip-report.json"
    _run(
        [
            *(sys.executable, "-m", "pip", "--python", venv / "bin/python"),
            *("install", "--disable-pip-version-check", "--no-input"),
            *("--report", report, "-c", REPO / "constraints.txt", requirement),
        ],
        timeout=600,
    )
    return dict(json.loads(report.read_text()))


def _user_env(venv: Path, home: Path) -> dict[str, str]:
    """A user's shell with ``venv`` installed: its bin/ on PATH and nothing of ours."""
    home.mkdir(exist_ok=True)
    dropped = ("PYTHON", "VIRTUAL_ENV", "FLEETCTL_", "FLEET_", "SSH_AUTH_SOCK", "SSH_AGENT")
    env = {k: v for k, v in os.environ.items() if not k.startswith(dropped)}
    env.update(HOME=str(home), NO_COLOR="1", PATH=f"{venv / 'bin'}:{env.get('PATH', '')}")
    return env


def _down_if_left(state: Path) -> None:
    """After a failure: the editable install's ``down`` removes what is left."""
    if state.exists() or Path("/sys/class/net", BRIDGE).exists():
        subprocess.run(
            [
                *(sys.executable, "-m", "fleet.cluster", "--state-dir", str(state), "down"),
                *("--prefix", PREFIX, "--bridge", BRIDGE),
            ],
            capture_output=True,
            check=False,
            timeout=120,
        )


def _one_line(stream: str) -> str:
    assert stream.count("\n") == 1, stream
    assert "Traceback" not in stream, stream
    return stream.strip()


def _names(report: Mapping[str, Any]) -> set[str]:
    return {re.sub(r"[-_.]+", "-", item["metadata"]["name"]).lower() for item in report["install"]}


def test_a_laptop_install_is_fleetctl_without_the_daemon_stack(
    wheel: Wheel, report_timings: dict[str, float]
) -> None:
    started = time.monotonic()
    wheel.report(report_timings)
    venv = wheel.work / "laptop"
    report = _install(venv, str(wheel.path))
    report_timings["venv + install (no extra)"] = time.monotonic() - started
    installed = _names(report)
    assert not installed & DAEMON_STACK, sorted(installed)
    assert {"fleet", *FLEETCTL_STACK} <= installed, sorted(installed)
    env = _user_env(venv, wheel.work / "laptop-home")
    bin_dir = venv / "bin"

    fleetd = _run([bin_dir / "fleetd"], env=env, check=False)
    assert fleetd.returncode == 1
    assert fleetd.stdout == ""
    assert _one_line(fleetd.stderr).startswith(
        "fleetd: needs fleet's daemon extra (pip install 'fleet[daemon]'); missing: "
    )

    version = _run([bin_dir / "fleetctl", "--version"], env=env)
    assert re.fullmatch(r"fleetctl version \S+\n", version.stdout)
    # Both drivers load (gRPC/aetcd, httpx) and fail in one line when nothing answers.
    for driver in (
        ["--driver=etcd", "--endpoint=http://127.0.0.1:9", "--request-timeout=1"],
        [f"--endpoint=unix://{wheel.work}/no-fleet.sock"],
    ):
        proc = _run([bin_dir / "fleetctl", *driver, "list-machines"], env=env, check=False)
        assert proc.returncode == 1, proc
        _one_line(proc.stderr)

    state = wheel.work / "laptop-state"
    try:
        proc = _run(
            [bin_dir / "fleet-cluster", "--state-dir", state, "up", "-n", "1", *LAYOUT_ARGS],
            env=env,
            check=False,
        )
        touched = state.exists() or Path("/sys/class/net", BRIDGE).exists()
    finally:
        _down_if_left(state)
    assert proc.returncode == 1, proc
    assert "needs fleet's daemon extra" in _one_line(proc.stderr)
    assert not touched
    report_timings["whole test"] = time.monotonic() - started


# ------------------------------------------------------------------ the documented session


def _adapt(example: Example, venv: Path) -> str:
    """A documented line, made to run here:

    - ``.venv/bin/`` (the README's scripts/setup.sh venv) is the new venv's bin/;
    - ``fleet-cluster up`` gets this test's layout (prefix, subnet, bridge, any
      etcd port); the state dir comes from ``FLEET_CLUSTER_STATE_DIR``;
    - machines ``fleet<N>`` are ``fwhn<N>``;
    - ``exec ... journalctl -f`` loses ``-f`` (it would follow for ever).
    """
    text = example.text.replace(".venv/bin/", f"{venv}/bin/")
    text = re.sub(r"\bfleet(\d+)\b", rf"{PREFIX}\1", text)
    if example.words[:2] == ["fleet-cluster", "up"]:
        text += " " + " ".join(LAYOUT_ARGS)
    if example.words[:2] == ["fleet-cluster", "exec"] and example.words[-1] == "-f":
        text = text.removesuffix(" -f")
    return text


def _normalized(lines: Sequence[str]) -> list[str]:
    """Machine ids and IPs vary; so does how many tabs align a column."""
    return [
        re.sub(r"\s+", " ", _MACHINE.sub("<machine>", ln)).strip() for ln in lines if ln.strip()
    ]


class Session:
    """A shell that ``eval``s like a user's: commands run by bash in the checkout."""

    def __init__(self, env: dict[str, str], venv: Path) -> None:
        self.env = env
        self.venv = venv

    def line(self, example: Example, *, check: bool = True) -> subprocess.CompletedProcess[str]:
        text = _adapt(example, self.venv)
        if example.words[0] == "eval":
            proc = _run(["bash", "-c", f"{text}\nenv -0"], env=self.env)
            self.env = dict(i.split("=", 1) for i in proc.stdout.split("\0") if "=" in i)
            return proc
        proc = _run(["bash", "-c", text], env=self.env, check=False)
        if check:
            assert proc.returncode == 0, f"{example.where}: {text}\n{proc.stdout}\n{proc.stderr}"
        return proc

    def fleetctl(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        return _run(["fleetctl", *args], env=self.env, check=check)

    def machines(self, hostnames: set[str]) -> list[dict[str, Any]]:
        """fleetctl list-machines once exactly these machines are listed, each once
        (a replaced machine's successor has its name, not its id)."""

        def listed() -> list[dict[str, Any]] | None:
            out = self.fleetctl("list-machines", "-o", "json", check=False).stdout or "[]"
            # -o json also lists lost machines (a replaced machine's predecessor): skip them.
            found = [m for m in json.loads(out) if m.get("status") != "lost"]
            names = sorted(m["metadata"]["hostname"] for m in found)
            return found if names == sorted(hostnames) else None

        return _poll(listed, 30, f"machines {sorted(hostnames)} in list-machines")

    def ssh_each(self, machines: Sequence[Mapping[str, Any]]) -> None:
        for m in machines:
            out = self.fleetctl("ssh", m["machine_id"][:12], "hostname").stdout
            assert out.strip() == m["metadata"]["hostname"]


def _leftovers(state: Path, etcd_pid: int) -> list[str]:
    found = []
    if state.exists():
        found.append(f"state dir {state}")
    if Path("/sys/class/net", BRIDGE).exists():
        found.append(f"bridge {BRIDGE}")
    found += [f"netns {n}" for n in footprint.netns_names() if n.startswith(PREFIX)]
    found += [f"machine {p}" for p in footprint.MACHINES_DIR.glob(f"{PREFIX}*")]
    for root in footprint.cgroup_roots():
        found += [f"cgroup {p}" for p in (root / footprint.CGROUP_GROUP).glob(f"{PREFIX}*")]
    found += [f"mount {p}" for p in footprint.mounts_under(state)]
    found += [f"claim {c}" for c in claims.claims() if c.state_dir == state]
    try:
        cmdline = Path(f"/proc/{etcd_pid}/cmdline").read_bytes()
    except OSError:
        cmdline = b""
    if b"etcd" in cmdline:
        found.append(f"etcd pid {etcd_pid}")
    for proc in Path("/proc").glob("[0-9]*"):
        try:
            if f"--machine={PREFIX}".encode() in (proc / "cmdline").read_bytes():
                found.append(f"nspawn pid {proc.name}")
        except OSError:
            pass
    return found


@pytest.mark.timeout(900)
def test_the_wheel_runs_the_documented_cluster_session(
    wheel: Wheel, report_timings: dict[str, float]
) -> None:
    started = time.monotonic()
    wheel.report(report_timings)
    venv = wheel.work / "venv"
    _install(venv, f"{wheel.path}[daemon]")
    report_timings["venv + install [daemon]"] = time.monotonic() - started
    state = wheel.work / "st"
    env = {**_user_env(venv, wheel.work / "home"), "FLEET_CLUSTER_STATE_DIR": str(state)}
    where = _run(
        [
            venv / "bin/python",
            "-c",
            "import fleet, fleetctl as c; print(fleet.__file__, c.__file__)",
        ],
        env=env,
        cwd=Path("/"),
    )
    assert all(Path(p).is_relative_to(venv) for p in where.stdout.split()), where.stdout

    local = console_block(REPO / "docs/local-cluster.md", "fleet-cluster up")
    readme = console_block(REPO / "README.md", "eval")
    assert [e.words[:2] for e in (local[0], local[1], local[-1])] == [
        ["fleet-cluster", "up"],
        ["eval", "$(fleet-cluster env)"],
        ["fleet-cluster", "down"],
    ]
    session = Session(env, venv)
    etcd_pid = 0
    try:
        booting = time.monotonic()
        up = session.line(local[0])
        report_timings["fleet-cluster up (3 machines, fleetd registered)"] = (
            time.monotonic() - booting
        )
        etcd_pid = int(
            Path(json.loads((state / "cluster.json").read_text())["etcd_pid_file"]).read_text()
        )
        assert json.loads((state / "cluster.json").read_text())["fleetd_path"] == str(
            venv / "bin/fleetd"
        )
        session.line(local[1])
        assert up.stdout == _run(["fleet-cluster", "env"], env=session.env).stdout
        assert shutil.which("fleetctl", path=session.env["PATH"]) == str(venv / "bin/fleetctl")
        assert session.env["FLEETCTL_DRIVER"] == "etcd"
        assert Path(session.env["FLEETCTL_SSH_IDENTITY_FILE"]).is_file()
        known_hosts = Path(session.env["FLEETCTL_KNOWN_HOSTS_FILE"]).read_text()
        assert len(known_hosts.splitlines()) == 3

        # The README's console block, output and all.
        step = time.monotonic()
        session.line(readme[0])
        for example in readme[1:]:
            expected = _normalized(example.output)
            if example.words[1] == "list-units":  # global units start without start waiting

                def shown(
                    example: Example = example, expected: list[str] = expected
                ) -> bool | None:
                    lines = session.line(example).stdout.splitlines()
                    return _normalized(lines) == expected or None

                _poll(shown, 15, f"{example.where}: {expected}")
            else:
                proc = session.line(example)
                assert _normalized(proc.stdout.splitlines()) == expected, (example.where, proc)

        report_timings["README block"] = time.monotonic() - step
        # No prompt, no key or known_hosts of the user's: the env's are enough.
        step = time.monotonic()
        machines = session.machines({f"{PREFIX}{i}" for i in (1, 2, 3)})
        session.ssh_each(machines)
        hello_host = session.fleetctl("ssh", "hello.service", "hostname").stdout.strip()
        assert hello_host in {m["metadata"]["hostname"] for m in machines}
        assert "Active: active (running)" in session.fleetctl("status", "hello.service").stdout
        assert "Hello, World!" in session.fleetctl("journal", "hello.service").stdout
        tunnel = session.fleetctl(
            "--driver=api",
            "--endpoint=unix:///var/run/fleet.sock",
            f"--tunnel={machines[0]['ip']}",
            "list-machines",
            "--no-legend",
        )
        assert len(tunnel.stdout.splitlines()) == 3
        assert not any((wheel.work / "home").iterdir())  # nothing written to ~

        report_timings["ssh, status, journal, --tunnel"] = time.monotonic() - step
        # The rest of docs/local-cluster.md's block, but its `down`.
        step = time.monotonic()
        for example in local[2:-1]:
            session.line(example)
        machines = session.machines({f"{PREFIX}{i}" for i in (1, 2, 3, 4)})
        # replace (new host key) and add (new machine) kept known_hosts current.
        session.ssh_each(machines)
        assert len(Path(session.env["FLEETCTL_KNOWN_HOSTS_FILE"]).read_text().splitlines()) == 4
        report_timings["local-cluster block, status to add, ssh to all 4"] = time.monotonic() - step

        tearing = time.monotonic()
        session.line(local[-1])
        report_timings["fleet-cluster down"] = time.monotonic() - tearing
        assert _leftovers(state, etcd_pid) == []
    finally:
        _down_if_left(state)
    report_timings["whole test"] = time.monotonic() - started
