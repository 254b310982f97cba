"""Agent and partition faults on real systemd machines (issue 13; docs/faults.md).

One cluster of three machines (agent_ttl 3 s) is shared by the scenarios: each
leaves it clean (its units destroyed, every machine registered). A partition
is an iptables rule in the machine's network namespace on its TCP to etcd:
``DROP`` (packets vanish: connections hang) or ``REJECT`` (refused at once).
What each machine's systemd runs is sampled *inside* the machine, by a
transient unit that records ``systemctl is-active`` of the scenario's units
about every 60 ms (never more than 100 ms apart on an idle host), so "ran
twice" and "restarted" are judged on systemd's own view, and MainPIDs tell a
restart from a unit that kept running.

Every scenario asserts: no unit lost (each runs where fleet says at the end),
no unit running twice beyond the documented partition policy, no restart
where none is promised, and convergence within the stated time.
"""

from __future__ import annotations

import itertools
import json
import subprocess
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from fleet.cluster import nodes
from fleet.registry.keys import Keys
from fleet.registry.leases import survivable_blackout
from tests.functional.cluster import VENV_BIN, Cluster
from tests.functional.isolated import journal, private_clusters, unit_property

AGENT_TTL = "3s"
TTL = 3.0
STOP_AFTER = 1.0  # the singleton's StopAfterDisconnect: well below agent_ttl
CONVERGE = 15.0  # seconds after a heal within which every unit runs where it should
# After a DROP heals, a machine whose presence expired registers again once its client's
# stuck connection is given up (gRPC's keepalive: 10 s ping + 5 s timeout) and reopened.
REREGISTER = 25.0
RUNNING = frozenset({"active", "activating", "deactivating", "reloading"})
SAMPLES = "/run/fault-samples"
SAMPLER = "fault-sampler.service"


@pytest.fixture(scope="module")
def cluster() -> Iterator[Cluster]:
    clusters = private_clusters("fag", 150)
    make = next(clusters)
    try:
        yield make(3, agent_ttl=AGENT_TTL)
    finally:
        for _ in clusters:  # resumes the generator: its clusters are stopped
            pass


# --- faults ----------------------------------------------------------------------------------


def partition(cluster: Cluster, node: nodes.Node, mode: str, on: bool) -> None:
    """``mode`` (DROP or REJECT) the machine's TCP to etcd, in its network namespace."""
    port = cluster.endpoint.rsplit(":", 1)[1]
    rule = ["OUTPUT", "-p", "tcp", "--dport", port, "-j", mode]
    argv = ["ip", "netns", "exec", node.netns, "iptables", "-A" if on else "-D", *rule]
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=30, check=False)
    assert proc.returncode == 0, proc.stderr


def etcdctl(cluster: Cluster, *args: str) -> str:
    proc = subprocess.run(
        ["etcdctl", f"--endpoints={cluster.endpoint}", *args],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
        env={"ETCDCTL_API": "3", "PATH": "/usr/bin:/bin"},
    )
    assert proc.returncode == 0, f"etcdctl {args}: {proc.stderr}"
    return proc.stdout


def leader(cluster: Cluster) -> str:
    """The machine id of the engine leader."""
    key = Keys(cluster.config.key_prefix).engine_leader().decode()
    out = etcdctl(cluster, "get", "--print-value-only", key).strip()
    assert out, "no engine leader"
    return str(json.loads(out)["machine_id"])


def not_leading(cluster: Cluster, node: nodes.Node) -> None:
    """Hand the engine leadership away from ``node`` (a restarted fleetd resigns at once
    and resumes its presence: no unit moves). A cut leader would hold its term, 10 s,
    through the cut: no engine could replace the cut machine's units meanwhile."""
    if leader(cluster) != node.machine_id:
        return
    cluster.systemctl(node, "restart", "fleet", check=True)
    cluster.wait_for(lambda: leader(cluster) != node.machine_id, 20, what="another leader")
    cluster.wait_registered(3)


# --- units -----------------------------------------------------------------------------------


def write_unit(tmp_path: Path, name: str, xfleet: str = "", service: str = "") -> str:
    path = tmp_path / name
    body = f"[Service]\nExecStart=/bin/sleep 100000\n{service}"
    if xfleet:
        body += f"\n[X-Fleet]\n{xfleet}\n"
    path.write_text(body)
    return str(path)


def where(cluster: Cluster, unit: str) -> list[nodes.Node]:
    """The machines whose systemd runs ``unit`` now."""
    return [
        m
        for m in cluster.machines
        if cluster.systemctl(m, "is-active", unit).stdout.strip() in RUNNING
    ]


