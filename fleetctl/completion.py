"""Shell completion (feature B18): what to offer for a partial command line.

``fleetctl completion bash|zsh|fish`` prints a small script for the shell; on
every Tab it runs ``fleetctl __complete WORD...`` (the words after
``fleetctl``, the last one the word being completed, maybe empty), which
prints one candidate per line: commands, the flags of fleetctl or of the
command, flag values that are a fixed choice, unit names and machine ids from
the cluster, local unit files for the commands that read them. The cluster is
asked with a short timeout (:data:`QUERY_TIMEOUT`) through the global flags
already typed (``--endpoint``, ``--driver``, ...) and the ``FLEETCTL_*``
environment; any failure offers nothing from it, silently.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import replace
from typing import TYPE_CHECKING

import click

from fleet.core.names import KNOWN_SUFFIXES

if TYPE_CHECKING:
    from fleetctl.client import FleetClient

SHELLS = ("bash", "zsh", "fish")
# Seconds a cluster look-up may take (each request, and the SSH set-up of --tunnel).
QUERY_TIMEOUT = 1.0
# Commands whose UNIT arguments may be local unit files.
FILE_COMMANDS = frozenset({"submit", "load", "start", "plan"})
# Commands whose first argument is a machine id (the rest: unit names).
MACHINE_FIRST = frozenset({"drain", "set-metadata", "unset-metadata", "fd-forward"})
MACHINE_ALL = frozenset({"cordon", "uncordon"})
# Flags (any command) whose value is a machine id or a unit name.
MACHINE_FLAGS = frozenset({"-m", "--machine"})
UNIT_FLAGS = frozenset({"-u", "--unit"})

Query = Callable[[str], list[str]]


def _options(command: click.Command) -> list[click.Option]:
    return [p for p in command.params if isinstance(p, click.Option) and not p.hidden]


def _flag_names(command: click.Command) -> list[str]:
    names = [o for option in _options(command) for o in (*option.opts, *option.secondary_opts)]
    return [*sorted({n for n in names if n.startswith("--")}), "--help"]


def _takes_value(command: click.Command, flag: str) -> click.Option | None:
    for param in command.params:
        if isinstance(param, click.Option) and not param.is_flag and flag in param.opts:
            return param
    return None


def _choices(option: click.Option) -> list[str]:
    return list(option.type.choices) if isinstance(option.type, click.Choice) else []


def _split_globals(group: click.Group, words: Sequence[str]) -> tuple[list[str], int]:
    """The global flag words before the command, and the command's index."""
    index = 0
    while index < len(words) - 1:
        word = words[index]
        if not word.startswith("-"):
            break
        index += 2 if "=" not in word and _takes_value(group, word) else 1
    return list(words[: min(index, len(words) - 1)]), index


def local_unit_files(prefix: str) -> list[str]:
    """Unit files (and directories, which may hold some) whose path starts with ``prefix``."""
    directory, _, start = prefix.rpartition("/")
    where = directory or "."
    try:
        entries = sorted(os.listdir(where))
    except OSError:
        return []
    found = []
    for entry in entries:
        if not entry.startswith(start) or (entry.startswith(".") and not start.startswith(".")):
            continue
        path = f"{directory}/{entry}" if directory else entry
        if os.path.isdir(os.path.join(where, entry)):
            found.append(path + "/")
        elif entry.rpartition(".")[2] in KNOWN_SUFFIXES:
            found.append(path)
    return found


def complete(words: Sequence[str], query: Query) -> list[str]:
    """Candidates for the last of ``words`` (the command line after ``fleetctl``);
    ``query("units"|"machines")`` asks the cluster."""
    from fleetctl.cli import cli

    words = list(words) or [""]
    current = words[-1]
    _, index = _split_globals(cli, words)
    if index >= len(words) - 1:
        # Completing a global flag, its value, or the command name.
        return _filter(_for_command_position(cli, words, current), current)
    name = words[index]
    command = cli.commands.get(name)
    if command is None:
        matches = [n for n in cli.commands if n.startswith(name)]
        command = cli.commands[matches[0]] if len(matches) == 1 else None
    if command is None:
        return []
    return _filter(_for_command(command, words[index + 1 :], query), current)


def _filter(candidates: Sequence[str], current: str) -> list[str]:
    seen: dict[str, None] = {}
    for candidate in candidates:
        if candidate.startswith(current):
            seen.setdefault(candidate, None)
    return list(seen)


def _for_command_position(group: click.Group, words: Sequence[str], current: str) -> list[str]:
    flag, eq, _ = current.partition("=")
    if eq:
        option = _takes_value(group, flag)
        return [f"{flag}={c}" for c in _choices(option)] if option else []
    previous = words[-2] if len(words) > 1 else ""
    option = _takes_value(group, previous) if previous.startswith("-") else None
    if option is not None:
        return _choices(option)
    if current.startswith("-"):
        return _flag_names(group)
    ctx = click.Context(group)
    return sorted(name for name in group.list_commands(ctx) if not group.commands[name].hidden)


