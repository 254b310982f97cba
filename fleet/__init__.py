"""fleet: a cluster-wide systemd unit scheduler built on etcd v3.

The package holds the daemon (``fleetd``: agent, engine, API) and the shared
domain model in :mod:`fleet.core`. ``fleetctl`` lives in its own package.
"""

__version__ = "0.1.0"

__all__ = ["__version__"]
