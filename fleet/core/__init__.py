"""The pure core: unit names, unit files, [X-Fleet] requirements, the machine
model, the scheduler and the reconcilers.

Contract: nothing in this package performs I/O, reads a clock, starts threads
or logs. It imports only the standard library and itself (a test walks the
imports and fails otherwise). Every decision it makes carries a named reason.
"""
