"""fleetd: the composition root.

Reads the configuration, builds the adapters (etcd registry, systemd over
D-Bus, API listeners) and runs the components (agent, engine unless
``disable_engine``, API) as tasks of one :class:`asyncio.TaskGroup`: a crash in
one cancels the others and fleetd exits non-zero for systemd to restart it.

Signals: SIGTERM/SIGINT stop cleanly (units keep running unless
``shutdown_stops_units``, feature B8); SIGHUP re-reads the configuration and
rebuilds the components while the API listeners stay open (fleet's
``Reloading configuration from ...``); SIGUSR1 logs a JSON state dump.
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
from collections.abc import Sequence
from pathlib import Path

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
from fleet.errors import FleetError, InvalidConfig, StoreError
from fleet.metrics import FleetMetrics
from fleet.ports import SystemClock
from fleet.registry.etcd import EtcdRegistry
from fleet.systemd.dbus import SystemdManager

log = logging.getLogger("fleetd")

MACHINE_ID_PATH = Path("/etc/machine-id")


class _Reload(Exception):
    """Raised inside the component group to rebuild it with a new configuration."""


class _Stop(Exception):
    """Raised inside the component group for a clean shutdown."""


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
        """Run the components until a signal; True means reload and run again."""
        reload = False
        try:
            await self._run_components(listeners)
        except* _Reload:
            reload = True
        except* _Stop:
            pass
        return reload

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
        try:
            async with asyncio.TaskGroup() as group:
                agent_task = group.create_task(agent.run(), name="agent")
                group.create_task(
                    serve_listeners(app, listeners, on_stop=app.state.change_feed.close),
                    name="api",
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
                    )
                    group.create_task(engine.run(), name="engine")
                group.create_task(self._wait_signal(agent, agent_task), name="signals")
        finally:
            systemd.close()
            await registry.close()

    async def _wait_signal(self, agent: Agent, agent_task: asyncio.Task[None]) -> None:
        while True:
            sig = await self._signals.get()
            if sig == signal.SIGUSR1:
                state = {
                    "machine": self.machine_id,
                    "config": {
                        k: v
                        for k, v in dataclasses.asdict(self.config).items()
                        if k != "etcd_password"
                    },
                    "agent_passes": getattr(agent, "passes", None),
                }
                print(json.dumps(state, default=str), flush=True)
                continue
            if sig == signal.SIGHUP:
                raise _Reload
            # SIGTERM/SIGINT: let the agent finish (it purges when configured to).
            agent.stop()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(asyncio.shield(agent_task), timeout=60)
            raise _Stop

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
