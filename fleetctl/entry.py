"""fleetctl's process entry point (the ``fleetctl`` script and ``python -m fleetctl``).

The commands run most skip the click CLI: ``fleetctl version`` (and
``--version``/``-v`` alone) is answered here, ``fleetctl fd-forward SOCKET`` (run
on the bastion for every ``--tunnel`` connection) splices at once, and a plain
``list-units``, ``list-machines`` or ``list-unit-files`` runs through
:mod:`fleetctl.fastpath`, so those processes cost little more than the
interpreter's own start-up and the request (docs/benchmarks.md). Everything
else goes to :func:`fleetctl.cli.main`.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence

_VERSION_ARGS = (["version"], ["--version"], ["-v"])


def main(argv: Sequence[str] | None = None) -> int:
    """Run fleetctl; returns the process exit code."""
    args = list(sys.argv[1:] if argv is None else argv)
    if args in _VERSION_ARGS:
        from fleet import __version__

        print(f"fleetctl version {__version__}")
        return 0
    from fleetctl import fastpath

    forward = len(args) == 2 and args[0] == "fd-forward" and not args[1].startswith("-")
    parsed = None if forward else fastpath.parse(args, os.environ)
    if not forward and parsed is None:
        from fleetctl.cli import main as cli_main

        return cli_main(args)
    from fleet.errors import FleetError

    try:
        if parsed is not None:
            return fastpath.run(parsed)
        from fleetctl.fdforward import fd_forward

        fd_forward(args[1])
        return 0
    except FleetError as exc:  # as fleetctl.cli.main reports it: one line
        print(str(exc), file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        return 130
