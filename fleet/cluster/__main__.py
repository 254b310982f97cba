"""``python -m fleet.cluster``: the same commands as ``fleet-cluster``.

Vagrant provisioning runs ``python -m fleet.cluster provision``.
"""

from __future__ import annotations

import sys

from fleet.cluster.cli import main

sys.exit(main())
