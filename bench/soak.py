"""Benchmark (not a test): scale soak of the real agent code on one etcd.

N real :class:`fleet.agent.Agent` objects, each driving its own
:class:`fleet.systemd.memory.InMemorySystemd` (the in-memory systemd that
passes the systemd contract tests, ``tests/systemd/test_contract.py``), run in
a few worker processes (many agents per event loop) against one private etcd
with default raft timings; a real :class:`fleet.engine.Engine` runs in the
orchestrating process. The machines are SIMULATED in the sense that no systemd
and no fleetd process exist for them: every agent's registry traffic is real.

Each agent has its own registry connection object, counted per agent: every
unary request (reads = ``Range``, writes = ``Txn``/``Put``/``DeleteRange``,
lease calls), every keepalive, every watch response, and the protobuf bytes
sent and received. The agents of one worker share one gRPC channel (one TCP
connection per worker instead of per agent); requests and bytes are those of
separate connections.

Phases of one run (N agents, 10 x N units):

1. start the agents, wait until all are registered (not timed beside the rest);
2. submit the units as ``inactive``, then flip all to ``launched`` in batched
   transactions; timed until every unit is scheduled (watch on ``schedule/``)
   and until every unit's state is published ``active`` (watch on
   ``states/``);
3. idle window: requests per agent per second with nothing changing
   (keepalives, and resyncs if the resync interval is shorter than the window);
4. unit changes: K units stopped (``inactive``) then started again, one at a
   time, each waited for; requests and bytes of the agents that never held any
   of those units ("uninvolved") per change, beside those of the agents that
   did;
5. etcd database size (``Status``), the engine's pass time, worker RSS per agent.

The same invocation runs the baseline (100 agents, 1,000 units) first, so
growth is visible in one table.

    .venv/bin/python bench/soak.py                     # 100 and 1,000 agents
    .venv/bin/python bench/soak.py --agents 100 300    # other sizes
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import os
import shutil
import sys
import tempfile
import time
from collections.abc import AsyncGenerator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import grpc  # type: ignore[import-untyped]
import grpc.aio  # type: ignore[import-untyped]
from aetcd import rpc

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from fleet.agent import Agent
from fleet.cluster.etcd import EtcdProcess
from fleet.core.model import DesiredState, Machine
from fleet.core.unitfile import UnitFile
from fleet.engine import Engine
from fleet.ports import ScheduleChanged, Scope, Topic, UnitStateChanged
from fleet.registry.client import _CHANNEL_OPTIONS, EtcdConnection, parse_endpoints
from fleet.registry.etcd import EtcdRegistry
from fleet.systemd.memory import InMemorySystemd

PREFIX = "/fleet-soak/"
UNITS_PER_AGENT = 10
AGENT_TTL = 60.0  # keepalives every ttl/3: 1,000 agents make ~50/s, none starves
RESYNC = 600.0  # longer than a run: reads during the change phase are change-driven
IDLE_WINDOW = 10.0
CHANGES = 10
TIMEOUT = 600.0
SUBMIT_PARALLEL = 64
JOIN_BATCH = 25  # agents of one worker that join at once
WATCHES = 4  # watches of one agent (fleet.agent.watches.agent_scopes)
REQUEST_TIMEOUT = 30.0  # per request: a loaded 2-core host, not a test of deadlines


# ---- the worker side: many agents in one event loop ------------------------------------


@dataclass
class Traffic:
    """One agent's registry traffic."""

    reads: int = 0
    writes: int = 0
    leases: int = 0  # grant, revoke, keepalive
    watch_creates: int = 0
    watch_responses: int = 0
    bytes_out: int = 0
    bytes_in: int = 0

    def requests(self) -> int:
        return self.reads + self.writes + self.leases + self.watch_creates


_KIND = {"Range": "reads", "Txn": "writes", "Put": "writes", "DeleteRange": "writes"}


