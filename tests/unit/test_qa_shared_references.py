"""A design's print file prepared by one QA worker process is read, not prepared again, by every other one."""

from __future__ import annotations

import dataclasses
import io
import json

import numpy as np
import pytest

from adapters.prepared import StoredPreparations, Unreadable, Unserialisable, decode, encode
from core.qa import PreparedReference
from core.services.qa import inspect_job
from tests.unit.test_qa_references import CountingStore
from tests.unit.test_qa_stage import NO_SPOT_CHECKS, camera, printed_order
from workers.qa import Lru, shared_references


def _inspect(api, job_id: str, store, references) -> str:
    svc = api.services
    return inspect_job(job_id, uow=svc.uow(), store=store, fetch_photo=camera(api, job_id, None),
                       new_id=svc.ids.new, now=svc.now, rules=NO_SPOT_CHECKS, references=references)


def test_a_worker_started_after_another_was_killed_reads_the_prepared_print_file_instead_of_preparing_it(api):
    # given two printed orders of one design, and a worker process that inspects the first, then dies
    (_, first), (_, second) = printed_order(api), printed_order(api)
    store = CountingStore(api.services.store)
    assert _inspect(api, first, store, shared_references(store, Lru(4))) == "passed"
    assert store.print_file_reads == 1
    # when a fresh process (its own cache empty) inspects the second print
    fresh = Lru(4)
    outcome = _inspect(api, second, store, shared_references(store, fresh))
    # then it passes against the prepared file from the store: the print file was not read (nor prepared) again
    assert outcome == "passed"
    assert store.print_file_reads == 1 and len(fresh) == 1


def test_a_design_rendered_in_one_process_is_inspected_in_another_without_reading_its_print_file(api):
    # given a new design rendered by a worker process that keeps its prepared print file for the others
    store = CountingStore(api.services.store)
    reads = []
    store.get = lambda key, get=store.get: reads.append(key) or get(key)
    _order_id, job_id = printed_order(api, references=shared_references(store, Lru(4)))
    assert reads == []  # render only stores it: it has nothing to look up
    # when a QA worker in another process (its own cache empty) inspects the print
    outcome = _inspect(api, job_id, store, shared_references(store, Lru(4)))
    # then it passes against what render stored, and the print file itself was never read
    assert outcome == "passed" and store.print_file_reads == 0
    assert [key for key in reads if key.endswith(".npz")] and not [key for key in reads if key.endswith(".png")]


def test_an_unreadable_stored_print_file_is_prepared_again_and_replaced(api):
    # given a design prepared and stored by one worker process, whose stored entry is then garbage (a torn write)
    (_, first), (_, second), (_, third) = printed_order(api), printed_order(api), printed_order(api)
    store = CountingStore(api.services.store)
    references, names = shared_references(store, Lru(4)), []
    stored_load_or_make = references.stored.load_or_make
    references.stored.load_or_make = lambda name, make: names.append(name) or stored_load_or_make(name, make)
    assert _inspect(api, first, store, references) == "passed" and store.print_file_reads == 1
    store.put(references.stored.key(names[0]), b"PK\x03\x04 torn", content_type="application/octet-stream")
    # when a fresh process inspects the next print of it
    outcome = _inspect(api, second, store, shared_references(store, Lru(4)))
    # then it passes on a print file prepared again, which replaces the garbage for the process after it
    assert outcome == "passed" and store.print_file_reads == 2
    assert _inspect(api, third, store, shared_references(store, Lru(4))) == "passed"
    assert store.print_file_reads == 2


@dataclasses.dataclass(frozen=True, slots=True)
class Inner:
    image: np.ndarray
    fx: float


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class Prepared:
    inner: Inner
    side: int
    substrate: tuple[int, int, int]
    extra: tuple[np.ndarray, ...] = ()
    gain: np.float32 = np.float32(1.5)
    note: str | None = None


def test_fields_added_to_a_prepared_value_are_stored_and_read_back_without_changes_to_the_encoding():
    value = Prepared(inner=Inner(np.arange(24, dtype=np.uint8).reshape(2, 4, 3), 2.5), side=1000,
                     substrate=(250, 250, 250), extra=(np.ones((3, 3), np.float32),), gain=np.float32(0.25))
    back = decode(Prepared, encode(value))
    assert back.substrate == (250, 250, 250) and back.side == 1000 and back.inner.fx == 2.5
    assert back.gain == np.float32(0.25) and back.gain.dtype == np.float32 and back.note is None
    np.testing.assert_array_equal(back.inner.image, value.inner.image)
    assert back.inner.image.dtype == np.uint8 and back.extra[0].dtype == np.float32


def test_an_entry_written_before_a_field_was_added_is_a_miss_not_a_crash():
    value = Prepared(inner=Inner(np.zeros((2, 2, 3), np.uint8), 1.0), side=10, substrate=(0, 0, 0))
    stored = np.load(io.BytesIO(encode(value)), allow_pickle=False)
    manifest = json.loads(str(stored["__manifest__"][()]))
    del manifest["root"]["fields"]["note"]  # as the class was before `note` was added
    out = io.BytesIO()
    np.savez(out, __manifest__=np.array(json.dumps(manifest)), a0=stored["a0"])
    with pytest.raises(Unreadable, match="fields"):
        decode(Prepared, out.getvalue())
    with pytest.raises(Unreadable):
        decode(PreparedReference, encode(value))  # another class under the key


class FailingStore:
    def get(self, key: str, **_) -> bytes:
        raise ConnectionError("object store down")

    def put(self, key: str, data: bytes, **_) -> str:
        raise ConnectionError("object store down")


def test_a_store_that_does_not_answer_or_a_value_it_cannot_hold_costs_the_cache_not_the_inspection():
    made = []
    stored = StoredPreparations(FailingStore(), Prepared)
    value = Prepared(inner=Inner(np.zeros((2, 2, 3), np.uint8), 1.0), side=10, substrate=(0, 0, 0))
    assert stored.load_or_make("design", lambda: made.append(1) or value) is value and made == [1]
    with pytest.raises(Unserialisable):
        encode(dataclasses.replace(value, extra=(np.array([object()]),)))
