"""Host-key checking against fleetctl's own known_hosts file: a known key is
accepted; an unknown one only after fleet's "Are you sure you want to continue
connecting" prompt, then remembered; a changed one is refused with OpenSSH's
man-in-the-middle banner (:class:`~fleet.errors.HostKeyMismatch`). Only this
file is consulted, never ``~/.ssh``.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import paramiko

from fleet.errors import HostKeyMismatch, HostKeyUnknown, SSHError
from fleetctl.ssh.addresses import DEFAULT_PORT
from fleetctl.ssh.settings import SSHSettings


def known_hosts_id(host: str, port: int) -> str:
    """OpenSSH's known_hosts spelling: the default port is omitted."""
    return host if port == DEFAULT_PORT else f"[{host}]:{port}"


_ALGO_NAMES = {"ssh-rsa": "RSA", "ssh-dss": "DSA", "ssh-ed25519": "ED25519"}


def algo_name(key: paramiko.PKey) -> str:
    name = str(key.get_name())
    if name.startswith("ecdsa-"):
        return "ECDSA"
    return _ALGO_NAMES.get(name, name.upper())


def md5_fingerprint(key: paramiko.PKey) -> str:
    return ":".join(f"{b:02x}" for b in key.get_fingerprint())


class KnownHosts:
    """An OpenSSH-format known_hosts file (hashed hosts and @markers are not supported
    and are ignored, as in fleet). Only this file is consulted, never ~/.ssh."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def _entries(self) -> Iterator[tuple[list[str], str, str]]:
        try:
            text = self.path.read_text()
        except FileNotFoundError:
            return
        except OSError as exc:
            raise SSHError(f"cannot read known hosts file {self.path}: {exc.strerror}") from exc
        for line in text.splitlines():
            fields = line.split()
            if len(fields) < 3 or fields[0].startswith(("#", "@", "|")):
                continue
            yield fields[0].split(","), fields[1], fields[2]

    def check(self, host_id: str, key: paramiko.PKey) -> bool:
        """True if known with this key; False if unknown; HostKeyMismatch if known with another."""
        offered = key.get_base64()
        known_other = False
        for hosts, _algo, blob in self._entries():
            if host_id not in hosts:
                continue
            if blob == offered:
                return True
            known_other = True
        if known_other:
            raise HostKeyMismatch(_mismatch_banner(host_id, key, self.path))
        return False

    def add(self, host_id: str, key: paramiko.PKey) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        with open(self.path, "a") as f:
            f.write(f"{host_id} {key.get_name()} {key.get_base64()}\n")


def _mismatch_banner(host_id: str, key: paramiko.PKey, path: Path) -> str:
    rule = "@" * 59
    return "\n".join(
        [
            rule,
            "@    WARNING: REMOTE HOST IDENTIFICATION HAS CHANGED!     @",
            rule,
            "IT IS POSSIBLE THAT SOMEONE IS DOING SOMETHING NASTY!",
            "Someone could be eavesdropping on you right now (man-in-the-middle attack)!",
            "It is also possible that a host key has just been changed.",
            f"The fingerprint for the {algo_name(key)} key sent by the remote host {host_id} is",
            f"{md5_fingerprint(key)}.",
            "Please contact your system administrator.",
            f"Add correct host key in {path} to get rid of this message.",
            f"Host key verification failed for {host_id}: connection aborted.",
        ]
    )


def verify_host_key(host_id: str, key: paramiko.PKey, settings: SSHSettings) -> None:
    """Accept a known key, prompt for an unknown one (fleet's wording), refuse a changed one."""
    if not settings.strict_host_key_checking:
        return
    known = KnownHosts(settings.known_hosts_file)
    if known.check(host_id, key):
        return
    interactive = settings.prompt_in.isatty()
    line = "" if interactive else settings.prompt_in.readline()
    if not interactive and not line:
        # Nobody answers (a script, CI, stdin closed): one line instead of a prompt.
        raise HostKeyUnknown(
            f"host key verification failed for {host_id}: the host is unknown and there is "
            f"no answer on stdin ({algo_name(key)} {md5_fingerprint(key)}); add it to "
            f"{settings.known_hosts_file} or use --strict-host-key-checking=false"
        )
    out = settings.prompt_out
    out.write(
        f"The authenticity of host '{host_id}' can't be established.\n"
        f"{algo_name(key)} key fingerprint is {md5_fingerprint(key)}.\n"
        "Are you sure you want to continue connecting (yes/no)? "
    )
    out.flush()
    if interactive:
        line = settings.prompt_in.readline()
    if not line.endswith("\n"):
        out.write("\n")  # no answer at all (EOF): end the prompt's line
    answer = line.strip().lower()
    if answer not in ("yes", "y"):
        raise HostKeyUnknown(f"host key verification failed for {host_id}: not accepted")
    known.add(host_id, key)
    out.write(
        f"Warning: Permanently added '{host_id}' ({algo_name(key)}) to the list of known hosts.\n"
    )
