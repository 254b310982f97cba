"""systemd's manager over D-Bus (dbus-fast, asyncio): the only code that talks to systemd.

:class:`SystemdManager` wraps the handful of ``org.freedesktop.systemd1.Manager``
calls fleet needs (link/enable/disable unit files, reload, start/stop, reset-failed,
unit states) and turns systemd's signals (``JobRemoved`` on the manager,
``PropertiesChanged`` on unit objects) into job results and state-change
notifications. Every D-Bus failure leaves this module as a
:class:`fleet.errors.SystemdError` carrying the D-Bus error name and text.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterable, Sequence
from typing import Any

from dbus_fast import BusType, Message, MessageType
from dbus_fast.aio import MessageBus
from dbus_fast.errors import DBusError

from fleet.errors import SystemdError
from fleet.ports.systemd import NO_SUCH_UNIT, FileChange, UnitChange, UnitTriple
from fleet.systemd.jobs import JobResults

__all__ = [
    "NO_SUCH_UNIT",
    "SERVICE_IFACE",
    "SystemdManager",
    "UnitChange",
    "UnitTriple",
    "unit_name_from_path",
]

SYSTEMD = "org.freedesktop.systemd1"
MANAGER_PATH = "/org/freedesktop/systemd1"
MANAGER_IFACE = "org.freedesktop.systemd1.Manager"
UNIT_IFACE = "org.freedesktop.systemd1.Unit"
SERVICE_IFACE = "org.freedesktop.systemd1.Service"
PROPS_IFACE = "org.freedesktop.DBus.Properties"
UNIT_PATH_PREFIX = "/org/freedesktop/systemd1/unit/"

UNKNOWN_METHOD = "org.freedesktop.DBus.Error.UnknownMethod"
CALL_TIMEOUT = 25.0  # seconds: libdbus's default reply timeout

# A slow consumer loses notifications rather than memory: the agent's periodic
# resync repairs anything dropped.
_QUEUE_SIZE = 4096

_SIGNAL_RULES = (
    f"type='signal',sender='{SYSTEMD}',interface='{MANAGER_IFACE}',member='JobRemoved'",
    f"type='signal',sender='{SYSTEMD}',interface='{PROPS_IFACE}',"
    f"member='PropertiesChanged',path_namespace='{MANAGER_PATH}/unit'",
)


def unit_name_from_path(path: str) -> str:
    """Undo systemd's object-path escaping (``_2e`` -> ``.``) of a unit path."""
    escaped = path.removeprefix(UNIT_PATH_PREFIX)
    out: list[str] = []
    i = 0
    while i < len(escaped):
        if escaped[i] == "_" and _is_hex(escaped[i + 1 : i + 3]):
            out.append(chr(int(escaped[i + 1 : i + 3], 16)))
            i += 3
        else:
            out.append(escaped[i])
            i += 1
    return "".join(out)


def _is_hex(text: str) -> bool:
    return len(text) == 2 and all(c in "0123456789abcdefABCDEF" for c in text)


