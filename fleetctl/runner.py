"""Running one :class:`~fleetctl.targets.Call` on its machine (:class:`Remote`):
locally when the machine is this one (``/etc/machine-id``), otherwise over SSH
to the machine's public IP, hopping through the ``--tunnel`` bastion when one
is set (the connection the client used). It runs outside the event loop so
Ctrl-C ends ``journal -f`` at once; the command's exit status becomes ours.
SSH failures (unknown or changed host key, authentication) are
:class:`~fleet.errors.SSHError`, which reach the user as one message, exit 1.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

from fleet.errors import FleetError

if TYPE_CHECKING:
    from fleetctl.context import App
    from fleetctl.ssh import SSHConnection
    from fleetctl.targets import Call

MACHINE_ID_PATH = Path("/etc/machine-id")
DEFAULT_SSH_PORT = 22


def local_machine_id(path: Path = MACHINE_ID_PATH) -> str:
    try:
        return path.read_text().strip()
    except OSError:
        return ""


class _TextSink:
    """Bytes written to a text stream that has no binary buffer (tests, wrappers)."""

    def __init__(self, stream: IO[str]) -> None:
        self._stream = stream

    def write(self, data: bytes) -> None:
        self._stream.write(data.decode(errors="replace"))

    def flush(self) -> None:
        self._stream.flush()


def _binary(stream: IO[str]) -> Any:
    stream.flush()
    buffer = getattr(stream, "buffer", None)
    return buffer if buffer is not None else _TextSink(stream)


def _fd(stream: IO[str]) -> int | None:
    try:
        return stream.fileno()
    except (OSError, ValueError, AttributeError):
        return None


class Remote:
    """Runs commands on machines; one SSH connection per machine per invocation."""

    def __init__(self, app: App, ssh_port: int = DEFAULT_SSH_PORT) -> None:
        self.app = app
        self.ssh_port = ssh_port
        self.local_id = local_machine_id()
        self._conns: dict[str, SSHConnection] = {}

    def connect(self, address: str) -> SSHConnection:
        from fleetctl import ssh

        target = ssh.join_host_port(address, self.ssh_port)
        if target not in self._conns:
            self._conns[target] = ssh.SSHConnection.open(
                target, self.app.settings.ssh_settings(), via=self.app.tunnel()
            )
        return self._conns[target]

    def run_ssh(
        self, address: str, command: str, *, forward_agent: bool = False, pty: bool = False
    ) -> int:
        conn = self.connect(address)
        return conn.run(
            command,
            forward_agent=forward_agent,
            pty=pty,
            stdout=_binary(self.app.out),
            stderr=_binary(self.app.err),
        )

    def run(self, call: Call) -> int:
        if self.local_id and call.machine_id == self.local_id:
            return self._run_local(call.argv)
        if not call.address:
            raise FleetError(f"Error getting machine IP: machine {call.machine_id} is not known")
        import shlex  # with subprocess: only the commands that run something pay

        return self.run_ssh(call.address, shlex.join(call.argv))

    def capture(self, call: Call) -> tuple[int, bytes]:
        """Run ``call`` like :meth:`run` but keep its stdout (stderr still goes to ours)."""
        import io

        sink = io.BytesIO()
        if self.local_id and call.machine_id == self.local_id:
            import subprocess

            self.app.err.flush()
            try:
                done = subprocess.run(
                    call.argv, check=False, stdout=subprocess.PIPE, stderr=_fd(self.app.err)
                )
            except OSError as exc:
                raise FleetError(f"Error running local command: {exc}") from exc
            return done.returncode, done.stdout
        if not call.address:
            raise FleetError(f"Error getting machine IP: machine {call.machine_id} is not known")
        import shlex

        conn = self.connect(call.address)
        code = conn.run(shlex.join(call.argv), stdout=sink, stderr=_binary(self.app.err))
        return code, sink.getvalue()

    def _run_local(self, argv: Sequence[str]) -> int:
        import subprocess

        self.app.out.flush()
        self.app.err.flush()
        try:
            done = subprocess.run(
                argv, check=False, stdout=_fd(self.app.out), stderr=_fd(self.app.err)
            )
        except OSError as exc:
            raise FleetError(f"Error running local command: {exc}") from exc
        return done.returncode

    def close(self) -> None:
        for conn in self._conns.values():
            conn.close()
        self._conns.clear()

    def __enter__(self) -> Remote:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
