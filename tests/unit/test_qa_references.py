"""Every print of a popular design is judged against a print file prepared once per QA worker."""

from __future__ import annotations

from core.qa import prepare_reference
from core.services.qa import inspect_job, print_file_pixels
from tests.unit.test_qa_prepared import assert_same_preparation
from tests.unit.test_qa_stage import NO_SPOT_CHECKS, camera, printed_order
from workers.qa import Lru


class CountingStore:
    """The test's object store, counting reads of print files."""

    def __init__(self, store) -> None:
        self.store, self.print_file_reads = store, 0

    def get(self, key: str) -> bytes:
        self.print_file_reads += key.endswith("/print.png")
        return self.store.get(key)

    def __getattr__(self, name: str):
        return getattr(self.store, name)


def test_the_second_print_of_a_design_passes_without_reading_its_print_file_again(api):
    svc = api.services
    # given two printed orders of the same design and an empty cache of prepared print files
    orders = [printed_order(api) for _ in range(2)]
    store, references = CountingStore(svc.store), Lru(4)
    # when both prints are inspected
    outcomes = [inspect_job(job_id, uow=svc.uow(), store=store, fetch_photo=camera(api, job_id, None),
                            new_id=svc.ids.new, now=svc.now, rules=NO_SPOT_CHECKS, references=references)
                for _order_id, job_id in orders]
    # then both pass, and the print file was read and prepared once
    assert outcomes == ["passed", "passed"]
    assert store.print_file_reads == 1 and len(references) == 1


def test_a_new_designs_first_print_is_inspected_without_decoding_its_print_file(api):
    svc = api.services
    # given an order of a new design, rendered as the render worker does: its print file prepared for QA
    references = Lru(4)
    _order_id, job_id = printed_order(api, references=references)
    store = CountingStore(svc.store)
    # when its print is inspected
    outcome = inspect_job(job_id, uow=svc.uow(), store=store, fetch_photo=camera(api, job_id, None),
                          new_id=svc.ids.new, now=svc.now, rules=NO_SPOT_CHECKS, references=references)
    # then it passes without reading the print file, against exactly what QA would have made from that file
    assert outcome == "passed" and store.print_file_reads == 0
    [(name, prepared)] = [(name, references.get(name)) for name in references]
    with svc.uow() as uow:
        asset = uow.assets.for_line(uow.jobs.get(job_id).line_id)
    from_file = prepare_reference(print_file_pixels(svc.store.get(asset["print_file_key"])),
                                  substrate=prepared.substrate)
    assert name.startswith(f"{asset['sha256']}:")
    assert_same_preparation(prepared, from_file)


def test_the_cache_of_prepared_print_files_forgets_the_least_recently_used():
    cache = Lru(2)
    cache["a"], cache["b"] = 1, 2
    assert cache["a"] == 1  # "a" is now the most recent
    cache["c"] = 3
    assert sorted(cache) == ["a", "c"] and cache.get("b") is None


def test_the_cache_holds_prepared_print_files_up_to_a_size_in_bytes_not_a_count():
    cache = Lru(100, weigh=len)
    cache["a"], cache["b"] = b"x" * 40, b"y" * 40
    cache["c"] = b"z" * 40  # 120 bytes: the least recently used goes
    assert sorted(cache) == ["b", "c"]
    cache["b"] = b"y"  # replacing an entry counts its new size only
    cache["d"] = b"w" * 50
    assert sorted(cache) == ["b", "c", "d"]
    cache["huge"] = b"h" * 500  # the newest stays even alone over the limit
    assert sorted(cache) == ["huge"]
    del cache["huge"]
    cache["e"] = b"e" * 90
    assert sorted(cache) == ["e"]


def test_prints_of_a_new_design_reaching_qa_together_prepare_its_print_file_once():
    import threading
    import time

    cache, made = Lru(4), []
    start = threading.Barrier(5)

    def make():
        made.append(1)
        time.sleep(0.05)
        return "prepared"

    def inspector():
        start.wait()
        assert cache.get_or_make("design", make) == "prepared"

    threads = [threading.Thread(target=inspector) for _ in range(5)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)
    assert made == [1] and cache["design"] == "prepared"
