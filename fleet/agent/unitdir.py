"""The agent's unit-file directory (``units_directory``, default ``/run/fleet/units``).

:class:`UnitDirectory` is the only code that writes unit files to disk. Whatever
name it is given, a write lands inside the directory or not at all: names are
validated, every access is relative to a descriptor of the directory, and no
path component is followed through a symlink. Files are replaced atomically
(temp file + rename, mode 0644) so systemd never reads half a unit file.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import secrets
import stat
from pathlib import Path

from fleet.core.names import validate_unit_name
from fleet.errors import InvalidUnitName

# The agent only ever considers these files its own (fleet's quirk: target and
# slice units are scheduled but not listed back from the units directory).
LISTED_SUFFIXES = (
    ".service",
    ".socket",
    ".timer",
    ".path",
    ".device",
    ".mount",
    ".automount",
)

_TMP_PREFIX = ".fleet-tmp-"


def body_hash(body: str | bytes) -> str:
    """sha1 hex of a unit body: fleet names bodies by this hash."""
    data = body.encode() if isinstance(body, str) else body
    return hashlib.sha1(data).hexdigest()  # a content name, not a security digest


def check_name(name: str) -> None:
    """Raise InvalidUnitName unless ``name`` is a unit name that is one path component."""
    if not name or "/" in name or "\0" in name or ".." in name or name.startswith("."):
        raise InvalidUnitName(f"unit name {name!r} cannot be a file in the units directory")
    validate_unit_name(name)


class UnitDirectory:
    """Unit files under one directory; ``path`` need not exist until :meth:`ensure`."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)

    def ensure(self) -> None:
        """Create the directory (0755) if it is missing."""
        self.path.mkdir(mode=0o755, parents=True, exist_ok=True)

    def file_path(self, name: str) -> str:
        """Absolute path of unit ``name`` in this directory (validated)."""
        check_name(name)
        return str(self.path / name)

    def write(self, name: str, body: str) -> str:
        """Atomically write ``body`` as unit ``name``; returns the body's hash."""
        check_name(name)
        data = body.encode()
        tmp = f"{_TMP_PREFIX}{secrets.token_hex(8)}"
        dfd = self._open_dir()
        try:
            fd = os.open(
                tmp,
                os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC,
                0o644,
                dir_fd=dfd,
            )
            try:
                os.fchmod(fd, 0o644)  # the umask must not make a unit unreadable
                view = memoryview(data)
                while view:
                    view = view[os.write(fd, view) :]
                os.fsync(fd)
            finally:
                os.close(fd)
            # rename() replaces a symlink planted at `name` instead of following it.
            os.rename(tmp, name, src_dir_fd=dfd, dst_dir_fd=dfd)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp, dir_fd=dfd)
            raise
        finally:
            os.close(dfd)
        return body_hash(data)

    def remove(self, name: str) -> bool:
        """Delete unit ``name``; False if it was not there."""
        check_name(name)
        dfd = self._open_dir()
        try:
            os.unlink(name, dir_fd=dfd)
        except FileNotFoundError:
            return False
        finally:
            os.close(dfd)
        return True

    def read(self, name: str) -> bytes | None:
        """The content of unit ``name`` if it is a regular file here, else None."""
        check_name(name)
        try:
            dfd = self._open_dir()
        except FileNotFoundError:
            return None
        try:
            fd = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=dfd)
        except (FileNotFoundError, OSError):
            # ELOOP: a symlink is not a file we wrote.
            return None
        finally:
            os.close(dfd)
        try:
            if not stat.S_ISREG(os.fstat(fd).st_mode):
                return None
            chunks = []
            while chunk := os.read(fd, 65536):
                chunks.append(chunk)
            return b"".join(chunks)
        finally:
            os.close(fd)

    def hash_of(self, name: str) -> str | None:
        """sha1 hex of unit ``name``'s content, None if absent."""
        data = self.read(name)
        return None if data is None else body_hash(data)

    def list(self) -> list[str]:
        """Names of the regular unit files here of a type fleet manages, sorted."""
        try:
            dfd = self._open_dir()
        except FileNotFoundError:
            return []
        try:
            names = []
            for entry in os.listdir(dfd):
                if entry.startswith(".") or not entry.endswith(LISTED_SUFFIXES):
                    continue
                try:
                    st = os.stat(entry, dir_fd=dfd, follow_symlinks=False)
                except FileNotFoundError:
                    continue
                if stat.S_ISREG(st.st_mode):
                    names.append(entry)
            return sorted(names)
        finally:
            os.close(dfd)

    def hashes(self) -> dict[str, str]:
        """name -> content hash for every listed unit file."""
        out = {}
        for name in self.list():
            digest = self.hash_of(name)
            if digest is not None:
                out[name] = digest
        return out

    def _open_dir(self) -> int:
        return os.open(self.path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
