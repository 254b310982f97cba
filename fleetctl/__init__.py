"""fleetctl: the command-line client of fleet (click), thin over one client interface.

Commands live in :mod:`fleetctl.commands`, pure output in :mod:`fleetctl.render`
and :mod:`fleetctl.tabwriter`, blocking in :mod:`fleetctl.waiting`; the
:class:`fleetctl.client.FleetClient` protocol hides whether we talk to the fleet
API or to etcd directly.
"""

import sys

# ``import httpx`` also imports its command-line client (httpx._main: rich,
# pygments, click) whenever those are installed, as they are here: about 60 ms
# of every fleetctl run that talks to the API. A None entry makes that import
# fail, which httpx handles by installing a stub ``httpx.main``; fleetctl never
# calls it. setdefault: a process that imported httpx's CLI first keeps it.
sys.modules.setdefault("httpx._main", None)  # type: ignore[arg-type]
