"""The local cluster (feature B10): etcd plus N real systemd machines booted
with systemd-nspawn on one Linux host. Used by ``fleet-cluster``, the README's
main command, the functional tests and the benchmarks."""
