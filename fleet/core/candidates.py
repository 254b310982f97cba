"""Where to look for a machine: the placement indexes, yielding candidates least loaded first.

Placement runs the checkers only on the machines these indexes yield, so a pass
over 10,000 units and 1,000 machines stays well under a second. Load order is a
heap of ``(load, machine id, version)`` with lazy invalidation: a load change
bumps the machine's version and pushes one new entry, and stale entries are
dropped when popped. ``MachineMetadata`` gets a heap of its own over just the
machines that satisfy a constraint set, built on first use from a ``key=value``
index; ``MachineID`` looks up full and short ids. (``MachineOf`` candidates are
where the followed units run: :meth:`fleet.core.occupancy.Occupancy.machines_running`.)
``SpreadBy`` tries the values of its key from the least-held one, each through the
metadata heap of that ``key=value``.
"""

from __future__ import annotations

import heapq
from collections.abc import Callable, Iterable, Mapping, Sequence

from fleet.core.matching import metadata_matches
from fleet.core.model import Machine
from fleet.core.requirements import MetadataConstraint, MetadataOp

__all__ = ["Candidates"]

_HeapEntry = tuple[int, str, int]  # (load, machine id, version): valid while version is current
_MetaSignature = tuple[MetadataConstraint, ...]  # canonical: deduplicated and sorted


class Candidates:
    """The placement indexes over ``machines`` (a sorted mapping), starting from ``load``
    (units per machine). ``accept`` arguments are feasibility tests: a search returns
    the first machine, in (load, machine id) order, that ``accept`` takes."""

    def __init__(self, machines: Mapping[str, Machine], load: Mapping[str, int]) -> None:
        self.machines = machines
        self.load: dict[str, int] = {m: load[m] for m in machines}
        self.version: dict[str, int] = dict.fromkeys(machines, 0)
        self._heaps_of: dict[str, list[list[_HeapEntry]]] = {m: [] for m in machines}
        self._short_ids: dict[str, list[str]] = {}
        for mid in machines:
            if len(mid) >= 8:
                self._short_ids.setdefault(mid[:8], []).append(mid)
        self._heap: list[_HeapEntry] = [(self.load[m], m, 0) for m in machines]
        heapq.heapify(self._heap)
        self._meta_heaps: dict[_MetaSignature, list[_HeapEntry]] = {}
        self._meta_index: dict[tuple[str, str], list[str]] | None = None
        self._values: dict[str, list[str]] = {}  # metadata key -> its values, sorted
        self._meta_class: dict[str, frozenset[tuple[str, str]]] = {}
        self._meta_memo: dict[tuple[_MetaSignature, frozenset[tuple[str, str]]], bool] = {}

    def set_load(self, mid: str, delta: int) -> None:
        load = self.load[mid] + delta
        version = self.version[mid] + 1
        self.load[mid] = load
        self.version[mid] = version
        entry = (load, mid, version)
        heapq.heappush(self._heap, entry)
        for heap in self._heaps_of[mid]:
            heapq.heappush(heap, entry)

    def with_machine_id(self, wanted: str) -> list[str]:
        """The machines a ``MachineID`` value can name: the full id, and for an
        8-character value every machine with that short id."""
        ids = [wanted] if wanted in self.machines else []
        if len(wanted) == 8:
            ids += [m for m in self._short_ids.get(wanted, ()) if m != wanted]
        return ids

    def first_fit(self, mids: Iterable[str], accept: Callable[[str], bool]) -> str | None:
        """The first of ``mids``, in load order, that ``accept`` takes."""
        for mid in sorted(mids, key=lambda m: (self.load[m], m)):
            if accept(mid):
                return mid
        return None

    def least_loaded(
        self, accept: Callable[[str], bool], metadata: Sequence[MetadataConstraint] = ()
    ) -> str | None:
        """The least-loaded machine ``accept`` takes, among those satisfying ``metadata``."""
        heap = self._heap if not metadata else self._metadata_heap(_signature(metadata))
        # Walk the heap in (load, machine id) order, dropping stale entries and
        # restoring the valid ones looked at.
        version = self.version
        looked: list[_HeapEntry] = []
        found = None
        while heap:
            entry = heapq.heappop(heap)
            if entry[2] != version[entry[1]]:
                continue
            looked.append(entry)
            if accept(entry[1]):
                found = entry[1]
                break
        for entry in looked:
            heapq.heappush(heap, entry)
        return found

    def spread(
        self,
        accept: Callable[[str], bool],
        metadata: Sequence[MetadataConstraint],
        key: str,
        held: Mapping[str, int],
    ) -> str | None:
        """The least-loaded machine ``accept`` takes among those satisfying ``metadata``,
        looked for under one value of ``key`` after another: fewest ``held`` first (a
        value missing from ``held`` holds none), ties in value order."""
        own = tuple(c for c in metadata if c.key == key)
        others = tuple(c for c in metadata if c.key != key)
        values = self._values.get(key)
        if values is None:
            values = self._values[key] = sorted({v for k, v in self._index() if k == key})
        for value in sorted(values, key=lambda v: (held.get(v, 0), v)):
            # The unit's own terms on ``key`` only ever look at this value.
            if own and not metadata_matches(own, {key: value}):
                continue
            found = self.least_loaded(
                accept, (*others, MetadataConstraint(key, MetadataOp.EQ, value))
            )
            if found is not None:
                return found
        return None

    def _metadata_heap(self, signature: _MetaSignature) -> list[_HeapEntry]:
        """A load heap over the machines whose metadata satisfies ``signature``, built on
        first use (from the ``key=value`` index when the signature has ``=`` terms) and
        kept current by :meth:`set_load`. Without it, a walk of the global heap would
        step over every ineligible machine that happens to be less loaded."""
        heap = self._meta_heaps.get(signature)
        if heap is not None:
            return heap
        candidates: Iterable[str] = self.machines
        equal: dict[str, set[str]] = {}
        for c in signature:
            if c.op is MetadataOp.EQ:
                equal.setdefault(c.key, set()).add(c.value)
        if equal:
            index = self._index()
            found: set[str] | None = None
            for key, values in equal.items():
                group = {m for v in values for m in index.get((key, v), ())}
                found = group if found is None else found & group
            candidates = sorted(found or ())
        eligible = [m for m in candidates if self._metadata_ok(signature, m)]
        heap = [(self.load[m], m, self.version[m]) for m in eligible]
        heapq.heapify(heap)
        for m in eligible:
            self._heaps_of[m].append(heap)
        self._meta_heaps[signature] = heap
        return heap

    def _index(self) -> dict[tuple[str, str], list[str]]:
        if self._meta_index is None:
            self._meta_index = {}
            for mid, machine in self.machines.items():
                for item in machine.metadata.items():
                    self._meta_index.setdefault(item, []).append(mid)
        return self._meta_index

    def _metadata_ok(self, signature: _MetaSignature, mid: str) -> bool:
        # Memoised per distinct machine metadata: a cluster has few of those.
        metadata = self.machines[mid].metadata
        cls = self._meta_class.get(mid)
        if cls is None:
            cls = self._meta_class[mid] = frozenset(metadata.items())
        ok = self._meta_memo.get((signature, cls))
        if ok is None:
            ok = self._meta_memo[(signature, cls)] = metadata_matches(signature, metadata)
        return ok


def _signature(constraints: Sequence[MetadataConstraint]) -> _MetaSignature:
    return tuple(sorted(set(constraints), key=lambda c: (c.key, c.op, c.value)))
