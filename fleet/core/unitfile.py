"""Unit files as data: the systemd syntax subset fleet accepts, its canonical
serialisation and the content hash units are stored under.

A :class:`UnitFile` is an ordered tuple of ``(section, name, value)`` options,
normalised so that all options of a section sit together in first-seen section
order. Its canonical text (:meth:`UnitFile.serialize`) is the form go-systemd's
``Serialize`` produced for fleet, so comments, blank lines and whitespace
around ``=`` never change the hash, and ``UnitFile.parse(u.serialize()) == u``
holds for every UnitFile that can be constructed: the constructor enforces the
same rules the parser guarantees.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable
from dataclasses import dataclass
from functools import cached_property

from fleet.errors import InvalidUnitFile

# go-systemd's SYSTEMD_LINE_MAX, which fleet enforced on the serialised unit:
# a longer line is one systemd itself may refuse or truncate.
LINE_MAX = 2048
_WHITESPACE = " \t\r\n"
_COMMENT_STARTS = ("#", ";")
_LINE_BREAK = re.compile(r"\r\n|\r|\n")
_FORBIDDEN_IN_NAME_OR_SECTION = frozenset("\n\r\x00[]=")


@dataclass(frozen=True, slots=True)
class UnitOption:
    section: str
    name: str
    value: str

    def __str__(self) -> str:
        return f"[{self.section}] {self.name}={self.value}"


def _odd_trailing_backslashes(line: str) -> bool:
    # systemd treats "\\" at the end of a line as an escaped backslash, not a
    # continuation: only an odd run continues the line.
    count = len(line) - len(line.rstrip("\\"))
    return count % 2 == 1


def _check_option(option: UnitOption) -> str | None:
    """Why ``option`` cannot appear in a canonical unit file, or None if it can."""
    section, name, value = option.section, option.name, option.value
    if not section:
        return "empty section name"
    # The "[section]" header is a line of its own once serialised: the parser's
    # LINE_MAX must hold for it too, or parse(serialize(u)) would refuse u.
    if len(f"[{section}]".encode("utf-8", "surrogatepass")) > LINE_MAX:
        return f"section header is longer than {LINE_MAX} bytes"
    if any(c in _FORBIDDEN_IN_NAME_OR_SECTION for c in section):
        return f"section name {section!r} contains one of '[', ']', '=', a newline or NUL"
    if not name:
        return "empty option name"
    if name != name.strip(_WHITESPACE):
        return f"option name {name!r} has leading or trailing whitespace"
    if name.startswith((*_COMMENT_STARTS, "[")) or any(
        c in _FORBIDDEN_IN_NAME_OR_SECTION for c in name
    ):
        return f"option name {name!r} starts with '#', ';' or '[' or contains '=', a newline or NUL"
    if value != value.strip(_WHITESPACE):
        return f"value of {name} has leading or trailing whitespace"
    if any(c in value for c in "\n\r\x00"):
        return f"value of {name} contains a line break or NUL"
    if _odd_trailing_backslashes(value):
        return f"value of {name} ends with an unescaped backslash"
    if len(f"{name}={value}".encode("utf-8", "surrogatepass")) > LINE_MAX:
        return f"option {name} is longer than {LINE_MAX} bytes"
    try:
        f"{section}{name}{value}".encode()
    except UnicodeEncodeError:
        return f"option {name} is not valid UTF-8"
    return None


def _grouped(options: Iterable[UnitOption]) -> tuple[UnitOption, ...]:
    by_section: dict[str, list[UnitOption]] = {}
    for option in options:
        by_section.setdefault(option.section, []).append(option)
    return tuple(option for group in by_section.values() for option in group)


@dataclass(frozen=True)
class UnitFile:
    """A parsed unit file; construct with :meth:`parse` or :meth:`from_options`.

    Invariants (checked on construction, so they hold for every instance): at least
    one option; values are single-line and trimmed; options are grouped by section
    in first-seen order. Two files with the same meaning compare equal and hash equal.
    """

    options: tuple[UnitOption, ...]

    def __post_init__(self) -> None:
        options = tuple(self.options)
        if not options:
            raise InvalidUnitFile("unit file has no options")
        for option in options:
            problem = _check_option(option)
            if problem is not None:
                raise InvalidUnitFile(f"invalid unit file option: {problem}")
        # Frozen: normalise through object.__setattr__ once, at construction.
        object.__setattr__(self, "options", _grouped(options))

    @classmethod
    def from_options(cls, options: Iterable[UnitOption]) -> UnitFile:
        return cls(tuple(options))

    @classmethod
    def parse(cls, text: str | bytes) -> UnitFile:
        """Parse systemd unit-file syntax; errors carry the (1-based) line number."""
        if isinstance(text, bytes):
            try:
                text = text.decode("utf-8")
            except UnicodeDecodeError as exc:
                raise InvalidUnitFile(
                    f"unit file is not valid UTF-8 (byte offset {exc.start})"
                ) from exc
        return cls(tuple(_parse_options(text)))

    def serialize(self) -> str:
        """The canonical text: sections in first-seen order, one blank line between them."""
        parts: list[str] = []
        section: str | None = None
        for option in self.options:
            if option.section != section:
                if section is not None:
                    parts.append("\n")
                parts.append(f"[{option.section}]\n")
                section = option.section
            parts.append(f"{option.name}={option.value}\n")
        return "".join(parts)

    @cached_property
    def _canonical(self) -> bytes:
        return self.serialize().encode("utf-8")

    @cached_property
    def hash(self) -> str:
        """SHA1 (hex) of the canonical text: the key unit bodies are stored under."""
        return hashlib.sha1(self._canonical).hexdigest()

    @property
    def size(self) -> int:
        """Bytes of the canonical text in UTF-8: what is stored, and what
        :mod:`fleet.core.limits` limits."""
        return len(self._canonical)

    @property
    def short_hash(self) -> str:
        return self.hash[:7]

    def values(self, section: str, name: str) -> list[str]:
        """Every value of ``name`` in ``section``, in file order (empty assignments included)."""
        return [o.value for o in self.options if o.section == section and o.name == name]

    def sections(self) -> list[str]:
        return list(dict.fromkeys(o.section for o in self.options))

    @property
    def description(self) -> str:
        found = self.values("Unit", "Description")
        return found[-1] if found else ""

    @property
    def has_install(self) -> bool:
        return any(o.section == "Install" for o in self.options)


def _parse_options(text: str) -> list[UnitOption]:
    # systemd ends a line at "\n", "\r\n" or a lone "\r"; splitting the same way means
    # a value can never hold a "\r" that systemd would read as a line break.
    lines = _LINE_BREAK.split(text.removeprefix("\ufeff"))

    options: list[UnitOption] = []
    section: str | None = None
    # A logical line being assembled from backslash continuations: its first line
    # number (for errors) and its pieces.
    pending_line = 0
    pending: list[str] = []

    def finish(line_no: int, logical: str) -> None:
        nonlocal section
        stripped = logical.strip(_WHITESPACE)
        if not stripped:
            return
        if stripped.startswith("["):
            if not stripped.endswith("]"):
                raise InvalidUnitFile(f"line {line_no}: section header is missing its ']'")
            name = stripped[1:-1]
            if not name or any(c in _FORBIDDEN_IN_NAME_OR_SECTION for c in name):
                raise InvalidUnitFile(f"line {line_no}: invalid section header {stripped!r}")
            section = name
            return
        if "=" not in stripped:
            raise InvalidUnitFile(
                f"line {line_no}: expected 'Name=Value', a '[Section]' or a comment, "
                f"got {stripped[:40]!r}"
            )
        if section is None:
            raise InvalidUnitFile(f"line {line_no}: option outside of any [Section]")
        key, _, value = stripped.partition("=")
        option = UnitOption(section, key.strip(_WHITESPACE), value.strip(_WHITESPACE))
        problem = _check_option(option)
        if problem is not None:
            raise InvalidUnitFile(f"line {line_no}: {problem}")
        options.append(option)

    for line_no, raw in enumerate(lines, start=1):
        if "\x00" in raw:
            raise InvalidUnitFile(f"line {line_no}: unit file contains a NUL byte")
        try:
            encoded = raw.encode("utf-8")
        except UnicodeEncodeError as exc:
            raise InvalidUnitFile(f"line {line_no}: unit file is not valid UTF-8") from exc
        if len(encoded) > LINE_MAX:
            raise InvalidUnitFile(f"line {line_no}: longer than {LINE_MAX} bytes")
        line = raw.rstrip(_WHITESPACE)
        # Comment lines are skipped even inside a continuation, as systemd does.
        if line.lstrip(_WHITESPACE).startswith(_COMMENT_STARTS):
            continue
        if not pending:
            pending_line = line_no
        if _odd_trailing_backslashes(line):
            pending.append(line[:-1].strip(_WHITESPACE))
            continue
        pending.append(line.strip(_WHITESPACE))
        finish(pending_line, " ".join(p for p in pending if p))
        pending = []
    if pending:
        # A continuation that runs into the end of the file: systemd keeps what it has.
        finish(pending_line, " ".join(p for p in pending if p))

    if not options:
        raise InvalidUnitFile("unit file has no options")
    return options