class CountingConnection(EtcdConnection):
    """An EtcdConnection on a channel shared by the worker's agents, counting its traffic.

    The counting wraps the public methods the registry calls (``call``,
    ``keepalive_once``, ``watch``); nothing of the product is changed."""

    def __init__(self, endpoint: str, channel: grpc.aio.Channel) -> None:
        super().__init__(
            parse_endpoints([endpoint]),
            request_timeout=REQUEST_TIMEOUT,
            username=None,
            password=None,
            ca_file=None,
            cert_file=None,
            key_file=None,
        )
        self.shared = channel
        self.traffic = Traffic()

    def _new_channel(self, endpoint: Any, extra: tuple[tuple[str, Any], ...] = ()) -> Any:
        return self.shared  # every member, keepalives included, on the worker's channel

    async def close(self) -> None:
        # The worker closes the shared channel; forget the members without closing it.
        self._members = [None] * len(self.endpoints)
        self._keepalive = None
        self._retired_keepalive = []

    async def _close_retired_keepalive_channels(self, everything: bool = False) -> None:
        self._retired_keepalive = []  # never close the shared channel

    async def call(self, stub: str, method: str, request: Any) -> Any:
        kind = _KIND.get(method, "leases")
        setattr(self.traffic, kind, getattr(self.traffic, kind) + 1)
        self.traffic.bytes_out += request.ByteSize()
        response = await super().call(stub, method, request)
        self.traffic.bytes_in += response.ByteSize()
        return response

    async def keepalive_once(
        self, lease_id: int, deadline: float | None = None, fresh: bool = False
    ) -> int:
        self.traffic.leases += 1
        self.traffic.bytes_out += rpc.LeaseKeepAliveRequest(ID=lease_id).ByteSize()
        return await super().keepalive_once(lease_id, deadline, fresh)

    async def watch(self, key: bytes, end: bytes, start_revision: int) -> AsyncGenerator[Any, None]:
        self.traffic.watch_creates += 1
        self.traffic.bytes_out += len(key) + len(end) + 8
        async for response in super().watch(key, end, start_revision):
            self.traffic.watch_responses += 1
            self.traffic.bytes_in += response.ByteSize()
            yield response


def _rss_bytes() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError("no VmRSS in /proc/self/status")


@dataclass
class Hosted:
    agent: Agent
    systemd: InMemorySystemd
    connection: CountingConnection
    registry: EtcdRegistry
    task: asyncio.Task[None] | None = None


def _joined(h: Hosted) -> bool:
    """Registered, and every watch of the agent created (its first response seen)."""
    return h.agent.registered.is_set() and h.connection.traffic.watch_responses >= WATCHES


async def _worker(endpoint: str, first: int, count: int, resync: float) -> None:
    """Host ``count`` agents; answer the orchestrator's commands, one JSON line each."""
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    target = endpoint.removeprefix("http://")
    channel = grpc.aio.insecure_channel(target, options=_CHANNEL_OPTIONS)
    root = Path(tempfile.mkdtemp(prefix="fleet-soak-"))
    hosted: list[Hosted] = []

    def reply(message: dict[str, Any]) -> None:
        sys.stdout.write(json.dumps(message) + "\n")
        sys.stdout.flush()

    try:
        await _host(
            endpoint,
            first,
            count,
            resync,
            channel=channel,
            root=root,
            hosted=hosted,
            reader=reader,
            reply=reply,
        )
    except Exception as exc:
        reply({"error": f"worker {first}: {exc!r}"})
        raise
    finally:
        for h in hosted:
            h.agent.stop()
        await asyncio.gather(
            *(h.task for h in hosted if h.task is not None), return_exceptions=True
        )
        for h in hosted:
            await h.registry.close()
        await channel.close()
        shutil.rmtree(root, ignore_errors=True)
        reply({"stopped": True})


