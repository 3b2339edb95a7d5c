"""The ObjectStore contract: the local folder and S3 (moto over HTTP) must behave the same."""

from __future__ import annotations

import http.server
import multiprocessing
import random
import socket
import threading
import urllib.request
import uuid
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from adapters.objectstore import (
    LocalVersionedStore,
    S3Store,
    StorageUnavailable,
    make_object_store,
    measure_retrieval,
)
from adapters.s3store import PREVIEW_RULE_ID, make_client
from core.ports import ObjectStore

KEY = "orders/o-1/print.png"


@pytest.fixture(params=["folder", "s3"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> ObjectStore:
    if request.param == "folder":
        return LocalVersionedStore(tmp_path / "objects")
    return _fresh_s3_store(request.getfixturevalue("moto_endpoint"))


@pytest.fixture
def s3_store(moto_endpoint: str) -> S3Store:
    return _fresh_s3_store(moto_endpoint)


@pytest.fixture
def folder_store(tmp_path: Path) -> LocalVersionedStore:
    return LocalVersionedStore(tmp_path / "objects")


def _fresh_s3_store(endpoint: str) -> S3Store:
    s3 = S3Store(f"contract-{uuid.uuid4().hex[:16]}", endpoint_url=endpoint)
    s3.ensure_bucket()
    return s3


# --- the contract: both adapters ----------------------------------------------------------------------------

def test_a_put_object_reads_back_byte_for_byte(store: ObjectStore) -> None:
    version = store.put(KEY, b"\x89PNG print file", content_type="image/png")

    assert store.get(KEY) == b"\x89PNG print file"
    assert store.get(KEY, version=version) == b"\x89PNG print file"


@pytest.mark.parametrize("data", [bytes(range(256)) * 4, b"", b"\r\n\x00\r\n\xff"],
                         ids=["all-bytes", "empty", "crlf-nul"])
def test_any_bytes_survive_the_round_trip(store: ObjectStore, data: bytes) -> None:
    store.put(KEY, data, content_type="application/octet-stream")

    assert store.get(KEY) == data


def test_a_second_put_creates_a_new_version_and_the_old_one_stays_readable(store: ObjectStore) -> None:
    first = store.put(KEY, b"render 1", content_type="image/png")

    second = store.put(KEY, b"render 2", content_type="image/png")

    assert second != first
    assert store.get(KEY) == b"render 2"
    assert store.get(KEY, version=first) == b"render 1"
    assert store.get(KEY, version=second) == b"render 2"


def test_versions_are_listed_oldest_first(store: ObjectStore) -> None:
    put_order = [store.put(KEY, f"render {n}".encode(), content_type="image/png") for n in range(4)]

    assert store.versions(KEY) == put_order


def test_a_missing_key_or_version_raises_key_error(store: ObjectStore) -> None:
    other = store.put("orders/o-2/print.png", b"other order", content_type="image/png")
    store.put(KEY, b"render", content_type="image/png")

    with pytest.raises(KeyError):
        store.get("orders/o-404/print.png")
    with pytest.raises(KeyError):
        store.get(KEY, version=other)  # another key's version id is not a version of this key
    with pytest.raises(KeyError):
        store.get(KEY, version="no-such-version")


def test_exists_only_once_something_was_put(store: ObjectStore) -> None:
    assert not store.exists(KEY)
    assert store.versions(KEY) == []

    store.put(KEY, b"render", content_type="image/png")

    assert store.exists(KEY)
    assert not store.exists("orders/o-1/print")  # a prefix of a key is not a key


def test_delete_all_versions_erases_every_version(store: ObjectStore) -> None:
    store.put(KEY, b"render 1", content_type="image/png")
    store.put(KEY, b"render 2", content_type="image/png")

    removed = store.delete_all_versions(KEY)

    assert removed == 2
    assert not store.exists(KEY)
    assert store.versions(KEY) == []
    with pytest.raises(KeyError):
        store.get(KEY)
    assert store.delete_all_versions(KEY) == 0


def test_delete_all_versions_leaves_keys_that_share_its_prefix_alone(store: ObjectStore) -> None:
    neighbours = [f"{KEY}.bak", f"{KEY}/thumb.png", "orders/o-1/print.pngx"]
    for neighbour in neighbours:
        store.put(neighbour, neighbour.encode(), content_type="image/png")
    store.put(KEY, b"render", content_type="image/png")

    store.delete_all_versions(KEY)

    assert [store.get(neighbour) for neighbour in neighbours] == [n.encode() for n in neighbours]


def test_delete_prefix_erases_every_version_of_every_key_under_the_folder_and_nothing_else(
        store: ObjectStore) -> None:
    under = ["cache/qa/abc/v1-white.npz", "cache/qa/abc/v2-white.npz", "cache/qa/abc/deeper/v1-black.npz"]
    for key in under:
        store.put(key, b"old", content_type="application/octet-stream")
        store.put(key, b"new", content_type="application/octet-stream")
    neighbours = ["cache/qa/abcd/v1-white.npz", "cache/qa/abc", "cache/qa/ab/c.npz", "cache/qa/other/v1.npz"]
    for key in neighbours:
        store.put(key, key.encode(), content_type="application/octet-stream")

    removed = store.delete_prefix("cache/qa/abc/")

    assert removed == 6
    assert [store.versions(key) for key in under] == [[], [], []]
    assert [store.get(key) for key in neighbours] == [key.encode() for key in neighbours]
    assert store.delete_prefix("cache/qa/abc/") == 0


@pytest.mark.parametrize("prefix", ["", "/", "cache/qa/abc", "cache"])
def test_delete_prefix_refuses_a_prefix_that_is_not_one_folder(store: ObjectStore, prefix: str) -> None:
    store.put("cache/qa/abc/v1.npz", b"entry", content_type="application/octet-stream")

    with pytest.raises(ValueError, match="folder"):
        store.delete_prefix(prefix)

    assert store.get("cache/qa/abc/v1.npz") == b"entry"


def test_the_url_serves_the_current_bytes_to_a_plain_http_or_file_client(store: ObjectStore) -> None:
    store.put(KEY, b"render 1", content_type="image/png")
    store.put(KEY, b"render 2", content_type="image/png")

    with urllib.request.urlopen(store.url(KEY, expires_s=60), timeout=10) as response:
        assert response.read() == b"render 2"


def test_a_url_for_a_version_serves_that_version(store: ObjectStore) -> None:
    first = store.put(KEY, b"render 1", content_type="image/png")
    store.put(KEY, b"render 2", content_type="image/png")

    with urllib.request.urlopen(store.url(KEY, version=first), timeout=10) as response:
        assert response.read() == b"render 1"


def test_a_20_mb_print_file_round_trips(store: ObjectStore) -> None:
    data = random.Random(3).randbytes(20 * 1024 * 1024)

    version = store.put(KEY, data, content_type="image/png")

    assert store.get(KEY, version=version) == data


def test_concurrent_puts_from_threads_all_land_as_distinct_versions(store: ObjectStore) -> None:
    payloads = [f"render from thread {n}".encode() for n in range(16)]

    with ThreadPoolExecutor(max_workers=8) as pool:
        returned = list(pool.map(lambda data: store.put(KEY, data, content_type="image/png"), payloads))

    assert len(set(returned)) == len(payloads)
    assert sorted(store.versions(KEY)) == sorted(returned)
    assert [store.get(KEY, version=v) for v in returned] == payloads
    assert store.get(KEY) == store.get(KEY, version=store.versions(KEY)[-1])


def test_measure_retrieval_times_one_full_read_with_the_given_clock(store: ObjectStore) -> None:
    store.put(KEY, b"render", content_type="image/png")
    ticks = iter([10.0, 10.125])

    assert measure_retrieval(store, KEY, clock=lambda: next(ticks)) == pytest.approx(0.125)


# --- the local folder only ----------------------------------------------------------------------------------

@pytest.mark.parametrize("key", [
    "../escape.png", "orders/../../escape.png", "/etc/passwd", "orders/./print.png", "orders//print.png",
    "orders/", "", "orders/.hidden", "orders\\..\\escape.png", "orders/\0.png",
])
def test_the_folder_refuses_keys_that_could_leave_its_root(folder_store: LocalVersionedStore,
                                                          key: str) -> None:
    with pytest.raises(ValueError, match="unsafe object key"):
        folder_store.put(key, b"x", content_type="image/png")
    for read in (folder_store.get, folder_store.exists, folder_store.versions, folder_store.url):
        with pytest.raises(ValueError):
            read(key)
    assert not (folder_store.root.parent / "escape.png").exists()


def test_the_folder_refuses_a_key_through_a_symlink_out_of_its_root(folder_store: LocalVersionedStore,
                                                                   tmp_path: Path) -> None:
    (tmp_path / "outside").mkdir()
    (folder_store.root / "linked").symlink_to(tmp_path / "outside")

    with pytest.raises(ValueError, match="outside the store"):
        folder_store.put("linked/print.png", b"x", content_type="image/png")


def test_a_crafted_version_id_cannot_name_another_file(folder_store: LocalVersionedStore) -> None:
    folder_store.put(KEY, b"render", content_type="image/png")
    (folder_store.root / "secret.txt").write_bytes(b"secret")

    with pytest.raises(KeyError):
        folder_store.get(KEY, version="../../../secret.txt")


def test_the_folder_url_is_a_file_uri_ending_in_the_key_extension(folder_store: LocalVersionedStore) -> None:
    folder_store.put(KEY, b"render", content_type="image/png")

    url = folder_store.url(KEY)

    assert url.startswith("file:///") and url.endswith(".png")


def test_erasing_a_prefix_prunes_the_folders_it_left_empty(folder_store: LocalVersionedStore) -> None:
    folder_store.put("cache/qa/abc/v1/white.npz", b"entry", content_type="application/octet-stream")

    folder_store.delete_prefix("cache/qa/abc/")

    assert list(folder_store.root.iterdir()) == []


def test_erasing_a_key_prunes_the_folders_it_left_empty(folder_store: LocalVersionedStore) -> None:
    folder_store.put("orders/o-9/print.png", b"render", content_type="image/png")

    folder_store.delete_all_versions("orders/o-9/print.png")

    assert list(folder_store.root.iterdir()) == []


def _put_from_another_process(root: str, worker: int) -> list[str]:
    store = LocalVersionedStore(root)
    return [store.put(KEY, f"process {worker} put {n}".encode(), content_type="image/png") for n in range(10)]


def test_concurrent_puts_from_processes_all_land_as_distinct_versions(
        folder_store: LocalVersionedStore) -> None:
    method = "fork" if "fork" in multiprocessing.get_all_start_methods() else "spawn"  # fork starts faster

    with ProcessPoolExecutor(max_workers=4, mp_context=multiprocessing.get_context(method)) as pool:
        per_process = list(pool.map(_put_from_another_process, [str(folder_store.root)] * 4, range(4)))

    returned = [version for versions in per_process for version in versions]
    assert len(set(returned)) == 40
    assert sorted(folder_store.versions(KEY)) == sorted(returned)
    for versions in per_process:  # each writer's own puts stay in its order
        assert [v for v in folder_store.versions(KEY) if v in versions] == versions


# --- S3 only ------------------------------------------------------------------------------------------------

def test_erasure_also_removes_delete_markers_left_by_plain_deletes(s3_store: S3Store) -> None:
    s3_store.put(KEY, b"render", content_type="image/png")
    s3_store.client.delete_object(Bucket=s3_store.bucket, Key=KEY)  # leaves a delete marker on top

    removed = s3_store.delete_all_versions(KEY)

    listing = s3_store.client.list_object_versions(Bucket=s3_store.bucket, Prefix=KEY)
    assert removed == 1
    assert listing.get("Versions", []) == [] and listing.get("DeleteMarkers", []) == []


def test_delete_prefix_reads_every_page_of_versions_and_delete_markers(s3_store: S3Store) -> None:
    s3_store.list_page_size = 2  # seven versions and a delete marker over four pages
    keys = [f"cache/qa/abc/entry-{n}.npz" for n in range(3)]
    for key in keys:
        s3_store.put(key, b"v1", content_type="application/octet-stream")
        s3_store.put(key, b"v2", content_type="application/octet-stream")
    s3_store.put("cache/qa/abc/gone.npz", b"v1", content_type="application/octet-stream")
    s3_store.client.delete_object(Bucket=s3_store.bucket, Key="cache/qa/abc/gone.npz")

    removed = s3_store.delete_prefix("cache/qa/abc/")

    listing = s3_store.client.list_object_versions(Bucket=s3_store.bucket, Prefix="cache/")
    assert removed == 7
    assert listing.get("Versions", []) == [] and listing.get("DeleteMarkers", []) == []


def test_the_bucket_keeps_versions(s3_store: S3Store) -> None:
    assert s3_store.client.get_bucket_versioning(Bucket=s3_store.bucket)["Status"] == "Enabled"


def test_the_bucket_encrypts_by_default_with_aes256(s3_store: S3Store) -> None:
    rules = s3_store.client.get_bucket_encryption(Bucket=s3_store.bucket)["ServerSideEncryptionConfiguration"]

    assert rules["Rules"][0]["ApplyServerSideEncryptionByDefault"]["SSEAlgorithm"] == "AES256"


def test_previews_expire_by_lifecycle_rule_including_their_old_versions(s3_store: S3Store) -> None:
    rules = s3_store.client.get_bucket_lifecycle_configuration(Bucket=s3_store.bucket)["Rules"]

    preview = next(rule for rule in rules if rule["ID"] == PREVIEW_RULE_ID)
    assert preview["Status"] == "Enabled"
    assert preview["Filter"]["Prefix"] == "previews/"
    assert preview["Expiration"]["Days"] == 30
    assert preview["NoncurrentVersionExpiration"]["NoncurrentDays"] == 30


def test_ensure_bucket_twice_keeps_lifecycle_rules_it_does_not_own(s3_store: S3Store) -> None:
    ops_rule = {"ID": "ops-tmp", "Status": "Enabled", "Filter": {"Prefix": "tmp/"}, "Expiration": {"Days": 1}}
    current = s3_store.client.get_bucket_lifecycle_configuration(Bucket=s3_store.bucket)["Rules"]
    s3_store.client.put_bucket_lifecycle_configuration(Bucket=s3_store.bucket,
                                                       LifecycleConfiguration={"Rules": [*current, ops_rule]})

    s3_store.ensure_bucket()

    ids = sorted(rule["ID"] for rule in
                 s3_store.client.get_bucket_lifecycle_configuration(Bucket=s3_store.bucket)["Rules"])
    assert ids == ["ops-tmp", PREVIEW_RULE_ID]


def test_a_put_asks_for_and_gets_server_side_encryption(s3_store: S3Store) -> None:
    responses: list[dict[str, Any]] = []
    s3_store.client.meta.events.register("after-call.s3.PutObject",
                                         lambda parsed, **_: responses.append(parsed))

    version = s3_store.put(KEY, b"render", content_type="image/png")

    assert responses[0]["ServerSideEncryption"] == "AES256"
    assert responses[0]["VersionId"] == version
    head = s3_store.client.head_object(Bucket=s3_store.bucket, Key=KEY)
    assert head["ServerSideEncryption"] == "AES256" and head["ContentType"] == "image/png"


def test_an_unreachable_endpoint_raises_storage_unavailable() -> None:
    endpoint = _endpoint_nobody_listens_on()
    store = S3Store("contract-offline", client=make_client(endpoint_url=endpoint, max_attempts=0,
                                                           access_key="testing", secret_key="testing"))

    with pytest.raises(StorageUnavailable, match="did not answer"):
        store.get(KEY)


def test_a_server_error_raises_storage_unavailable_not_key_error(failing_endpoint: str) -> None:
    store = S3Store("contract-broken", client=make_client(endpoint_url=failing_endpoint, max_attempts=0,
                                                          access_key="testing", secret_key="testing"))

    with pytest.raises(StorageUnavailable, match="503"):
        store.get(KEY)
    with pytest.raises(StorageUnavailable):
        store.put(KEY, b"render", content_type="image/png")


# --- the factory --------------------------------------------------------------------------------------------

def test_the_factory_picks_s3_when_a_bucket_is_configured() -> None:
    settings = SimpleNamespace(s3_bucket="pressroom-assets", s3_endpoint_url="http://127.0.0.1:9",
                               s3_region="", object_store_dir="unused")

    store = make_object_store(settings)

    assert isinstance(store, S3Store) and store.bucket == "pressroom-assets" and store.region == "us-east-1"


def test_the_factory_falls_back_to_the_folder_without_s3_settings(tmp_path: Path) -> None:
    store = make_object_store(SimpleNamespace(object_store_dir=str(tmp_path / "objects")))

    assert isinstance(store, LocalVersionedStore) and store.root == (tmp_path / "objects").resolve()


# --- helpers ------------------------------------------------------------------------------------------------

def _endpoint_nobody_listens_on() -> str:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{probe.getsockname()[1]}"


class _AlwaysUnavailable(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # answers boto's `Expect: 100-continue` at once

    def _refuse(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        self.rfile.read(length)
        body = b"<Error><Code>ServiceUnavailable</Code><Message>down for maintenance</Message></Error>"
        self.send_response(503)
        self.send_header("Content-Type", "application/xml")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_GET = do_PUT = do_POST = do_DELETE = _refuse

    def log_message(self, *_: object) -> None:
        return None


@pytest.fixture
def failing_endpoint() -> Iterator[str]:
    """A real HTTP server that answers every S3 request with 503, like an S3 API having a bad minute."""
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _AlwaysUnavailable)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()
