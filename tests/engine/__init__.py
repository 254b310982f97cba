"""Engine tests against a real etcd.

Machines here are SIMULATED: each is only a presence record (``machine/<id>``)
on its own etcd lease, registered through the registry like an agent would;
no systemd is involved. Engines run with short timings (reconcile 0.2 s,
leadership lease TTL 1 s) and tests poll with deadlines.
"""
