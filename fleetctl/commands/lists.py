"""The list commands declared to click: list-unit-files, list-units, list-machines.

Their bodies are in :mod:`fleetctl.listing` (click-free, so that
:mod:`fleetctl.fastpath` can run them without importing click).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import click

from fleetctl import listing
from fleetctl.context import App

pass_app = click.make_pass_decorator(App)


def list_options(default_fields: str, valid: str, short_full: bool) -> Callable[[Any], Any]:
    def decorate(func: Any) -> Any:
        full_flags = ("--full", "-l") if short_full else ("--full",)
        func = click.option(
            "--watch",
            is_flag=True,
            help="Show the listing again on every change (driven by watches) until Ctrl-C.",
        )(func)
        func = click.option(
            "-o",
            "--output",
            type=click.Choice(["table", "json"], case_sensitive=False),
            default="table",
            show_default=True,
            help="Output format: fleet's table, or a JSON array of objects (all fields).",
        )(func)
        func = click.option(
            "--no-legend", is_flag=True, help="Do not print a legend (column headers)."
        )(func)
        func = click.option(
            *full_flags, "full", is_flag=True, help="Do not ellipsize fields on output."
        )(func)
        return click.option(
            "--fields",
            default=default_fields,
            show_default=True,
            help=f"Columns to print, comma-separated. Valid fields: {valid}.",
        )(func)

    return decorate


def _list_command(name: str, help_text: str) -> click.Command:
    default_fields, valid, short_full = listing.LISTS[name]
    body = listing.BODIES[name]

    @click.command(name, help=help_text)
    @list_options(default_fields, valid, short_full=short_full)
    @pass_app
    def command(  # noqa: PLR0917 (click passes every option by position)
        app: App, fields: str, full: bool, no_legend: bool, output: str, watch: bool
    ) -> int:
        return body(app, fields, full, no_legend, output, watch=watch)

    return command


list_unit_files = _list_command("list-unit-files", "List the units that exist in the cluster.")
list_units = _list_command("list-units", "List the current state of units in the cluster.")
list_machines = _list_command("list-machines", "Enumerate the current hosts in the cluster.")

COMMANDS = (list_unit_files, list_units, list_machines)