async def _host(
    endpoint: str,
    first: int,
    count: int,
    resync: float,
    *,
    channel: grpc.aio.Channel,
    root: Path,
    hosted: list[Hosted],
    reader: asyncio.StreamReader,
    reply: Any,
) -> None:
    rss_before = _rss_bytes()
    for i in range(first, first + count):
        connection = CountingConnection(endpoint, channel)
        registry = EtcdRegistry(connection, PREFIX)
        await connection.connect()
        systemd = InMemorySystemd()
        machine = Machine(id=f"soak-{i:05d}", public_ip="127.0.0.1", metadata={})
        agent = Agent(
            registry,
            systemd,
            machine,
            units_dir=root / machine.id / "units",
            ttl=AGENT_TTL,
            resync_interval=resync,
        )
        hosted.append(Hosted(agent, systemd, connection, registry))
    # Machines join in batches, as a cluster's machines boot: each batch is
    # registered and has its watches before the next one starts.
    for start in range(0, len(hosted), JOIN_BATCH):
        batch = hosted[start : start + JOIN_BATCH]
        for h in batch:
            h.task = asyncio.create_task(h.agent.run(), name=f"soak-{h.agent.machine.id}")
        async with asyncio.timeout(TIMEOUT):
            while not all(_joined(h) for h in batch):
                failed = [h.task for h in batch if h.task is not None and h.task.done()]
                if failed:
                    failed[0].result()
                await asyncio.sleep(0.05)
    reply({"ready": True, "rss_before": rss_before, "rss": _rss_bytes()})
    while line := await reader.readline():
        command = line.decode().strip()
        if command == "snapshot":
            active: dict[str, int] = {}
            for h in hosted:
                names = list(h.agent.current)
                states = await h.systemd.unit_states(names) if names else {}
                active[h.agent.machine.id] = sum(s[1] == "active" for s in states.values())
            reply(
                {
                    "rss": _rss_bytes(),
                    "traffic": {h.agent.machine.id: asdict(h.connection.traffic) for h in hosted},
                    "held": {h.agent.machine.id: sorted(h.agent.current) for h in hosted},
                    "active": active,
                    "errors": [
                        f"{h.agent.machine.id}: {h.task.exception()!r}"
                        for h in hosted
                        if h.task is not None and h.task.done() and not h.task.cancelled()
                    ],
                }
            )
        elif command == "stop":
            break


# ---- the orchestrator --------------------------------------------------------------------


class Worker:
    def __init__(self, process: asyncio.subprocess.Process) -> None:
        self.process = process

    @classmethod
    async def spawn(cls, endpoint: str, first: int, count: int, resync: float) -> Worker:
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            __file__,
            "--worker",
            endpoint,
            str(first),
            str(count),
            str(resync),
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            limit=64 * 1024 * 1024,
        )
        return cls(process)

    async def receive(self) -> dict[str, Any]:
        assert self.process.stdout is not None
        line = await self.process.stdout.readline()
        if not line:
            raise RuntimeError(
                f"soak worker {self.process.pid} exited ({await self.process.wait()})"
            )
        message: dict[str, Any] = json.loads(line)
        if "error" in message:
            raise RuntimeError(message["error"])
        return message

    async def ask(self, command: str) -> dict[str, Any]:
        assert self.process.stdin is not None
        self.process.stdin.write(command.encode() + b"\n")
        await self.process.stdin.drain()
        return await self.receive()

    async def stop(self) -> None:
        if self.process.returncode is None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self.ask("stop"), 30)
            with contextlib.suppress(ProcessLookupError):
                if self.process.returncode is None:
                    await asyncio.wait_for(self.process.wait(), 30)
        if self.process.returncode is None:
            self.process.kill()
            await self.process.wait()


@dataclass
class Result:
    agents: int
    units: int
    processes: int
    start_agents_s: float
    placed_s: float
    reported_s: float
    engine_passes: int
    engine_last_pass_s: float
    engine_max_pass_s: float
    idle_requests_per_agent_s: float
    uninvolved_agents: int
    uninvolved_reads_per_change: float  # summed over every uninvolved agent
    uninvolved_requests_per_change: float
    uninvolved_bytes_per_change: float
    involved_reads_per_change: float  # the agent(s) holding the changed unit
    involved_bytes_per_change: float
    db_size: int
    db_in_use: int
    rss_per_agent_idle: float
    rss_per_agent_loaded: float
    errors: list[str] = field(default_factory=list)


async def _snapshot(workers: Sequence[Worker]) -> dict[str, Any]:
    merged: dict[str, Any] = {"rss": 0, "traffic": {}, "held": {}, "active": {}, "errors": []}
    for message in await asyncio.gather(*(w.ask("snapshot") for w in workers)):
        merged["rss"] += message["rss"]
        for key in ("traffic", "held", "active"):
            merged[key].update(message[key])
        merged["errors"] += message["errors"]
    return merged


def _total(traffic: dict[str, dict[str, int]], machines: Sequence[str], key: str) -> int:
    if key == "requests":
        return sum(Traffic(**traffic[m]).requests() for m in machines)
    return sum(traffic[m][key] for m in machines)


