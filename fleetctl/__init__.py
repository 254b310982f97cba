"""fleetctl: the command-line client of fleet (click), thin over one client interface.

Commands live in :mod:`fleetctl.commands`, pure output in :mod:`fleetctl.render`
and :mod:`fleetctl.tabwriter`, blocking in :mod:`fleetctl.waiting`; the
:class:`fleetctl.client.FleetClient` protocol hides whether we talk to the fleet
API or to etcd directly.
"""
