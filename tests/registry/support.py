"""Raw looks at an EtcdRegistry's keyspace for tests: what is stored, at which revision.

The registry itself only hands out typed changes; these read etcd through its
public connection (``registry.connection.call``) and key schema
(``registry.keys``) so a test can assert that nothing at all was written, or
force a compaction under a watch.
"""

from __future__ import annotations

from aetcd import rpc

from fleet.registry.etcd import EtcdRegistry
from fleet.registry.keys import range_end


async def dump(registry: EtcdRegistry, prefix: str = "") -> dict[str, bytes]:
    """Every key under the registry's prefix (narrowed by the relative ``prefix``):
    relative key -> raw value."""
    start = registry.keys.absolute(prefix)
    response = await registry.connection.call(
        "kv", "Range", rpc.RangeRequest(key=start, range_end=range_end(start))
    )
    return {registry.keys.relative(kv.key): bytes(kv.value) for kv in response.kvs}


async def current_revision(registry: EtcdRegistry) -> int:
    """etcd's current revision (of the whole store, not only this prefix)."""
    response = await registry.connection.call(
        "kv", "Range", rpc.RangeRequest(key=registry.keys.prefix, count_only=True)
    )
    return int(response.header.revision)


async def compact(registry: EtcdRegistry, revision: int) -> None:
    """Drop etcd's history before ``revision`` (a watch from before then is compacted)."""
    await registry.connection.call(
        "kv", "Compact", rpc.CompactionRequest(revision=revision, physical=True)
    )


async def mod_revisions(registry: EtcdRegistry, prefix: str = "") -> dict[str, int]:
    """Like :func:`dump`, but the revision each key was last written at."""
    start = registry.keys.absolute(prefix)
    response = await registry.connection.call(
        "kv", "Range", rpc.RangeRequest(key=start, range_end=range_end(start))
    )
    return {registry.keys.relative(kv.key): int(kv.mod_revision) for kv in response.kvs}
