"""The API's paged listings: one etcd snapshot per listing, built once.

The first page of a listing pins the registry's current revision and its page
token carries it (:class:`fleet.api.schema.PageToken`); every later page is cut
from the list as it was at that revision, so a unit created or destroyed
between two pages neither appears nor shifts the pages. The list at a revision
is built once (O(units)) and kept among the few most recently listed
snapshots, so a later page costs one revision check and a slice, and a listing
costs O(units) over all its pages instead of O(units) per page. A page served
by another fleetd, or after its snapshot was dropped, builds the list again
at the same revision: the same answer, only slower. A revision etcd has
compacted away ends the listing with :class:`~fleet.errors.ListingExpired`
(HTTP 410): the client lists again from the first page.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Awaitable, Callable, Hashable, Sequence
from typing import Any, TypeVar, cast

from fleet.api.schema import PageToken, paginate
from fleet.errors import ListingExpired, StoreCompacted
from fleet.ports import ClusterView

_T = TypeVar("_T")

# Snapshots kept: several clients can page at once, each through its own revision.
SNAPSHOTS = 8


class Listings:
    """Recent snapshots of the API's lists, by (what was listed, revision)."""

    def __init__(self, view: ClusterView, capacity: int = SNAPSHOTS) -> None:
        self._view = view
        self._capacity = capacity
        self._snapshots: OrderedDict[tuple[Hashable, int], Sequence[Any]] = OrderedDict()
        self.builds = 0  # lists built so far (the rest of the pages were slices)

    async def page(
        self,
        what: Hashable,
        token: PageToken,
        build: Callable[[int], Awaitable[Sequence[_T]]],
    ) -> tuple[list[_T], str]:
        """The page ``token`` asks for of the list ``build(revision)`` makes, and
        the next page's token. ``what`` names the list (its filters included)."""
        try:
            revision = await self._view.pin_revision(token.revision)
        except StoreCompacted as exc:
            raise ListingExpired(
                f"listing expired: etcd no longer holds revision {token.revision};"
                " list again from the first page"
            ) from exc
        key = (what, revision)
        items = self._snapshots.get(key)
        if items is None:
            items = await build(revision)
            self.builds += 1
            self._snapshots[key] = items
            while len(self._snapshots) > self._capacity:
                self._snapshots.popitem(last=False)
        else:
            self._snapshots.move_to_end(key)
        return paginate(cast(Sequence[_T], items), token.at(revision))