class SystemdManager:
    """One connection to a systemd manager's bus: ``await SystemdManager().connect(...)``."""

    def __init__(self) -> None:
        self._bus: MessageBus | None = None
        self._jobs = JobResults()
        self._queues: list[asyncio.Queue[UnitChange]] = []

    async def connect(self, bus_address: str | None = None, user: bool = False) -> SystemdManager:
        """Connect to the system bus (or the user bus, or ``bus_address`` such as
        ``unix:path=/x/system_bus_socket``) and subscribe to systemd's signals.

        Subscribing at once keeps :meth:`wait_job` correct: systemd sends
        ``JobRemoved`` only to subscribed clients."""
        if self._bus is not None:
            raise SystemdError("SystemdManager is already connected")
        bus_type = BusType.SESSION if user else BusType.SYSTEM
        try:
            bus = await MessageBus(bus_address=bus_address, bus_type=bus_type).connect()
        except (OSError, DBusError, ValueError, EOFError) as exc:
            where = bus_address or ("user bus" if user else "system bus")
            raise SystemdError(f"cannot connect to D-Bus at {where}: {exc}") from exc
        self._bus = bus
        bus.add_message_handler(self._on_message)
        try:
            for rule in _SIGNAL_RULES:
                await self._call(
                    "org.freedesktop.DBus",
                    "/org/freedesktop/DBus",
                    "org.freedesktop.DBus",
                    "AddMatch",
                    signature="s",
                    body=[rule],
                )
            await self._manager("Subscribe")
        except BaseException:
            self.close()
            raise
        return self

    def close(self) -> None:
        """Disconnect; pending :meth:`wait_job` calls fail with SystemdError."""
        bus, self._bus = self._bus, None
        if bus is not None:
            bus.remove_message_handler(self._on_message)
            bus.disconnect()
        self._jobs.fail_waiters("D-Bus connection closed")

    async def __aenter__(self) -> SystemdManager:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        self.close()

    @property
    def connected(self) -> bool:
        return self._bus is not None and bool(self._bus.connected)

    # ---- unit files -----------------------------------------------------------

    async def link_unit_files(
        self, paths: Sequence[str], runtime: bool = True, force: bool = True
    ) -> list[FileChange]:
        """``LinkUnitFiles``: the (type, symlink, target) changes systemd made."""
        body = await self._manager("LinkUnitFiles", "asbb", [list(paths), runtime, force])
        return [tuple(c) for c in body[0]]

    async def enable_unit_files(
        self, paths: Sequence[str], runtime: bool = True, force: bool = True
    ) -> list[FileChange]:
        """``EnableUnitFiles``: applies the files' ``[Install]`` sections."""
        body = await self._manager("EnableUnitFiles", "asbb", [list(paths), runtime, force])
        return [tuple(c) for c in body[1]]

    async def disable_unit_files(
        self, names: Sequence[str], runtime: bool = True
    ) -> list[FileChange]:
        body = await self._manager("DisableUnitFiles", "asb", [list(names), runtime])
        return [tuple(c) for c in body[0]]

    async def unit_file_state(self, name: str) -> str:
        """``GetUnitFileState``: ``linked-runtime``, ``enabled-runtime``, ..."""
        body = await self._manager("GetUnitFileState", "s", [name])
        return str(body[0])

    async def reload(self) -> None:
        """``Reload`` (daemon-reload); returns once systemd has re-read its units."""
        await self._manager("Reload")

    # ---- jobs -------------------------------------------------------------------

    async def start_unit(self, name: str, mode: str = "replace") -> str:
        """``StartUnit``: the job's object path (pass it to :meth:`wait_job`)."""
        body = await self._manager("StartUnit", "ss", [name, mode])
        return str(body[0])

    async def stop_unit(self, name: str, mode: str = "replace") -> str:
        body = await self._manager("StopUnit", "ss", [name, mode])
        return str(body[0])

    async def reset_failed_unit(self, name: str) -> None:
        await self._manager("ResetFailedUnit", "s", [name])

    # ASYNC109: timeout is port API (0 only looks; the Timeout error names the limit).
    async def wait_job(self, job: str, timeout: float) -> str:  # noqa: ASYNC109
        """The result (``done``, ``failed``, ``canceled``, ``dependency``, ...) of a job.

        ``JobRemoved`` can be dispatched before the caller sees the reply that
        named the job, so results are recorded by job path as they arrive."""
        return await self._jobs.wait(job, timeout)

    # ---- states -------------------------------------------------------------------

    async def unit_states(self, names: Iterable[str]) -> dict[str, UnitTriple]:
        """(load, active, sub) for each name; unknown units come back ``not-found``."""
        wanted = sorted(set(names))
        if not wanted:
            return {}
        try:
            body = await self._manager("ListUnitsByNames", "as", [wanted])
        except SystemdError as exc:
            if exc.dbus_name != UNKNOWN_METHOD:
                raise
            return {name: await self._unit_state_by_load(name) for name in wanted}
        return {str(row[0]): (str(row[2]), str(row[3]), str(row[4])) for row in body[0]}

    async def unit_results(self, names: Iterable[str]) -> dict[str, str]:
        results: dict[str, str] = {}
        for name in sorted(set(names)):
            results[name] = ""
            if name.endswith(".service"):
                with contextlib.suppress(SystemdError):
                    results[name] = str(await self.unit_property(name, "Result", SERVICE_IFACE))
        return results

    async def _unit_state_by_load(self, name: str) -> UnitTriple:
        # GetUnit fails for an inactive unit systemd has garbage-collected;
        # LoadUnit always answers.
        path = str((await self._manager("LoadUnit", "s", [name]))[0])
        body = await self._call(
            SYSTEMD, path, PROPS_IFACE, "GetAll", signature="s", body=[UNIT_IFACE]
        )
        props: dict[str, Any] = body[0]
        return (
            str(props["LoadState"].value),
            str(props["ActiveState"].value),
            str(props["SubState"].value),
        )

    async def unit_property(self, name: str, prop: str, interface: str = UNIT_IFACE) -> Any:
        """One property of a unit (loading it if systemd had dropped it), e.g.
        ``unit_property("x.service", "MainPID", SERVICE_IFACE)``."""
        path = str((await self._manager("LoadUnit", "s", [name]))[0])
        body = await self._call(
            SYSTEMD, path, PROPS_IFACE, "Get", signature="ss", body=[interface, prop]
        )
        return body[0].value

    async def system_state(self) -> str:
        body = await self._call(
            SYSTEMD,
            MANAGER_PATH,
            PROPS_IFACE,
            "Get",
            signature="ss",
            body=[MANAGER_IFACE, "SystemState"],
        )
        return str(body[0].value)

    # ---- notifications ----------------------------------------------------------

    def subscribe(self) -> asyncio.Queue[UnitChange]:
        """A new queue of :class:`UnitChange` hints, fed from systemd's signals."""
        queue: asyncio.Queue[UnitChange] = asyncio.Queue(maxsize=_QUEUE_SIZE)
        self._queues.append(queue)
        return queue

    def unsubscribe(self, queue: asyncio.Queue[UnitChange]) -> None:
        with contextlib.suppress(ValueError):
            self._queues.remove(queue)

    def _publish(self, change: UnitChange) -> None:
        for queue in self._queues:
            with contextlib.suppress(asyncio.QueueFull):
                queue.put_nowait(change)

    def _on_message(self, msg: Message) -> bool:
        if msg.message_type is not MessageType.SIGNAL:
            return False
        if msg.member == "JobRemoved" and msg.interface == MANAGER_IFACE:
            _id, job, unit, result = msg.body
            self._job_removed(str(job), str(result))
            self._publish(UnitChange(unit=str(unit), job_result=str(result)))
        elif (
            msg.member == "PropertiesChanged"
            and msg.interface == PROPS_IFACE
            and (msg.path or "").startswith(UNIT_PATH_PREFIX)
            and msg.body[0] == UNIT_IFACE
        ):
            changed: dict[str, Any] = msg.body[1]
            active = changed.get("ActiveState")
            sub = changed.get("SubState")
            self._publish(
                UnitChange(
                    unit=unit_name_from_path(msg.path or ""),
                    active=None if active is None else str(active.value),
                    sub=None if sub is None else str(sub.value),
                )
            )
        # Never claim the message: dbus-fast's own bookkeeping must still see it.
        return False

    def _job_removed(self, job: str, result: str) -> None:
        self._jobs.finished(job, result)

    # ---- plumbing -------------------------------------------------------------------

    async def _manager(
        self, member: str, signature: str = "", body: list[Any] | None = None
    ) -> list[Any]:
        return await self._call(
            SYSTEMD, MANAGER_PATH, MANAGER_IFACE, member, signature=signature, body=body
        )

    async def _call(
        self,
        destination: str,
        path: str,
        interface: str,
        member: str,
        *,
        signature: str = "",
        body: list[Any] | None = None,
    ) -> list[Any]:
        msg = Message(
            destination=destination,
            path=path,
            interface=interface,
            member=member,
            signature=signature,
            body=body or [],
        )
        if self._bus is None:
            raise SystemdError(f"{member}: not connected to D-Bus")
        try:
            # D-Bus's own default reply timeout: a wedged bus must not wedge the agent.
            async with asyncio.timeout(CALL_TIMEOUT):
                reply = await self._bus.call(msg)
        except TimeoutError as exc:
            raise SystemdError(f"{member}: no reply from systemd within {CALL_TIMEOUT:g}s") from exc
        except DBusError as exc:
            raise SystemdError(f"{member}: {exc.type}: {exc.text}", exc.type) from exc
        except (OSError, EOFError, RuntimeError) as exc:
            raise SystemdError(f"{member}: D-Bus connection failed: {exc}") from exc
        if reply is None:
            raise SystemdError(f"{member}: D-Bus connection closed")
        if reply.message_type is MessageType.ERROR:
            name = reply.error_name or "unknown"
            text = str(reply.body[0]) if reply.body else ""
            raise SystemdError(f"{member}: {name}: {text}", name)
        return list(reply.body)