def _delta(after: dict[str, Any], before: dict[str, Any]) -> dict[str, dict[str, int]]:
    return {
        m: {k: v - before["traffic"][m][k] for k, v in t.items()}
        for m, t in after["traffic"].items()
    }


async def _wait_events(
    registry: EtcdRegistry, scope: Scope, revision: int, names: set[str], done: asyncio.Event
) -> None:
    """Set ``done`` once every name is scheduled (SCHEDULE) or reported active (STATES)."""
    seen: set[str] = set()
    async for batch in registry.watch(scope, revision + 1):
        for change in batch:
            scheduled = isinstance(change, ScheduleChanged) and change.entry is not None
            active = (
                isinstance(change, UnitStateChanged)
                and change.state is not None
                and change.state.active_state == "active"
            )
            if scheduled or active:
                seen.add(change.name)  # type: ignore[union-attr]
        if names <= seen:
            done.set()
            return


async def _state_reached(registry: EtcdRegistry, revision: int, name: str, active: bool) -> None:
    """Until ``name``'s published state is active (or, ``active`` false, deleted)."""
    async for batch in registry.watch(Scope(Topic.STATES), revision + 1):
        for change in batch:
            if not isinstance(change, UnitStateChanged) or change.name != name:
                continue
            if active and change.state is not None and change.state.active_state == "active":
                return
            if not active and change.state is None:
                return


def _body() -> tuple[str, str]:
    unit = UnitFile.parse("[Unit]\nDescription=soak unit\n\n[Service]\nExecStart=/bin/sleep 3000\n")
    return unit.serialize(), unit.hash


def _say(message: str) -> None:
    print(f"{time.strftime('%H:%M:%S')} {message}", file=sys.stderr, flush=True)


async def _until(what: str, condition: Any, interval: float = 0.2) -> None:
    try:
        async with asyncio.timeout(TIMEOUT):
            while not await condition():  # noqa: ASYNC110 -- polls the engine's counters
                await asyncio.sleep(interval)
    except TimeoutError:
        raise RuntimeError(f"soak: no {what} within {TIMEOUT:g}s") from None


