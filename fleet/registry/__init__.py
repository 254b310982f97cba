"""The registry: all cluster state in etcd v3 (aetcd adapter, key schema in keys.py)."""
