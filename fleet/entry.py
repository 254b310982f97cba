"""fleetd's console entry point: one clear line when the daemon extra is missing.

fleetctl installs without the daemon's libraries (FastAPI, uvicorn, dbus-fast,
prometheus_client); ``fleetd`` and ``fleet-cluster up`` need them, and say so
instead of failing with an ImportError traceback.
"""

from __future__ import annotations

import importlib.util
import sys

from fleet.errors import InvalidConfig

DAEMON_MODULES = ("fastapi", "uvicorn", "dbus_fast", "prometheus_client")


def missing_daemon_modules() -> list[str]:
    return [name for name in DAEMON_MODULES if importlib.util.find_spec(name) is None]


def require_daemon_extra(what: str) -> None:
    """InvalidConfig naming the missing modules unless the daemon extra is installed."""
    missing = missing_daemon_modules()
    if missing:
        raise InvalidConfig(
            f"{what} needs fleet's daemon extra (pip install 'fleet[daemon]'); "
            f"missing: {', '.join(missing)}"
        )


def fleetd() -> None:
    try:
        require_daemon_extra("fleetd:")
    except InvalidConfig as exc:
        print(exc, file=sys.stderr)
        raise SystemExit(1) from None
    from fleet.daemon import main

    raise SystemExit(main())
