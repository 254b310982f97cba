"""A long-running ``fleetctl ... --watch`` on the host, its lines time-stamped as they come."""

from __future__ import annotations

import os
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from fleet.errors import Timeout
from tests.functional.isolated import FLEETCTL


@dataclass
class Watcher:
    """``fleetctl <args>`` running until :meth:`interrupt`; ``lines`` are (arrival, line)."""

    proc: subprocess.Popen[str]
    lines: list[tuple[float, str]] = field(default_factory=list)
    _reader: threading.Thread | None = None

    @classmethod
    def start(cls, args: Sequence[str]) -> Watcher:
        env = {k: v for k, v in os.environ.items() if not k.startswith("FLEETCTL_")}
        proc = subprocess.Popen(
            [FLEETCTL, *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env={**env, "NO_COLOR": "1"},
        )
        watcher = cls(proc)
        watcher._reader = threading.Thread(target=watcher._read, daemon=True)
        watcher._reader.start()
        return watcher

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.append((time.monotonic(), line))

    def wait_line(self, match: Callable[[str], bool], timeout: float = 15.0) -> tuple[float, str]:
        """The first line (and when it came) that ``match`` accepts."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for arrived, line in list(self.lines):
                if match(line):
                    return arrived, line
            if self.proc.poll() is not None:
                err = self.proc.stderr.read() if self.proc.stderr else ""
                raise AssertionError(f"fleetctl ended ({self.proc.returncode}): {err}")
            time.sleep(0.02)
        raise Timeout(f"no matching line in {timeout:g}s; got {[x for _, x in self.lines]!r}")

    def interrupt(self) -> tuple[int, str]:
        """Ctrl-C; the exit status and what fleetctl wrote to stderr."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
        try:
            code = self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            raise
        if self._reader is not None:
            self._reader.join(timeout=5)
        err = ""
        if self.proc.stderr is not None:
            err = self.proc.stderr.read()
            self.proc.stderr.close()
        if self.proc.stdout is not None:
            self.proc.stdout.close()
        return code, err
