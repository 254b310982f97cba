"""Child process for the socket-activation test: serve the API on whatever
systemd-socket-activate passed (LISTEN_FDS), never on ``argv[2]``."""

from __future__ import annotations

import asyncio
import sys

from fleet.api.app import create_app
from fleet.api.server import serve
from fleet.registry.etcd import EtcdRegistry


async def main(endpoint: str, prefix: str, forbidden_path: str) -> None:
    registry = await EtcdRegistry.connect([endpoint], prefix, request_timeout=2.0)
    app = create_app(registry, machine_id="child", version="socket-activated")
    try:
        await serve(app, unix_path=forbidden_path)
    finally:
        await registry.close()


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2], sys.argv[3]))
