"""``python -m fleetctl``: the same entry point as the ``fleetctl`` script."""

import sys

from fleetctl.entry import main

sys.exit(main())