def main_pids(cluster: Cluster, units: Sequence[str]) -> dict[tuple[str, str], str]:
    """(unit, machine name) -> MainPID for every running copy."""
    out: dict[tuple[str, str], str] = {}
    for unit in units:
        for m in where(cluster, unit):
            out[(unit, m.name)] = unit_property(cluster, m, unit, "MainPID")
    return out


def wait_running(
    cluster: Cluster, expected: dict[str, int], timeout: float = CONVERGE, what: str = ""
) -> float:
    """Until each unit runs on exactly its expected number of machines; -> seconds taken."""
    started = time.monotonic()

    def done() -> bool:
        return all(len(where(cluster, u)) == n for u, n in expected.items())

    cluster.wait_for(done, timeout, what=what or f"units running {expected}")
    return time.monotonic() - started


def destroy(cluster: Cluster, *units: str) -> None:
    cluster.fleetctl("destroy", *units)
    cluster.wait_for(
        lambda: all(not where(cluster, u) for u in units), 20, what=f"{units} stopped everywhere"
    )


# --- sampling inside the machines ------------------------------------------------------------


@dataclass
class Samples:
    """Per machine: (time, {unit: running}) rows, about every 60 ms."""

    rows: dict[str, list[tuple[float, dict[str, bool]]]] = field(default_factory=dict)

    def runs(self, unit: str) -> dict[str, list[tuple[float, float]]]:
        """machine -> the intervals (first to last sample) in which ``unit`` ran there."""
        out: dict[str, list[tuple[float, float]]] = {}
        for machine, rows in self.rows.items():
            spans: list[tuple[float, float]] = []
            start: float | None = None
            last = 0.0
            for t, states in rows:
                if states.get(unit, False):
                    start = t if start is None else start
                    last = t
                elif start is not None:
                    spans.append((start, last))
                    start = None
            if start is not None:
                spans.append((start, last))
            out[machine] = spans
        return out

    def twice(self, unit: str) -> list[tuple[float, float]]:
        """The intervals in which ``unit`` was sampled running on two machines at once."""
        runs = self.runs(unit)
        machines = sorted(runs)
        out = []
        for i, a in enumerate(machines):
            for b in machines[i + 1 :]:
                for s1, e1 in runs[a]:
                    for s2, e2 in runs[b]:
                        lo, hi = max(s1, s2), min(e1, e2)
                        if lo <= hi:
                            out.append((lo, hi))
        return sorted(out)

    def together(self, first: str, second: str) -> list[tuple[str, float]]:
        """(machine, time) of every sample in which both units ran on one machine."""
        return [
            (machine, t)
            for machine, rows in self.rows.items()
            for t, states in rows
            if states.get(first) and states.get(second)
        ]

    def widest_gap(self) -> float:
        return max(
            (b[0] - a[0] for rows in self.rows.values() for a, b in itertools.pairwise(rows)),
            default=0.0,
        )


class Sampler:
    def __init__(self, cluster: Cluster, units: Sequence[str]) -> None:
        self.cluster = cluster
        self.units = list(units)

    def __enter__(self) -> Sampler:
        names = " ".join(self.units)
        script = (
            f"rm -f {SAMPLES}; while :; do "
            f'echo "$(date +%s.%N) $(systemctl is-active {names} | tr "\\n" " ")" >> {SAMPLES}; '
            "sleep 0.03; done"
        )
        for m in self.cluster.machines:
            self.cluster.exec(
                m,
                [
                    "systemd-run",
                    f"--unit={SAMPLER}",
                    "--quiet",
                    "--collect",
                    "/bin/bash",
                    "-c",
                    script,
                ],
                check=True,
            )
        return self

    def __exit__(self, *exc: object) -> None:
        for m in self.cluster.machines:
            self.cluster.systemctl(m, "stop", SAMPLER)

    def read(self) -> Samples:
        out = Samples()
        for m in self.cluster.machines:
            text = self.cluster.exec(m, ["cat", SAMPLES]).stdout
            rows = []
            for line in text.splitlines():
                fields = line.split()
                if len(fields) != 1 + len(self.units):
                    continue  # a line cut by the stop
                states = {u: s in RUNNING for u, s in zip(self.units, fields[1:], strict=True)}
                rows.append((float(fields[0]), states))
            out.rows[m.name] = rows
        return out


