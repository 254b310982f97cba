"""fleetctl's process entry point (the ``fleetctl`` script and ``python -m fleetctl``).

``fleetctl version`` (and ``--version``/``-v`` alone) is answered here without
importing click or the commands: the process costs little more than the
interpreter's own start-up (docs/benchmarks.md). Everything else goes to
:func:`fleetctl.cli.main`.
"""

from __future__ import annotations

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
    from fleetctl.cli import main as cli_main

    return cli_main(args)