def _for_command(command: click.Command, args: Sequence[str], query: Query) -> list[str]:
    from fleetctl.cli import cli

    current = args[-1]
    name = command.name or ""
    flag, eq, _ = current.partition("=")
    previous = args[-2] if len(args) > 1 else ""
    if eq and flag.startswith("-"):
        option = _takes_value(command, flag)
        return [f"{flag}={v}" for v in _option_values(option, flag, query)] if option else []
    if previous.startswith("-") and "=" not in previous:
        option = _takes_value(command, previous)
        if option is not None:
            return _option_values(option, previous, query)
    if current.startswith("-"):
        return _flag_names(command)
    positional = _positional_count(command, args[:-1])
    if name == "help":
        ctx = click.Context(cli)
        return [n for n in cli.list_commands(ctx) if not cli.commands[n].hidden]
    if name in MACHINE_ALL or (name in MACHINE_FIRST and positional == 0):
        return query("machines")
    if name in MACHINE_FIRST:
        return []  # metadata pairs or keys: nothing to offer
    if name == "ssh":
        return [*query("machines"), *query("units")] if positional == 0 else []
    if not any(isinstance(p, click.Argument) for p in command.params):
        return []
    offered = query("units")
    if name in FILE_COMMANDS:
        offered = [*local_unit_files(current), *offered]
    return offered


def _option_values(option: click.Option, flag: str, query: Query) -> list[str]:
    if flag in MACHINE_FLAGS:
        return query("machines")
    if flag in UNIT_FLAGS:
        return query("units")
    return _choices(option)


def _positional_count(command: click.Command, args: Sequence[str]) -> int:
    """How many positional arguments precede the word being completed."""
    count = 0
    skip = False
    for arg in args:
        if skip:
            skip = False
        elif arg.startswith("-") and arg != "-":
            skip = "=" not in arg and _takes_value(command, arg) is not None
        else:
            count += 1
    return count


def cluster_query(global_words: Sequence[str]) -> Query:
    """Look-ups through the global flags typed so far; quick, and silent on failure."""
    cache: dict[str, list[str]] = {}

    def query(what: str) -> list[str]:
        if what not in cache:
            try:
                cache[what] = _ask(global_words, what)
            except Exception:  # completion never fails, it offers less
                cache[what] = []
        return cache[what]

    return query


def _ask(global_words: Sequence[str], what: str) -> list[str]:
    from fleetctl import cli as cli_module
    from fleetctl.context import App

    ctx = cli_module.cli.make_context(
        "fleetctl", [*global_words, "version"], resilient_parsing=True
    )
    settings = cli_module.settings_of(ctx, ctx.params)
    settings = replace(settings, request_timeout=QUERY_TIMEOUT, ssh_timeout=QUERY_TIMEOUT)
    with open(os.devnull, "w") as devnull:
        app = App(settings=settings, out=devnull, err=devnull)

        async def body(client: FleetClient) -> list[str]:
            if what == "machines":
                return [machine.id for machine in await client.list_machines()]
            return [info.name for info in await client.list_units()]

        return app.run(body)


def complete_words(words: Sequence[str]) -> list[str]:
    """:func:`complete` with the cluster behind the global flags of ``words``."""
    from fleetctl.cli import cli

    global_words, _ = _split_globals(cli, list(words) or [""])
    return complete(words, cluster_query(global_words))


# --- the scripts ----------------------------------------------------------------------

BASH = r"""# fleetctl completion for bash: source it, or put it in
# /etc/bash_completion.d/fleetctl (generated by `fleetctl completion bash`).
_fleetctl() {
    local line=${COMP_LINE:0:COMP_POINT}
    local -a words
    read -r -a words <<< "$line"
    if [[ -z $line || $line == *[[:space:]] ]]; then
        words+=("")
    fi
    local current=${words[${#words[@]}-1]}
    local IFS=$'\n'
    local -a found
    found=($(command "${words[0]}" __complete "${words[@]:1}" 2>/dev/null))
    # bash splits words at '=' and ':' (COMP_WORDBREAKS): offer only what follows.
    local typed=${COMP_WORDS[COMP_CWORD]}
    local before=${current%"$typed"}
    if [[ $typed == "=" || $typed == ":" ]]; then
        before=$current
    fi
    COMPREPLY=()
    local candidate
    for candidate in "${found[@]}"; do
        COMPREPLY+=("${candidate#"$before"}")
    done
    if [[ ${#COMPREPLY[@]} -eq 1 && ${COMPREPLY[0]} == */ ]]; then
        compopt -o nospace 2>/dev/null
    fi
    return 0
}
complete -F _fleetctl fleetctl
"""

ZSH = r"""#compdef fleetctl
# fleetctl completion for zsh: put it on $fpath as _fleetctl, or source it
# (generated by `fleetctl completion zsh`).
_fleetctl() {
    local -a found
    found=("${(@f)$(${words[1]} __complete "${(@)words[2,CURRENT]}" 2>/dev/null)}")
    found=(${found:#})
    (( ${#found} )) && compadd -Q -- "${found[@]}"
}
if [[ $zsh_eval_context[-1] == loadautofunc ]]; then
    _fleetctl "$@"
else
    compdef _fleetctl fleetctl
fi
"""

FISH = r"""# fleetctl completion for fish: save as ~/.config/fish/completions/fleetctl.fish
# (generated by `fleetctl completion fish`).
function __fleetctl_complete
    set -l words (commandline -opc)
    fleetctl __complete $words[2..-1] (commandline -ct) 2>/dev/null
end
complete -c fleetctl -f -a '(__fleetctl_complete)'
"""

SCRIPTS = {"bash": BASH, "zsh": ZSH, "fish": FISH}
