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


def _states(values: tuple[str, ...]) -> list[str]:
    """``--state a,b --state c`` -> [a, b, c]."""
    return [part.strip() for value in values for part in value.split(",") if part.strip()]


def _names(units: tuple[str, ...]) -> list[str]:
    from fleet.core.names import mangle_unit_name

    return [mangle_unit_name(unit) for unit in units]


def _filtered_list_command(name: str, help_text: str, state_help: str) -> click.Command:
    default_fields, valid, short_full = listing.LISTS[name]
    body = listing.FILTERED_BODIES[name]

    @click.command(name, help=help_text)
    @list_options(default_fields, valid, short_full=short_full)
    @click.option("--state", "states", multiple=True, help=state_help)
    @click.argument("units", nargs=-1, metavar="[UNIT]...")
    @pass_app
    def command(  # noqa: PLR0917 (click passes each option by keyword; the order is click's)
        app: App,
        fields: str,
        full: bool,
        no_legend: bool,
        output: str,
        watch: bool,
        states: tuple[str, ...],
        units: tuple[str, ...],
    ) -> int:
        return body(
            app,
            fields,
            full,
            no_legend,
            output,
            names=_names(units),
            states=_states(states),
            watch=watch,
        )

    return command


UNIT_HELP = (
    " UNIT arguments (names or shell patterns such as 'web@*'; a name without a suffix"
    " gets .service) keep only those units."
)
list_unit_files = _filtered_list_command(
    "list-unit-files",
    "List the units that exist in the cluster." + UNIT_HELP,
    "Only units whose desired or current state is this (inactive, loaded, launched); "
    "repeatable or comma-separated.",
)
list_units = _filtered_list_command(
    "list-units",
    "List the current state of units in the cluster." + UNIT_HELP,
    "Only units whose load, active or sub state is this (e.g. failed, active, running), "
    "as systemctl's --state; repeatable or comma-separated.",
)
list_machines = _list_command("list-machines", "Enumerate the current hosts in the cluster.")


@click.command(
    "cluster-status",
    help="Show the cluster's health on one screen: the engine leader, etcd's members and "
    "their health, machines (ok, cordoned, lost), units by state and the units that "
    "cannot be placed.",
)
@click.option(
    "-o",
    "--output",
    type=click.Choice(["table", "json"], case_sensitive=False),
    default="table",
    show_default=True,
    help="Output format: text, or one JSON object.",
)
@pass_app
def cluster_status(app: App, output: str) -> int:
    from fleetctl.clusterstatus import cluster_status as body

    return body(app, output.lower())


COMMANDS = (list_unit_files, list_units, list_machines, cluster_status)
