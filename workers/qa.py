"""Actors on the `qa` queue."""

from __future__ import annotations

import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterator, MutableMapping
from typing import TYPE_CHECKING, Generic, TypeVar

import dramatiq

from core.commands import InspectJob, actor_name
from core.ports import ObjectStore
from workers.bootstrap import container

if TYPE_CHECKING:  # numpy and OpenCV load with the first inspection, not at a worker's boot
    from adapters.prepared import StoredPreparations
    from core.qa import PreparedReference

log = logging.getLogger(__name__)
K = TypeVar("K")
V = TypeVar("V")


class Lru(MutableMapping[K, V], Generic[K, V]):
    """A small thread-safe mapping that forgets the least recently used entries once their weight is over `size`
    (by default each weighs 1, so `size` is a count); the newest entry is kept whatever it weighs."""

    def __init__(self, size: int, weigh: Callable[[V], int] = lambda _value: 1) -> None:
        self.size, self.weigh = size, weigh
        self._items: OrderedDict[K, V] = OrderedDict()
        self._weight = 0
        self._lock = threading.Lock()
        self._making: dict[K, threading.Lock] = {}

    def __getitem__(self, key: K) -> V:
        with self._lock:
            self._items.move_to_end(key)
            return self._items[key]

    def __setitem__(self, key: K, value: V) -> None:
        with self._lock:
            if key in self._items:
                self._weight -= self.weigh(self._items[key])
            self._items[key] = value
            self._items.move_to_end(key)
            self._weight += self.weigh(value)
            while self._weight > self.size and len(self._items) > 1:
                self._weight -= self.weigh(self._items.popitem(last=False)[1])

    def __delitem__(self, key: K) -> None:
        with self._lock:
            self._weight -= self.weigh(self._items.pop(key))

    def __iter__(self) -> Iterator[K]:
        with self._lock:
            return iter(list(self._items))

    def __len__(self) -> int:
        return len(self._items)

    def get_or_make(self, key: K, make: Callable[[], V]) -> V:
        """The value under `key`, else `make()` once: threads asking for the same key meanwhile wait for it
        (ten prints of a new design reaching QA together prepared its print file ten times)."""
        with self._lock:
            if key in self._items:
                self._items.move_to_end(key)
                return self._items[key]
            making = self._making.setdefault(key, threading.Lock())
        try:
            with making:
                found = self.get(key)
                if found is None:
                    found = make()
                    self[key] = found
        finally:
            with self._lock:
                self._making.pop(key, None)
        return found

    def keep(self, key: K, value: V) -> None:
        self[key] = value


REFERENCES: Lru[str, PreparedReference] = Lru(256 * 2**20, weigh=lambda reference: reference.nbytes)
"""Prepared print files of this process, at most 256 MB of them (≈ 24 MB each at the working scale: about ten
designs): popular designs stay in it."""


class SharedReferences:
    """This process's prepared print files in front of the object store's, which outlive the process.

    A design's print file is prepared once for all QA workers: a worker started seconds ago (after a crash, a
    deploy, or a SIGKILL every 2 s in the soak) reads the prepared file instead of decoding and reducing the
    4500x5400 original again, which took longer than such a worker lived.
    """

    def __init__(self, local: Lru[str, PreparedReference], stored: StoredPreparations[PreparedReference]) -> None:
        self.local, self.stored = local, stored

    def get_or_make(self, key: str, make: Callable[[], PreparedReference]) -> PreparedReference:
        return self.local.get_or_make(key, lambda: self.stored.load_or_make(key, make))

    def keep(self, key: str, value: PreparedReference) -> None:
        """Keep it here and store it for every other process, without first reading what the store holds."""
        self.local.keep(key, value)
        self.stored.save(key, value)


def shared_references(store: ObjectStore, local: Lru[str, PreparedReference] = REFERENCES) -> SharedReferences:
    """Prepared print files in `core.erasable.qa_references_of(<print file sha256>)`: erased with the asset."""
    from adapters.prepared import StoredPreparations
    from core.erasable import qa_reference_sha256, qa_references_of
    from core.qa import PreparedReference

    return SharedReferences(local, StoredPreparations(
        store, PreparedReference, folder=lambda name: qa_references_of(qa_reference_sha256(name))))


@dramatiq.actor(actor_name=actor_name(InspectJob), queue_name=InspectJob.QUEUE, max_retries=10,
                time_limit=5 * 60_000)
def inspect(job_id: str) -> None:
    from core.services.qa import inspect_job

    c = container()
    started = time.perf_counter()
    outcome = inspect_job(job_id, uow=c.uow(), store=c.store,
                          fetch_photo=lambda partner_id, url: c.partners.photo(c.partner_endpoint(partner_id), url),
                          new_id=c.ids.new, now=c.now, rules=c.qa_rules(), references=shared_references(c.store))
    log.info("inspected job %s: %s in %.2f s", job_id, outcome, time.perf_counter() - started)
