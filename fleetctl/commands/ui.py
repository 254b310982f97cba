"""``fleetctl ui``: the URL of the web dashboard fleetd serves, reachable from here.

An ``http(s)://`` endpoint without ``--tunnel`` already is reachable: the URL
is printed and that is all. Otherwise (the unix socket, or ``--tunnel``) a
local port is forwarded to the API, to the socket or through the SSH
connection, for as long as the command runs; Ctrl-C ends it (exit 0).
"""

from __future__ import annotations

import contextlib
import shlex
import threading
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

import click

from fleetctl.context import App

if TYPE_CHECKING:
    from fleetctl.forward import Stream

pass_app = click.make_pass_decorator(App)


@click.command("ui", help="Print the web dashboard's URL, forwarding a local port when needed.")
@click.option(
    "--port",
    type=click.IntRange(0, 65535),
    default=0,
    show_default=True,
    help="Local port (0: any).",
)
@click.option(
    "--address", default="127.0.0.1", show_default=True, help="Local address to listen on."
)
@pass_app
def ui(app: App, port: int, address: str) -> int:
    from fleetctl.client import resolve_driver
    from fleetctl.drivers.api import parse_endpoint
    from fleetctl.forward import PortForward

    settings = resolve_driver(app.settings, app.warn)
    if settings.driver != "api":
        raise click.UsageError("the dashboard is served by fleetd: use the API driver")
    base_url, uds = parse_endpoint(settings.endpoint)
    if not settings.tunnel and uds is None:
        app.echo(f"{base_url}/ui/")
        return 0
    scheme = "https" if base_url.startswith("https:") else "http"
    with app.session():
        tunnel = app.tunnel()

        def dial() -> Stream:
            if tunnel is None:
                import socket

                assert uds is not None
                sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                sock.connect(uds)
                return sock
            if uds is not None:
                from fleetctl.ssh import FD_FORWARD_COMMAND

                chan = tunnel.transport.open_session(timeout=settings.ssh_timeout)
                chan.exec_command(f"{FD_FORWARD_COMMAND} {shlex.quote(uds)}")
                return chan  # type: ignore[no-any-return]
            split = urlsplit(base_url)
            target = (split.hostname or "", split.port or (443 if scheme == "https" else 80))
            return tunnel.transport.open_channel(  # type: ignore[no-any-return]
                "direct-tcpip", target, ("127.0.0.1", 0), timeout=settings.ssh_timeout
            )

        forward = PortForward(dial, address, port)
        try:
            shown = f"[{address}]" if ":" in address else address
            app.echo(f"{scheme}://{shown}:{forward.port}/ui/")
            app.warn("Forwarding to the fleet API; press Ctrl-C to stop.")
            with contextlib.suppress(KeyboardInterrupt):
                threading.Event().wait()
        finally:
            forward.close()
    return 0


COMMANDS = (ui,)
