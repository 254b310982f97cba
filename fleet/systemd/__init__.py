"""The agent's systemd edge: the D-Bus manager adapter and the unit-file directory."""
