"""The list commands straight from a plain command line, without importing click.

``list-units``, ``list-machines`` and ``list-unit-files`` are what users and
scripts run most; importing click and every command costs more than the
listing itself (docs/benchmarks.md). :func:`parse` recognises only the plain
forms: an optional ``--endpoint`` (or ``FLEETCTL_ENDPOINT``), the exact command
name and its own flags (``--fields``, ``--full``/``-l``, ``--no-legend``,
``-o``/``--output``). Anything else, any other ``FLEETCTL_*`` variable
included, returns None and the full click CLI handles the command, so the
result is always what click would have made of it
(``tests/fleetctl/test_fastpath.py`` holds the two to that).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from fleetctl.client import DEFAULT_ENDPOINT, ClientSettings
from fleetctl.listing import BODIES, LISTS

OUTPUTS = ("table", "json")


@dataclass(frozen=True)
class Parsed:
    settings: ClientSettings
    command: str
    fields: str
    full: bool
    no_legend: bool
    output: str


def _value(args: Sequence[str], index: int, flag: str) -> tuple[str | None, int]:
    """The value of ``flag`` at ``args[index]`` (``--flag=v`` or ``--flag v``), and the
    index after it; None if ``args[index]`` is not that flag with a value."""
    arg = args[index]
    if arg.startswith(flag + "="):
        return arg[len(flag) + 1 :], index + 1
    if arg == flag and index + 1 < len(args):
        return args[index + 1], index + 2
    return None, index


def parse(args: Sequence[str], environ: Mapping[str, str]) -> Parsed | None:
    """The plain list command ``args`` asks for, or None: leave it to click."""
    if any(key.startswith("FLEETCTL_") and key != "FLEETCTL_ENDPOINT" for key in environ):
        return None
    endpoint = environ.get("FLEETCTL_ENDPOINT") or None
    index = 0
    while index < len(args) and args[index].startswith("--endpoint"):
        endpoint, index = _value(args, index, "--endpoint")
        if endpoint is None:
            return None
    if index >= len(args) or args[index] not in LISTS:
        return None
    command = args[index]
    fields, _, short_full = LISTS[command]
    full = no_legend = False
    output = "table"
    index += 1
    while index < len(args):
        arg = args[index]
        if arg == "--no-legend":
            no_legend, index = True, index + 1
        elif arg == "--full" or (short_full and arg == "-l"):
            full, index = True, index + 1
        elif arg.startswith("--fields"):
            value, index = _value(args, index, "--fields")
            if value is None:
                return None
            fields = value
        elif arg == "-o" or arg.startswith("--output"):
            # Only "-o v": click reads "-ov" and "-o=v" differently from "--output=v".
            value, index = _value(args, index, arg if arg == "-o" else "--output")
            if value is None or value.lower() not in OUTPUTS:
                return None
            output = value.lower()
        else:
            return None
    settings = ClientSettings(endpoint=endpoint or DEFAULT_ENDPOINT)
    return Parsed(settings, command, fields, full, no_legend, output)


def run(parsed: Parsed) -> int:
    """Run the parsed list command, as its click command would."""
    from fleetctl.context import App

    body = BODIES[parsed.command]
    app = App(settings=parsed.settings)
    return body(app, parsed.fields, parsed.full, parsed.no_legend, parsed.output)