def assert_sampled(samples: Samples, seconds: float) -> float:
    """The sampler kept up: on every machine at least one sample per 250 ms on average
    (it aims at one per ~60 ms; a host shared with other test runs slows it down).
    -> the mean interval between samples, the slowest machine's."""
    worst = 0.0
    for machine, rows in samples.rows.items():
        assert len(rows) >= seconds / 0.25, f"{machine}: {len(rows)} samples in {seconds:.0f}s"
        worst = max(worst, (rows[-1][0] - rows[0][0]) / max(1, len(rows) - 1))
    return worst


# --- the partition scenarios -----------------------------------------------------------------


def partitioned(
    cluster: Cluster, tmp_path: Path, mode: str, cut_for: float, *, expect_move: bool = True
) -> dict[str, float]:
    try:
        return _partitioned(cluster, tmp_path, mode, cut_for, expect_move)
    finally:  # the next scenario shares the cluster
        cluster.fleetctl("destroy", *PARTITION_UNITS, check=False)


PARTITION_UNITS = (
    "fag-single.service",
    "fag-plain.service",
    "fag-pinned.service",
    "fag-global.service",
)


def _partitioned(
    cluster: Cluster, tmp_path: Path, mode: str, cut_for: float, expect_move: bool
) -> dict[str, float]:
    """One machine cut from etcd (``mode``) for ``cut_for`` seconds while it runs a
    singleton with StopAfterDisconnect (policy), a plain unit (B7 default), a unit
    pinned to it and a global unit; -> measured numbers."""
    single, plain, pinned, glob = (
        "fag-single.service",
        "fag-plain.service",
        "fag-pinned.service",
        "fag-global.service",
    )
    cluster.fleetctl(
        "start",
        "--no-block",
        write_unit(tmp_path, single, f"StopAfterDisconnect={STOP_AFTER:g}s"),
        write_unit(tmp_path, plain, f"MachineOf={single}"),  # on the same machine as single
        write_unit(tmp_path, glob, "Global=true"),
    )
    wait_running(cluster, {single: 1, plain: 1, glob: 3})
    (victim,) = where(cluster, single)
    not_leading(cluster, victim)
    cluster.fleetctl(
        "start", "--no-block", write_unit(tmp_path, pinned, f"MachineID={victim.machine_id}")
    )
    wait_running(cluster, {pinned: 1})
    units = [single, plain, pinned, glob]
    before = main_pids(cluster, units)
    since = time.time()
    with Sampler(cluster, units) as sampler:
        time.sleep(0.5)
        cut_at = time.time()
        partition(cluster, victim, mode, on=True)
        try:
            time.sleep(cut_for)
        finally:
            partition(cluster, victim, mode, on=False)
        healed_at = time.time()
        took = wait_running(cluster, {single: 1, plain: 1, pinned: 1, glob: 3})
        # Settled: the victim re-registered and reconciled (the stale plain copy gone).
        cluster.wait_registered(3, timeout=REREGISTER)
        time.sleep(1.0)
        samples = sampler.read()
    mean_interval = assert_sampled(samples, healed_at - cut_at)
    after = main_pids(cluster, units)

    # The policy: the singleton never ran on two machines, through the cut and the heal.
    assert samples.twice(single) == [], samples.runs(single)
    # B7 default: the plain unit may run twice, only from the cut until shortly after the heal.
    for lo, hi in samples.twice(plain):
        assert cut_at <= lo, (lo, hi, cut_at, healed_at)
        assert hi <= healed_at + CONVERGE, (lo, hi, cut_at, healed_at)
    # Heal rule: the replacement keeps running; the stale copy on the victim is stopped.
    homes = {m.name for m in where(cluster, plain)}
    (new_home,) = homes
    assert {m.name for m in where(cluster, single)} == homes  # MachineOf kept them together
    moved = new_home != victim.name
    if expect_move:
        assert moved, "the presence outlived a cut longer than agent_ttl"
    if moved:
        runs = samples.runs(plain)[new_home]
        assert len(runs) == 1, f"the replacement restarted: {runs}"  # one run, start to now
    else:
        assert after[(plain, victim.name)] == before[(plain, victim.name)]
    # Pinned and global units: never restarted, never ran anywhere else.
    for key in ((pinned, victim.name), *((glob, m.name) for m in cluster.machines)):
        assert after[key] == before[key], f"{key} restarted"
    assert samples.twice(pinned) == []
    assert "Stopping fag-pinned" not in journal(cluster, victim, "_PID=1", f"--since=@{since:.0f}")
    stopped_single_after = next(
        (t - cut_at for t, s in samples.rows[victim.name] if t > cut_at and not s[single]), None
    )
    twice_plain = sum(hi - lo for lo, hi in samples.twice(plain))
    destroy(cluster, *units)
    assert stopped_single_after is not None
    return {
        "singleton stopped after": round(stopped_single_after, 2),
        "plain unit ran twice": round(twice_plain, 2),
        "converged after heal": round(took, 2),
        "widest sample gap": round(samples.widest_gap(), 3),
        "mean sample interval": round(mean_interval, 3),
        "moved (1 = yes)": float(moved),
    }


