"""Implementations of :class:`fleetctl.client.FleetClient`: ``api`` (HTTP) and ``etcd``."""
