"""Our end of a remote command's session: its output copied to our streams as it
comes, or, for an interactive shell, our terminal switched to raw mode while its
keystrokes go to the channel."""

from __future__ import annotations

import os
import select
import sys
import termios
import tty
from typing import Any

import paramiko

_CHUNK = 32768


def pump(chan: paramiko.Channel, out: Any, err: Any) -> None:
    """Copy the channel's stdout and stderr to ``out`` and ``err`` until the command exits."""
    while True:
        ready, _, _ = select.select([chan], [], [], 1.0)
        if ready or chan.recv_ready() or chan.recv_stderr_ready():
            got = False
            while chan.recv_stderr_ready():
                err.write(chan.recv_stderr(_CHUNK))
                got = True
            if chan.recv_ready():
                data = chan.recv(_CHUNK)
                if data:
                    out.write(data)
                    got = True
            out.flush()
            err.flush()
            if not got and chan.exit_status_ready() and not chan.recv_ready():
                break
        elif chan.exit_status_ready():
            break


def request_pty(chan: paramiko.Channel) -> None:
    """A pseudo-terminal the size of ours."""
    cols, rows = os.get_terminal_size()
    chan.get_pty(term="xterm-256color", width=cols, height=rows)


def interactive(chan: paramiko.Channel) -> None:
    """Splice our raw-mode terminal onto the channel until either side ends."""
    fd = sys.stdin.fileno()
    saved = termios.tcgetattr(fd)
    try:
        tty.setraw(fd)
        while True:
            ready, _, _ = select.select([chan, fd], [], [])
            if chan in ready:
                data = chan.recv(_CHUNK)
                if not data:
                    break
                os.write(sys.stdout.fileno(), data)
            if fd in ready:
                data = os.read(fd, 1024)
                if not data:
                    break
                chan.sendall(data)
    finally:
        termios.tcsetattr(fd, termios.TCSADRAIN, saved)