def test_agent_partitioned_drop(
    cluster: Cluster, tmp_path: Path, report_timings: dict[str, float]
) -> None:
    """DROP (hang) for agent_ttl + 4 s."""
    numbers = partitioned(cluster, tmp_path, "DROP", TTL + 4)
    report_timings.update(numbers)
    assert numbers["singleton stopped after"] < STOP_AFTER + TTL / 10 + 0.5


def test_agent_partitioned_reject(
    cluster: Cluster, tmp_path: Path, report_timings: dict[str, float]
) -> None:
    """REJECT (refuse) for agent_ttl + 4 s."""
    numbers = partitioned(cluster, tmp_path, "REJECT", TTL + 4)
    report_timings.update(numbers)
    assert numbers["singleton stopped after"] < STOP_AFTER + TTL / 10 + 0.5


def test_singleton_stop_after_disconnect_never_twice(
    cluster: Cluster, tmp_path: Path, report_timings: dict[str, float]
) -> None:
    """The hardest heal for the policy: the cut ends right about when the presence
    expires (agent_ttl), so the store is readable again while the engine places the
    replacement. Sampled throughout: never on two machines."""
    report_timings.update(partitioned(cluster, tmp_path, "DROP", TTL, expect_move=False))


def test_pinned_units_survive_a_cut(
    cluster: Cluster, tmp_path: Path, report_timings: dict[str, float]
) -> None:
    """Units pinned with MachineID (and a MachineOf follower of one) stay scheduled on
    their machine through a cut longer than agent_ttl: no restart after the heal."""
    victim = cluster.machines[1]
    not_leading(cluster, victim)  # the engine must see the machine go, and act on it
    pins = [f"fag-pin{i}.service" for i in range(3)]
    follower = "fag-pin-follower.service"
    paths = [write_unit(tmp_path, p, f"MachineID={victim.machine_id}") for p in pins]
    paths.append(write_unit(tmp_path, follower, f"MachineOf={pins[0]}"))
    cluster.fleetctl("start", "--no-block", *paths)
    units = [*pins, follower]
    wait_running(cluster, dict.fromkeys(units, 1))
    before = main_pids(cluster, units)
    since = time.time()
    partition(cluster, victim, "DROP", on=True)
    try:
        # The presence expires meanwhile: the machine leaves the cluster.
        cluster.wait_for(
            lambda: victim.machine_id not in cluster.registered(), 3 * TTL, what="presence expiry"
        )
        time.sleep(2.0)
    finally:
        partition(cluster, victim, "DROP", on=False)
    took = wait_running(cluster, dict.fromkeys(units, 1))
    cluster.wait_registered(3, timeout=REREGISTER)
    time.sleep(1.0)
    assert main_pids(cluster, units) == before
    assert "Stopping fag-pin" not in journal(cluster, victim, "_PID=1", f"--since=@{since:.0f}")
    report_timings["converged after heal"] = round(took, 2)
    destroy(cluster, *units)


def test_flapping_agent_no_reschedule_storm(
    cluster: Cluster, tmp_path: Path, report_timings: dict[str, float]
) -> None:
    """Partition on and off every agent_ttl / 2 for 30 s (the issue's 60 s, halved to
    keep the tier short): each cut is within the blackout the presence survives, so
    the machine never leaves, nothing is rescheduled and nothing restarts."""
    assert survivable_blackout(TTL) > TTL / 2
    victim = cluster.machines[2]
    units = [f"fag-flap{i}.service" for i in range(3)]
    paths = [write_unit(tmp_path, u, f"MachineID={victim.machine_id}") for u in units[:2]]
    paths.append(write_unit(tmp_path, units[2]))
    cluster.fleetctl("start", "--no-block", *paths)
    wait_running(cluster, dict.fromkeys(units, 1))
    before = main_pids(cluster, units)
    since = time.time()
    absent = 0
    end = time.monotonic() + 30
    while time.monotonic() < end:
        partition(cluster, victim, "DROP", on=True)
        try:
            time.sleep(TTL / 2)
        finally:
            partition(cluster, victim, "DROP", on=False)
        if victim.machine_id not in cluster.registered():
            absent += 1
        time.sleep(TTL / 2)
    assert absent == 0
    assert main_pids(cluster, units) == before
    fleetd = "".join(
        journal(cluster, m, "-u", "fleet", f"--since=@{since:.0f}") for m in cluster.machines
    )
    assert "presence lease" not in fleetd  # never lost
    assert "engine: unscheduling" not in fleetd
    assert "engine: scheduling" not in fleetd
    report_timings["flaps"] = 30 / TTL
    destroy(cluster, *units)