async def run_once(agents: int, processes: int, resync: float, changes: int) -> Result:
    units = agents * UNITS_PER_AGENT
    names = [f"soak-{i:06d}.service" for i in range(units)]
    body, hash = _body()
    with EtcdProcess(fast=False) as etcd:
        registry = await EtcdRegistry.connect([etcd.endpoint], PREFIX, request_timeout=30.0)
        engine_registry = await EtcdRegistry.connect([etcd.endpoint], PREFIX, request_timeout=30.0)
        workers: list[Worker] = []
        engine_task: asyncio.Task[None] | None = None
        try:
            started = time.perf_counter()
            per = -(-agents // processes)
            for first in range(0, agents, per):
                count = min(per, agents - first)
                workers.append(await Worker.spawn(etcd.endpoint, first, count, resync))
            ready = await asyncio.gather(*(w.receive() for w in workers))
            _say(f"{agents} agents registered")
            start_agents_s = time.perf_counter() - started
            rss_idle = sum(m["rss"] - m["rss_before"] for m in ready) / agents

            engine = Engine(engine_registry, "soak-engine", reconcile_interval=2.0)
            engine_task = asyncio.create_task(engine.run())
            semaphore = asyncio.Semaphore(SUBMIT_PARALLEL)

            async def submit(name: str) -> None:
                async with semaphore:
                    await registry.create_unit(name, body, hash, DesiredState.INACTIVE, False)

            await asyncio.gather(*(submit(n) for n in names))
            _say(f"{units} units submitted")

            async def engine_passed() -> bool:
                if engine_task is not None and engine_task.done():
                    engine_task.result()
                return engine.statistics().passes >= 1

            await _until("a first engine pass", engine_passed)
            passes_before = engine.statistics().passes

            # ---- phase 2: place and report all units ----
            _, revision = await registry.list_changes(Scope(Topic.SCHEDULE))
            placed, reported = asyncio.Event(), asyncio.Event()
            watchers = [
                asyncio.create_task(
                    _wait_events(registry, Scope(Topic.SCHEDULE), revision, set(names), placed)
                ),
                asyncio.create_task(
                    _wait_events(registry, Scope(Topic.STATES), revision, set(names), reported)
                ),
            ]
            await asyncio.sleep(0.5)  # let the watches be created
            max_pass = 0.0
            started = time.perf_counter()
            await registry.set_desired_states(dict.fromkeys(names, DesiredState.LAUNCHED))
            _say(f"{units} units flipped to launched")
            async with asyncio.timeout(TIMEOUT):
                for event in (placed, reported):
                    while not event.is_set():
                        max_pass = max(max_pass, engine.statistics().last_pass_seconds)
                        for task in (*watchers, engine_task):
                            if task.done():
                                task.result()
                        await asyncio.sleep(0.05)
                    if event is placed:
                        placed_s = time.perf_counter() - started
                reported_s = time.perf_counter() - started
            for watcher in watchers:
                watcher.cancel()
            engine_passes = engine.statistics().passes - passes_before
            _say(f"all placed in {placed_s:.1f}s, all active in {reported_s:.1f}s")

            # ---- phase 3: idle ----
            await asyncio.sleep(2.0)
            before = await _snapshot(workers)
            await asyncio.sleep(IDLE_WINDOW)
            after = await _snapshot(workers)
            idle = _delta(after, before)
            idle_rate = _total(idle, list(idle), "requests") / agents / IDLE_WINDOW
            rss_loaded = (after["rss"] - sum(m["rss_before"] for m in ready)) / agents

            # ---- phase 4: unit changes ----
            _say("idle window done")
            held_by = {u: m for m, us in after["held"].items() for u in us}
            involved: set[str] = set()
            changed = names[:: max(1, units // changes)][:changes]
            for name in changed:
                involved.add(held_by[name])
            before = await _snapshot(workers)
            for name in changed:
                for desired, want in (
                    (DesiredState.INACTIVE, False),
                    (DesiredState.LAUNCHED, True),
                ):
                    _, revision = await registry.list_changes(Scope(Topic.LEADER))
                    await registry.set_desired_state(name, desired)
                    async with asyncio.timeout(TIMEOUT):
                        await _state_reached(registry, revision, name, want)
            await asyncio.sleep(1.0)  # let stragglers' traffic land before counting
            after = await _snapshot(workers)
            involved |= {m for m, us in after["held"].items() if set(us) & set(changed)}
            delta = _delta(after, before)
            uninvolved = [m for m in delta if m not in involved]
            n_changes = 2 * len(changed)

            status = await engine_registry.connection.call(
                "maintenance", "Status", rpc.StatusRequest()
            )
            lost = [m for m, n in after["active"].items() if n != len(after["held"][m])]
            errors = list(after["errors"])
            if sum(after["active"].values()) != units or lost:
                errors.append(f"{sum(after['active'].values())} of {units} units active")
            return Result(
                agents=agents,
                units=units,
                processes=len(workers),
                start_agents_s=start_agents_s,
                placed_s=placed_s,
                reported_s=reported_s,
                engine_passes=engine_passes,
                engine_last_pass_s=engine.statistics().last_pass_seconds,
                engine_max_pass_s=max_pass,
                idle_requests_per_agent_s=idle_rate,
                uninvolved_agents=len(uninvolved),
                uninvolved_reads_per_change=_total(delta, uninvolved, "reads") / n_changes,
                uninvolved_requests_per_change=_total(delta, uninvolved, "requests") / n_changes,
                uninvolved_bytes_per_change=(
                    _total(delta, uninvolved, "bytes_in") + _total(delta, uninvolved, "bytes_out")
                )
                / n_changes,
                involved_reads_per_change=_total(delta, sorted(involved), "reads") / n_changes,
                involved_bytes_per_change=(
                    _total(delta, sorted(involved), "bytes_in")
                    + _total(delta, sorted(involved), "bytes_out")
                )
                / n_changes,
                db_size=int(status.dbSize),
                db_in_use=int(status.dbSizeInUse),
                rss_per_agent_idle=rss_idle,
                rss_per_agent_loaded=rss_loaded,
                errors=errors,
            )
        finally:
            if engine_task is not None:
                engine_task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await engine_task
            await asyncio.gather(*(w.stop() for w in workers))
            await engine_registry.close()
            await registry.close()


ROWS: tuple[tuple[str, str, str], ...] = (
    ("worker processes", "processes", "{:.0f}"),
    ("start + register all agents (s)", "start_agents_s", "{:.1f}"),
    ("flip -> all units scheduled (s)", "placed_s", "{:.1f}"),
    ("flip -> all units reported active (s)", "reported_s", "{:.1f}"),
    ("engine passes during placement", "engine_passes", "{:.0f}"),
    ("engine pass time, longest seen (s)", "engine_max_pass_s", "{:.3f}"),
    ("engine pass time, steady (s)", "engine_last_pass_s", "{:.3f}"),
    ("idle requests per agent per s", "idle_requests_per_agent_s", "{:.3f}"),
    ("uninvolved agents", "uninvolved_agents", "{:.0f}"),
    ("uninvolved: reads per unit change (all)", "uninvolved_reads_per_change", "{:.2f}"),
    ("uninvolved: requests per unit change", "uninvolved_requests_per_change", "{:.2f}"),
    ("uninvolved: bytes per unit change", "uninvolved_bytes_per_change", "{:.0f}"),
    ("involved: reads per unit change", "involved_reads_per_change", "{:.1f}"),
    ("involved: bytes per unit change", "involved_bytes_per_change", "{:.0f}"),
    ("etcd db size (MiB)", "db_size", "{:.1f}"),
    ("etcd db in use (MiB)", "db_in_use", "{:.1f}"),
    ("RSS per agent, no units (KiB)", "rss_per_agent_idle", "{:.0f}"),
    ("RSS per agent, 10 units (KiB)", "rss_per_agent_loaded", "{:.0f}"),
)


def _print(results: Sequence[Result]) -> None:
    head = f"{'':<42}" + "".join(f"{f'{r.agents} agents':>16}" for r in results)
    print(head)
    print(f"{'units':<42}" + "".join(f"{r.units:>16}" for r in results))
    for label, key, fmt in ROWS:
        cells = []
        for r in results:
            value = float(getattr(r, key))
            if key.startswith("db_"):
                value /= 1024 * 1024
            elif key.startswith("rss_"):
                value /= 1024
            cells.append(f"{fmt.format(value):>16}")
        print(f"{label:<42}" + "".join(cells))
    if len(results) > 1:
        first, last = results[0], results[-1]
        print(f"growth {last.agents / first.agents:.0f}x agents and units:")
        for label, key in (
            ("time to report all", "reported_s"),
            ("etcd db size", "db_size"),
            ("RSS per agent, 10 units", "rss_per_agent_loaded"),
        ):
            base = float(getattr(first, key))
            ratio = float(getattr(last, key)) / base if base else float("nan")
            print(f"  {label}: x{ratio:.1f}")
    for r in results:
        for error in r.errors:
            print(f"ERROR ({r.agents} agents): {error}")


async def main_async(args: argparse.Namespace) -> list[Result]:
    results = []
    for agents in args.agents:
        results.append(await run_once(agents, args.processes, args.resync, args.changes))
        print(f"... {agents} agents done", file=sys.stderr, flush=True)
    return results


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["--worker"]:
        endpoint, first, count, resync = argv[1], int(argv[2]), int(argv[3]), float(argv[4])
        logging.basicConfig(level=logging.ERROR, format="%(asctime)s worker %(name)s %(message)s")
        asyncio.run(_worker(endpoint, first, count, resync))
        return 0
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--agents", type=int, nargs="+", default=[100, 1000])
    parser.add_argument("--processes", type=int, default=4)
    parser.add_argument("--resync", type=float, default=RESYNC, help="agent resync interval (s)")
    parser.add_argument("--changes", type=int, default=CHANGES)
    args = parser.parse_args(argv)
    if any(a < 2 for a in args.agents) or args.processes < 1 or args.changes < 1:
        parser.error("--agents needs at least 2 agents per run; --processes and --changes >= 1")
    if os.cpu_count() == 1:
        print("note: one CPU; the engine and the workers compete", file=sys.stderr)
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(name)s %(message)s")
    results = asyncio.run(main_async(args))
    _print(results)
    return 1 if any(r.errors for r in results) else 0


if __name__ == "__main__":
    sys.exit(main())
