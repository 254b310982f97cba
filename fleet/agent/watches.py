"""The agent's watches: a registry change that concerns this machine wakes the reconciler.

An agent watches only its own schedule, the global units and its own dynamic
metadata (:func:`agent_scopes`). A change only wakes the reconciler, which
re-reads all three, so a change missed while etcd was down cannot leave the
agent with a stale view; a broken or compacted watch lists again.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from fleet.errors import StoreError
from fleet.ports import Clock, Scope, Topic, Watchable

log = logging.getLogger(__name__)


def agent_scopes(machine_id: str) -> tuple[Scope, ...]:
    """What the agent of ``machine_id`` watches."""
    return (
        Scope.schedule_of(machine_id),
        Scope(Topic.GLOBALS),
        Scope.metadata_of(machine_id),
        Scope(Topic.MAINTENANCE, machine_id),  # a drain --include-global stops globals
    )


async def wake_on_changes(
    store: Watchable,
    scope: Scope,
    wake: Callable[[], None],
    clock: Clock,
    *,
    retry_interval: float,
) -> None:
    """Call ``wake`` after listing ``scope`` and on every batch of changes (forever)."""
    while True:
        try:
            _, revision = await store.list_changes(scope)
            wake()
            async for _batch in store.watch(scope, revision + 1):
                wake()
        except StoreError as exc:
            # StoreCompacted included: list again from scratch.
            log.debug("watch of %s interrupted: %s", scope, exc)
        await clock.sleep(retry_interval)