def test_compaction_while_agent_cut_off(
    cluster: Cluster, tmp_path: Path, report_timings: dict[str, float]
) -> None:
    """While a machine is cut off past agent_ttl, a global unit it runs is destroyed,
    another is started, and etcd is compacted past everything the agent saw and
    defragmented: after the heal the agent relists and converges, missing nothing."""
    victim = cluster.machines[0]
    not_leading(cluster, victim)
    old, new = "fag-old-global.service", "fag-new-global.service"
    pinned = "fag-compact-pin.service"
    cluster.fleetctl(
        "start",
        "--no-block",
        write_unit(tmp_path, old, "Global=true"),
        write_unit(tmp_path, pinned, f"MachineID={victim.machine_id}"),
    )
    wait_running(cluster, {old: 3, pinned: 1})
    before = main_pids(cluster, [pinned])
    partition(cluster, victim, "REJECT", on=True)
    try:
        cluster.wait_for(
            lambda: victim.machine_id not in cluster.registered(), 3 * TTL, what="presence expiry"
        )
        cluster.fleetctl("destroy", old)
        cluster.fleetctl("start", "--no-block", write_unit(tmp_path, new, "Global=true"))
        for i in range(50):  # history the agent never saw, then gone
            etcdctl(cluster, "put", f"/fag-scratch/{i}", "x")
        status = json.loads(etcdctl(cluster, "endpoint", "status", "-w", "json"))
        revision = int(status[0]["Status"]["header"]["revision"])
        etcdctl(cluster, "compact", str(revision))
        etcdctl(cluster, "defrag")
        assert [m.name for m in where(cluster, old)] == [victim.name]  # B7 meanwhile
    finally:
        partition(cluster, victim, "REJECT", on=False)
    took = wait_running(cluster, {old: 0, new: 3, pinned: 1})
    assert main_pids(cluster, [pinned]) == before
    etcdctl(cluster, "del", "--prefix", "/fag-scratch/")
    report_timings["converged after heal"] = round(took, 2)
    destroy(cluster, new, pinned)


def test_global_conflicts_never_colocated(
    cluster: Cluster, tmp_path: Path, report_timings: dict[str, float]
) -> None:
    """A global unit with Conflicts and the unit it conflicts with, started at once
    (three rounds) and one after the other: sampled on every machine, never both."""
    glob, job = "fag-cglobal.service", "fag-cjob.service"
    glob_path = write_unit(tmp_path, glob, "Global=true\nConflicts=fag-cjob*")
    # A slow stop widens the window a start beside it would fall into.
    job_path = write_unit(tmp_path, job, "", service="ExecStop=/bin/sleep 1\n")
    worst = 0.0
    with Sampler(cluster, [glob, job]) as sampler:
        for round_ in range(4):
            if round_ < 3:
                procs = [
                    subprocess.Popen(
                        [*fleet_argv(cluster), "start", "--no-block", path],
                        stdout=subprocess.DEVNULL,
                        stderr=subprocess.PIPE,
                        text=True,
                    )
                    for path in (job_path, glob_path)
                ]
                for proc in procs:
                    _, err = proc.communicate(timeout=60)
                    assert proc.returncode == 0, err
            else:  # the job runs first; the global arrives beside it
                cluster.fleetctl("start", "--no-block", job_path)
                wait_running(cluster, {job: 1})
                cluster.fleetctl("start", "--no-block", glob_path)
            worst = max(worst, wait_running(cluster, {glob: 3, job: 0}))
            destroy(cluster, glob, job)
        samples = sampler.read()
    assert samples.together(glob, job) == []
    assert sum(1 for rows in samples.rows.values() for _, s in rows if s[glob]) > 0
    report_timings["slowest convergence"] = round(worst, 2)


def fleet_argv(cluster: Cluster) -> list[str]:
    return [str(VENV_BIN / "fleetctl"), "--driver=etcd", f"--endpoint={cluster.endpoint}"]
