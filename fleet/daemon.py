"""fleetd: the composition root.

Reads the configuration, builds the adapters (etcd registry, systemd over
D-Bus, API listeners) and runs the components (agent, engine unless
``disable_engine``, API) as tasks of one :class:`asyncio.TaskGroup`: a crash in
one cancels the others and fleetd exits non-zero for systemd to restart it.

Signals are read by :meth:`Fleetd._run_once`, outside the components, so they
are honoured in every phase (also while etcd accepts connections but never
answers): SIGTERM/SIGINT stop cleanly (units keep running unless
``shutdown_stops_units``, feature B8) within :data:`STOP_TIMEOUT`; SIGHUP
re-reads the configuration and rebuilds the components while the API
listeners stay open (fleet's ``Reloading configuration from ...``); SIGUSR1
logs a JSON state dump. A component (agent, engine, API) that returns or
raises while fleetd runs makes fleetd log it and exit 1, for systemd to
restart it.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import json
import logging
import os
import re
import signal
import subprocess
import sys
from collections.abc import Coroutine, Sequence
from pathlib import Path
from typing import Any

from fleet import __version__
from fleet.agent import Agent
from fleet.api.app import create_app
from fleet.api.server import (
    Listener,
    TlsConfig,
    close_listeners,
    open_listeners,
    serve_listeners,
)
from fleet.config import DEFAULT_CONFIG_PATH, FleetConfig, load_config
from fleet.core.model import Machine
from fleet.engine import Engine
from fleet.engine.campaign import ENGINE_VERSION
from fleet.errors import FleetError, InvalidConfig, StoreError
from fleet.metrics import FleetMetrics
from fleet.ports import SystemClock
from fleet.registry.etcd import EtcdRegistry
from fleet.systemd.dbus import SystemdManager

log = logging.getLogger("fleetd")

MACHINE_ID_PATH = Path("/etc/machine-id")


# After SIGTERM/SIGHUP the components are cancelled and given this long to
# finish (an engine leader resigns, leases are revoked); etcd requests carry
# their own deadline, so only a stuck library call can use it all.
STOP_TIMEOUT = 3.0
# Without shutdown_stops_units the agent only cancels its tasks on SIGTERM.
AGENT_STOP_TIMEOUT = 1.5
# With shutdown_stops_units the agent stops every unit first (feature B8).
AGENT_PURGE_TIMEOUT = 60.0


class ComponentEnded(FleetError):
    """A component returned while fleetd runs: fleetd exits 1."""


def _first_error(exc: BaseException) -> str:
    while isinstance(exc, BaseExceptionGroup) and exc.exceptions:
        exc = exc.exceptions[0]
    return str(exc) or repr(exc)


def read_machine_id(path: Path = MACHINE_ID_PATH) -> str:
    try:
        text = path.read_text().strip()
    except OSError as exc:
        raise InvalidConfig(f"cannot read machine id from {path}: {exc.strerror}") from exc
    if not re.fullmatch(r"[0-9a-f]{32}", text):
        raise InvalidConfig(f"{path} does not hold a 32-hex-digit machine id")
    return text


def detect_public_ip() -> str:
    """The first global IPv4 address of the default-route interface, else of any
    interface (machines of a local cluster have no default route)."""
    try:
        out = subprocess.run(
            ["ip", "-j", "-4", "addr", "show", "scope", "global"],
            capture_output=True,
            check=True,
            timeout=5,
            text=True,
        ).stdout
        routes = subprocess.run(
            ["ip", "-j", "-4", "route", "show", "default"],
            capture_output=True,
            check=False,
            timeout=5,
            text=True,
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return ""
    default_dev = {r.get("dev") for r in json.loads(routes or "[]")}
    candidates: list[tuple[int, str]] = []
    for iface in json.loads(out or "[]"):
        for addr in iface.get("addr_info", []):
            if addr.get("family") == "inet":
                candidates.append((0 if iface.get("ifname") in default_dev else 1, addr["local"]))
    return min(candidates)[1] if candidates else ""


def build_machine(config: FleetConfig, machine_id: str) -> Machine:
    return Machine(
        id=machine_id,
        public_ip=config.public_ip or detect_public_ip(),
        metadata=dict(config.metadata),
        version=__version__,
        capabilities={"DISABLE_ENGINE": config.disable_engine},
    )


def _api_tcp(config: FleetConfig) -> list[tuple[str, int]]:
    addresses = []
    for item in config.api_listen:
        host, _, port = item.rpartition(":")
        addresses.append((host.strip("[]") or "0.0.0.0", int(port)))
    return addresses


class Fleetd:
    """One fleetd process: owns the listeners across reloads and runs the components."""

    def __init__(self, config_path: str | None, config: FleetConfig) -> None:
        self.config_path = config_path
        self.config = config
        self.machine_id = read_machine_id()
        self._signals: asyncio.Queue[int] = asyncio.Queue()
        self._agent: Agent | None = None
        self._agent_task: asyncio.Task[None] | None = None
        self._engine_task: asyncio.Task[None] | None = None
        self._stopping = False

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGUSR1):
            loop.add_signal_handler(sig, self._signals.put_nowait, sig)
        config = self.config
        tls = (
            TlsConfig(
                config.api_tls_certfile,
                config.api_tls_keyfile,
                config.api_tls_client_cafile or None,
            )
            if config.api_tls_certfile
            else None
        )
        listeners = open_listeners(unix_path="/var/run/fleet.sock", tcp=_api_tcp(config), tls=tls)
        try:
            while await self._run_once(listeners):
                path = self.config_path or DEFAULT_CONFIG_PATH
                log.info("Reloading configuration from %s", path)
                try:
                    self.config, warnings = load_config(self.config_path, os.environ)
                    for warning in warnings:
                        log.warning("%s", warning)
                except InvalidConfig as exc:
                    log.error("keeping the old configuration: %s", exc)
            log.info("fleetd stopped")
        finally:
            close_listeners(listeners)

    async def _run_once(self, listeners: Sequence[Listener]) -> bool:
        """Run the components until a signal; True means reload and run again.

        Raises FleetError (exit 1) when a component ends or crashes on its own."""
        self._agent, self._agent_task, self._stopping = None, None, False
        self._engine_task = None
        components = asyncio.create_task(self._run_components(listeners), name="components")
        try:
            while True:
                sig = await self._next_signal(components)
                if sig is None:
                    # The group has cancelled the other components already.
                    try:
                        components.result()
                    except (FleetError, Exception) as exc:
                        raise ComponentEnded(f"fleetd stops: {_first_error(exc)}") from exc
                    raise ComponentEnded("fleetd's components ended unexpectedly")
                if sig == signal.SIGUSR1:
                    self._dump_state()
                    continue
                self._stopping = True
                engine = self._engine_task
                if engine is not None:
                    # A leader resigns first: a standby leads within a second.
                    engine.cancel()
                if sig != signal.SIGHUP:
                    await self._stop_agent()
                if engine is not None:
                    # Cancelling the group now would interrupt the resignation.
                    await asyncio.wait({engine}, timeout=STOP_TIMEOUT)
                await self._cancel(components)
                return sig == signal.SIGHUP
        finally:
            if not components.done():
                components.cancel()

    async def _next_signal(self, components: asyncio.Task[None]) -> int | None:
        """The next signal, or None if the components ended first."""
        getter = asyncio.ensure_future(self._signals.get())
        try:
            await asyncio.wait({components, getter}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            if not getter.done():
                getter.cancel()
        if getter.done() and not getter.cancelled():
            return getter.result()
        return None

    async def _stop_agent(self) -> None:
        """SIGTERM/SIGINT: let the agent finish (it purges when configured to)."""
        agent, task = self._agent, self._agent_task
        if agent is None or task is None or task.done():
            return
        agent.stop()
        limit = AGENT_PURGE_TIMEOUT if agent.shutdown_stops_units else AGENT_STOP_TIMEOUT
        with contextlib.suppress(Exception):
            await asyncio.wait_for(asyncio.shield(task), timeout=limit)

    @staticmethod
    async def _cancel(components: asyncio.Task[None]) -> None:
        components.cancel()
        done, _ = await asyncio.wait({components}, timeout=STOP_TIMEOUT)
        if not done:
            log.error("fleetd's components did not stop within %gs", STOP_TIMEOUT)
            return
        if not components.cancelled() and (exc := components.exception()) is not None:
            log.error("a component failed while stopping: %r", exc)

    def _dump_state(self) -> None:
        agent = self._agent
        state = {
            "machine": self.machine_id,
            "config": {
                k: v for k, v in dataclasses.asdict(self.config).items() if k != "etcd_password"
            },
            "agent_passes": getattr(agent, "passes", None),
        }
        print(json.dumps(state, default=str), flush=True)

    async def _component(self, name: str, run: Coroutine[Any, Any, None]) -> None:
        """Run one component; its returning while fleetd runs is an error."""
        await run
        if not self._stopping:
            log.error("fleetd: the %s ended unexpectedly; exiting for systemd to restart", name)
            raise ComponentEnded(f"the {name} ended unexpectedly")

    async def _run_components(self, listeners: Sequence[Listener]) -> None:

        config = self.config
        logging.getLogger().setLevel(logging.DEBUG if config.verbosity > 0 else logging.INFO)
        machine = build_machine(config, self.machine_id)
        metrics = FleetMetrics()
        registry = await self._connect_registry(config, metrics)
        systemd = await SystemdManager().connect(user=config.systemd_user)
        agent = Agent(
            registry,
            systemd,
            machine,
            units_dir=config.units_directory,
            ttl=config.agent_ttl,
            clock=SystemClock(),
            shutdown_stops_units=config.shutdown_stops_units,
            watches=not config.disable_watches,
            lease_file=Path(config.units_directory).parent / "agent.lease",
            metrics=metrics,
            events=not config.disable_events,
        )
        app = create_app(
            registry,
            machine_id=machine.id,
            version=__version__,
            ready=agent.registered.is_set,
            token_limit=config.token_limit,
            metrics=metrics,
        )
        log.info(
            "fleetd %s starting: machine %s, ip %s, etcd %s",
            __version__,
            machine.id,
            machine.public_ip or "-",
            ",".join(config.etcd_servers),
        )
        self._agent = agent
        try:
            async with asyncio.TaskGroup() as group:
                self._agent_task = group.create_task(self._component("agent", agent.run()))
                group.create_task(
                    self._component(
                        "API",
                        serve_listeners(app, listeners, on_stop=app.state.change_feed.close),
                    )
                )
                if not config.disable_engine:
                    engine = Engine(
                        registry,
                        machine.id,
                        reconcile_interval=config.engine_reconcile_interval,
                        metrics=metrics,
                        # Time for agents to register again after an etcd outage (B7).
                        machine_grace=2 * config.agent_ttl,
                        watches=not config.disable_watches,
                        events=not config.disable_events,
                        engine_version=config.engine_version_override or ENGINE_VERSION,
                    )
                    self._engine_task = group.create_task(self._component("engine", engine.run()))
        except BaseException as exc:
            if not self._stopping and not isinstance(exc, asyncio.CancelledError):
                log.error("fleetd: a component failed: %r; exiting for systemd to restart", exc)
            raise
        finally:
            systemd.close()
            await registry.close()

    @staticmethod
    async def _connect_registry(config: FleetConfig, metrics: FleetMetrics) -> EtcdRegistry:
        """Wait for etcd: fleetd started before etcd must not crash-loop (fleet retried)."""
        delay = 0.5
        while True:
            try:
                return await EtcdRegistry.connect(
                    config.etcd_servers,
                    config.etcd_key_prefix,
                    request_timeout=config.etcd_request_timeout,
                    username=config.etcd_username or None,
                    password=config.etcd_password or None,
                    ca_file=config.etcd_cafile or None,
                    cert_file=config.etcd_certfile or None,
                    key_file=config.etcd_keyfile or None,
                    metrics=metrics,
                )
            except StoreError as exc:
                log.warning("%s; retrying in %.1fs", exc, delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 10.0)


def _parse_args(argv: Sequence[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="fleetd", description="fleet daemon: agent, engine and API of one machine"
    )
    parser.add_argument("--config", help=f"configuration file (default {DEFAULT_CONFIG_PATH})")
    parser.add_argument("--version", action="store_true", help="print the version and exit")
    parser.add_argument("rest", nargs="*", help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = _parse_args(sys.argv[1:] if argv is None else argv)
    if args.version or args.rest == ["version"]:
        print(f"fleetd version {__version__}")
        return 0
    if args.rest:
        print(
            f"fleetd takes no arguments ({' '.join(args.rest)}). "
            "Did you mean to invoke fleetctl instead?",
            file=sys.stderr,
        )
        return 1
    logging.basicConfig(
        level=logging.INFO, format="%(levelname)s %(name)s: %(message)s", stream=sys.stderr
    )
    try:
        config, warnings = load_config(args.config, os.environ)
        for warning in warnings:
            log.warning("%s", warning)
        asyncio.run(Fleetd(args.config, config).run())
    except FleetError as exc:
        log.error("%s", exc)
        return exc.exit_code
    return 0


if __name__ == "__main__":
    sys.exit(main())
