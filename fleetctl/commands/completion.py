"""``fleetctl completion bash|zsh|fish`` and the hidden ``__complete`` the scripts call
(logic in :mod:`fleetctl.completion`)."""

from __future__ import annotations

import click

from fleetctl.context import App

pass_app = click.make_pass_decorator(App)


@click.command(
    "completion",
    help="Print a shell completion script: commands, flags, unit names, machine ids and "
    "local unit files.\n\nbash: source <(fleetctl completion bash); zsh: fleetctl completion "
    "zsh > ~/.zfunc/_fleetctl (a directory on $fpath); fish: fleetctl completion fish > "
    "~/.config/fish/completions/fleetctl.fish",
)
@click.argument("shell", type=click.Choice(["bash", "zsh", "fish"]))
@pass_app
def completion(app: App, shell: str) -> int:
    from fleetctl.completion import SCRIPTS

    app.write(SCRIPTS[shell])
    return 0


@click.command(
    "__complete",
    hidden=True,
    context_settings={"ignore_unknown_options": True, "allow_interspersed_args": False},
    add_help_option=False,
)
@click.argument("words", nargs=-1, type=click.UNPROCESSED)
@pass_app
def complete(app: App, words: tuple[str, ...]) -> int:
    from fleetctl.completion import complete_words

    for candidate in complete_words(words):
        app.echo(candidate)
    return 0


COMMANDS = (completion, complete)
