"""The agent's systemd edge: the D-Bus manager adapter, and an in-memory systemd for tests."""
