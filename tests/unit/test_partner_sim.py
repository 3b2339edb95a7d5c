"""The partner sim keeps the contract in docs/PARTNER_API.md, over real HTTP for print files and webhooks."""

from __future__ import annotations

import hashlib
import hmac
import io
import json
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from fastapi.testclient import TestClient
from PIL import Image, ImageDraw

from sims.partner import (
    Job,
    Line,
    Outage,
    PartnerSim,
    SimConfig,
    config_from,
    create_app,
    load_partners,
    opening_stock,
    parse_args,
)

PARTNER = "spree-berlin"
OTHER = "acme-columbus"
KEY = {"Authorization": f"Bearer pk_dev_{PARTNER}"}
SECRET = f"whsec_dev_{PARTNER}"
SKU = "TEE-DTG-BLK-M"
JOBS = f"/partners/{PARTNER}/v1/jobs"
FAST = 1_000_000.0  # partner seconds per real second: prepress, press and packing take milliseconds


def _print_png() -> bytes:
    """A transparent DTG print file (15×18 in at 40 DPI) with two inks, as our render stage would send it."""
    img = Image.new("RGBA", (600, 720), (0, 0, 0, 0))
    draw = ImageDraw.Draw(img)
    draw.rectangle((60, 60, 330, 400), fill=(220, 30, 30, 255))
    draw.ellipse((280, 330, 560, 610), fill=(240, 240, 240, 255))
    buf = io.BytesIO()
    img.save(buf, "PNG")
    return buf.getvalue()


PNG = _print_png()


@dataclass
class Outside:
    """Our side of the wire for the sim: serves print files and records webhooks, over real HTTP."""

    base: str = ""
    hooks: list[tuple[str, dict[str, str], bytes]] = field(default_factory=list)
    fail_next: int = 0
    always_fail_path: str = "/hooks/broken"
    fetches: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)

    def received(self) -> list[dict[str, Any]]:
        with self.lock:
            return [json.loads(body) for path, _, body in self.hooks if path != self.always_fail_path]

    def statuses(self, external_id: str) -> list[str]:
        return [e["job"]["status"] for e in self.received() if e["job"]["external_id"] == external_id]


@pytest.fixture
def outside() -> Iterator[Outside]:
    state = Outside()

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 - the stdlib's name
            if self.path != "/print.png":
                self.send_error(404)
                return
            with state.lock:
                state.fetches += 1
            self.send_response(200)
            self.send_header("Content-Type", "image/png")
            self.send_header("Content-Length", str(len(PNG)))
            self.end_headers()
            self.wfile.write(PNG)

        def do_POST(self) -> None:  # noqa: N802
            body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
            with state.lock:
                state.hooks.append((self.path, dict(self.headers), body))
                failing = self.path == state.always_fail_path or state.fail_next > 0
                if state.fail_next > 0 and self.path != state.always_fail_path:
                    state.fail_next -= 1
            self.send_response(500 if failing else 204)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    state.base = f"http://127.0.0.1:{server.server_port}"
    yield state
    server.shutdown()
    server.server_close()


@pytest.fixture
def sim(outside: Outside) -> Callable[..., Any]:
    """Start a sim with test-friendly knobs (fast clock, small photos, quick retries) and fake-free HTTP."""

    @contextmanager
    def start(**overrides: Any) -> Iterator[TestClient]:
        config = SimConfig(**{
            "callback_base": outside.base + "/hooks", "public_url": "http://partner.test", "time_scale": FAST,
            "defect_rate": 0.0, "photo_long_side": 400, "tick_s": 0.005, "webhook_backoff_s": 0.01,
            "fetch_backoff_s": 0.01, "rate_limit_per_s": 10_000, **overrides,
        })
        with TestClient(create_app(config), base_url="http://partner.test") as client:
            yield client

    return start


def _job(outside: Outside, external_id: str = "job_1", **overrides: Any) -> dict[str, Any]:
    return {
        "external_id": external_id, "batch_id": None, "sku": SKU, "product_type": "tshirt", "print_method": "dtg",
        "print_file_url": outside.base + "/print.png", "print_file_sha256": hashlib.sha256(PNG).hexdigest(),
        "width": 600, "height": 720, "dpi": 40, "priority": 1.0, "ship_to_region": "eu", **overrides,
    }


def _wait(condition: Callable[[], Any], timeout: float = 10.0) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if value := condition():
            return value
        time.sleep(0.01)
    raise AssertionError("timed out waiting")


def _truth(client: TestClient, external_id: str) -> dict[str, Any]:
    return client.get(f"/sim/truth/jobs/{external_id}").json()


ORDER = ["queued", "printing", "printed", "ready_for_shipment"]


def _until_status(client: TestClient, external_id: str, status: str) -> dict[str, Any]:
    """The job's ground truth once it has reached `status` (or gone past it)."""
    return _wait(lambda: (t := _truth(client, external_id))["status"] in ORDER[ORDER.index(status):] and t)


def _in_photo(homography: list[list[float]], x: float, y: float) -> tuple[int, int]:
    px, py, w = (sum(h * v for h, v in zip(row, (x, y, 1.0), strict=True)) for row in homography)
    return round(px / w), round(py / w)


def _verify(headers: dict[str, str], body: bytes, secret: str = SECRET) -> bool:
    expected = "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    return hmac.compare_digest(headers["X-Partner-Signature"], expected)


# --------------------------------------------------------------------------------------------------
# Auth, idempotency, batches, lookups


def test_requests_without_the_partners_own_key_are_refused(sim) -> None:
    with sim() as client:
        assert client.get(f"/partners/{PARTNER}/v1/stock").status_code == 401
        wrong = client.get(f"/partners/{PARTNER}/v1/stock", headers={"Authorization": f"Bearer pk_dev_{OTHER}"})
        assert wrong.status_code == 401 and wrong.json()["error"] == "unauthorized"
        assert client.get(f"/partners/{PARTNER}/v1/stock", headers=KEY).status_code == 200


def test_keys_and_secrets_can_be_overridden(sim, outside: Outside) -> None:
    with sim(api_keys={PARTNER: "pk_live_x"}, webhook_secrets={PARTNER: "whsec_live_x"}) as client:
        assert client.get(f"/partners/{PARTNER}/v1/stock", headers=KEY).status_code == 401
        live = {"Authorization": "Bearer pk_live_x"}
        assert client.post(JOBS, json=_job(outside), headers=live).status_code == 201
        _wait(lambda: outside.statuses("job_1"))
        path, headers, body = outside.hooks[0]
        assert _verify(headers, body, "whsec_live_x")


def test_a_repeated_submit_returns_the_same_job_and_never_makes_a_second(sim, outside: Outside) -> None:
    with sim(time_scale=1) as client:
        first = client.post(JOBS, json=_job(outside), headers=KEY)
        again = client.post(JOBS, json=_job(outside), headers=KEY)
        assert first.status_code == 201 and first.json()["created"] is True
        assert first.json()["status"] == "queued" and first.json()["id"].startswith("pj_")
        assert again.status_code == 200 and again.json()["created"] is False
        assert again.json()["id"] == first.json()["id"]
        ledger = client.get("/sim/ledger").json()
        assert ledger["jobs_created"] == 1 and ledger["by_external_id"] == {"job_1": 1}


def test_twenty_concurrent_repeats_of_one_external_id_create_exactly_one_job(sim, outside: Outside) -> None:
    with sim(time_scale=1) as client:
        barrier = threading.Barrier(20)
        responses = []

        def submit() -> None:
            barrier.wait()
            responses.append(client.post(JOBS, json=_job(outside, "job_race"), headers=KEY))

        threads = [threading.Thread(target=submit) for _ in range(20)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert sorted(r.status_code for r in responses) == [200] * 19 + [201]
        assert len({r.json()["id"] for r in responses}) == 1
        ledger = client.get("/sim/ledger").json()
        assert ledger["by_external_id"] == {"job_race": 1} and ledger["duplicate_creates"] == 0
        assert ledger["jobs_created"] == 1


def test_a_batch_creates_each_job_once_and_a_repeat_creates_none(sim, outside: Outside) -> None:
    with sim(time_scale=1) as client:
        early = client.post(JOBS, json=_job(outside, "job_a"), headers=KEY).json()
        body = {"external_id": "bat_1", "jobs": [_job(outside, f"job_{x}", batch_id="bat_1") for x in "abc"]}
        batch = client.post(f"/partners/{PARTNER}/v1/batches", json=body, headers=KEY)
        assert batch.status_code == 201 and batch.json()["id"].startswith("pb_")
        jobs = batch.json()["jobs"]
        assert [j["created"] for j in jobs] == [False, True, True]  # job_a already existed
        assert jobs[0]["id"] == early["id"]
        repeat = client.post(f"/partners/{PARTNER}/v1/batches", json=body, headers=KEY)
        assert repeat.status_code == 200 and repeat.json()["id"] == batch.json()["id"]
        assert [j["id"] for j in repeat.json()["jobs"]] == [j["id"] for j in jobs]
        assert not any(j["created"] for j in repeat.json()["jobs"])
        assert client.get("/sim/ledger").json()["jobs_created"] == 3


def test_a_batch_with_one_unprintable_job_is_refused_whole(sim, outside: Outside) -> None:
    with sim(time_scale=1) as client:
        body = {"external_id": "bat_2", "jobs": [_job(outside, "job_ok"),
                                                 _job(outside, "job_bad", sku="CASE-UV-IP15", print_method="uv")]}
        refused = client.post(f"/partners/{PARTNER}/v1/batches", json=body, headers=KEY)
        assert refused.status_code == 422 and refused.json()["error"] == "unsupported_sku"
        assert "jobs[1]" in refused.json()["message"]
        assert client.get("/sim/ledger").json()["jobs_created"] == 0


def test_jobs_are_found_by_partner_id_and_by_our_external_id(sim, outside: Outside) -> None:
    with sim(time_scale=1) as client:
        created = client.post(JOBS, json=_job(outside), headers=KEY).json()
        by_id = client.get(f"{JOBS}/{created['id']}", headers=KEY)
        by_external = client.get(JOBS, params={"external_id": "job_1"}, headers=KEY)
        assert by_id.json()["external_id"] == "job_1" and by_external.json()["id"] == created["id"]
        missing = client.get(JOBS, params={"external_id": "job_nope"}, headers=KEY)
        assert missing.status_code == 404 and missing.json()["error"] == "not_found"
        other = {"Authorization": f"Bearer pk_dev_{OTHER}"}
        assert client.get(f"/partners/{OTHER}/v1/jobs/{created['id']}", headers=other).status_code == 404


def test_invalid_bodies_get_the_contracts_error_json(sim, outside: Outside) -> None:
    with sim() as client:
        bad = client.post(JOBS, json={**_job(outside), "width": 0}, headers=KEY)
        assert bad.status_code == 422
        assert bad.json()["error"] == "invalid_request" and "width" in bad.json()["message"]


# --------------------------------------------------------------------------------------------------
# Cancel, stock, rate limit, outage


def test_a_job_can_be_cancelled_before_printing_and_not_after(sim, outside: Outside) -> None:
    with sim(time_scale=1) as client:  # prepress takes five partner minutes: five real minutes here
        job = client.post(JOBS, json=_job(outside, "job_early"), headers=KEY).json()
        cancelled = client.post(f"{JOBS}/{job['id']}/cancel", headers=KEY)
        assert cancelled.status_code == 200 and cancelled.json()["status"] == "cancelled"
        assert client.get(f"{JOBS}/{job['id']}", headers=KEY).json()["status"] == "cancelled"
        _wait(lambda: "cancelled" in outside.statuses("job_early"))
        client.post("/sim/control", json={"time_scale": FAST})
        late = client.post(JOBS, json=_job(outside, "job_late"), headers=KEY).json()
        _until_status(client, "job_late", "ready_for_shipment")
        too_late = client.post(f"{JOBS}/{late['id']}/cancel", headers=KEY)
        assert too_late.status_code == 409 and too_late.json()["error"] == "too_late"
        assert _truth(client, "job_early")["status"] == "cancelled"  # the press never took it


def test_submitting_takes_a_blank_from_stock_and_cancelling_gives_it_back(sim, outside: Outside) -> None:
    def on_hand(client: TestClient) -> dict[str, int]:
        stock = client.get(f"/partners/{PARTNER}/v1/stock", headers=KEY).json()
        assert stock["partner_id"] == PARTNER and stock["as_of"].endswith("Z")
        return {row["sku"]: row["on_hand"] for row in stock["stock"]}

    with sim(time_scale=1) as client:
        before = on_hand(client)
        assert before[SKU] == opening_stock(PARTNER, SKU) and 40 <= before[SKU] <= 640
        assert "CASE-UV-IP15" not in before  # Spree has no UV press
        job = client.post(JOBS, json=_job(outside), headers=KEY).json()
        after = on_hand(client)
        assert after[SKU] == before[SKU] - 1
        assert {k: v for k, v in after.items() if k != SKU} == {k: v for k, v in before.items() if k != SKU}
        cancelled = client.post(f"{JOBS}/{job['id']}/cancel", headers=KEY)
        assert cancelled.status_code == 200, cancelled.json()
        assert on_hand(client)[SKU] == before[SKU]


def test_over_the_rate_limit_the_partner_answers_429_with_retry_after(sim) -> None:
    with sim(rate_limit_per_s=2) as client:
        codes = [client.get(f"/partners/{PARTNER}/v1/stock", headers=KEY) for _ in range(4)]
        assert [r.status_code for r in codes[:2]] == [200, 200]
        limited = codes[2]
        assert limited.status_code == 429 and limited.json()["error"] == "rate_limited"
        assert int(limited.headers["Retry-After"]) >= 1
        other = {"Authorization": f"Bearer pk_dev_{OTHER}"}
        assert client.get(f"/partners/{OTHER}/v1/stock", headers=other).status_code == 200  # per partner
        assert client.get("/sim/ledger").json()["rate_limited"] >= 2


def test_during_an_outage_the_partner_answers_503_until_it_ends(sim) -> None:
    with sim(outages=(Outage(partner_id=PARTNER, start_s=0, duration_s=60),)) as client:
        down = client.get(f"/partners/{PARTNER}/v1/stock", headers=KEY)
        assert down.status_code == 503 and 1 <= int(down.headers["Retry-After"]) <= 60
        other = {"Authorization": f"Bearer pk_dev_{OTHER}"}
        assert client.get(f"/partners/{OTHER}/v1/stock", headers=other).status_code == 200
        client.post("/sim/control", json={"partner_id": PARTNER, "outage_s": 0})
        assert client.get(f"/partners/{PARTNER}/v1/stock", headers=KEY).status_code == 200
        client.post("/sim/control", json={"outage_s": 30})  # every partner
        assert client.get(f"/partners/{OTHER}/v1/stock", headers=other).status_code == 503


# --------------------------------------------------------------------------------------------------
# Progress, webhooks, photos, ground truth


def test_a_job_moves_through_every_status_with_one_signed_webhook_each(sim, outside: Outside) -> None:
    with sim() as client:
        job = client.post(JOBS, json=_job(outside), headers=KEY).json()  # no callback_url: the base is used
        _wait(lambda: outside.statuses("job_1")[-1:] == ["ready_for_shipment"])
        time.sleep(0.1)
        assert outside.statuses("job_1") == ["queued", "printing", "printed", "ready_for_shipment"]
        for path, headers, body in outside.hooks:
            event = json.loads(body)
            assert path == f"/hooks/webhooks/partners/{PARTNER}"
            assert _verify(headers, body), "signature is HMAC-SHA256 of the raw body"
            assert headers["X-Partner-Id"] == PARTNER
            assert headers["X-Partner-Event-Id"] == event["event_id"] and event["event_id"].startswith("evt_")
            assert event["type"] == "job.status" and event["occurred_at"].endswith("Z")
            assert event["job"]["id"] == job["id"] and event["job"]["external_id"] == "job_1"
        assert len({json.loads(body)["event_id"] for _, _, body in outside.hooks}) == 4
        printed = next(e for e in outside.received() if e["job"]["status"] == "printed")
        assert printed["job"]["photo_url"] == f"http://partner.test/partners/{PARTNER}/v1/jobs/{job['id']}/photo"
        assert outside.fetches == 1, "the print file is fetched once"


def test_the_webhook_goes_to_the_jobs_callback_url(sim, outside: Outside) -> None:
    with sim() as client:
        client.post(JOBS, json=_job(outside, callback_url=outside.base + "/ours/here"), headers=KEY)
        _wait(lambda: len(outside.statuses("job_1")) == 4)
        assert {path for path, _, _ in outside.hooks} == {"/ours/here"}


def test_the_photo_is_served_from_printed_on_and_not_before(sim, outside: Outside) -> None:
    with sim(time_scale=1) as client:
        job = client.post(JOBS, json=_job(outside), headers=KEY).json()
        early = client.get(f"{JOBS}/{job['id']}/photo", headers=KEY)
        assert early.status_code == 404 and early.json()["error"] == "not_printed"
        client.post("/sim/control", json={"time_scale": FAST})
        homography = _until_status(client, "job_1", "printed")["camera"]["homography"]
        photo = client.get(f"{JOBS}/{job['id']}/photo", headers=KEY)
        assert photo.status_code == 200 and photo.headers["content-type"] == "image/jpeg"
        with Image.open(io.BytesIO(photo.content)) as img:
            assert img.format == "JPEG" and max(img.size) == 400
            # the print was transparent at (480, 150): the camera sees the black tee there, and red ink at (200, 200)
            assert max(img.convert("RGB").getpixel(_in_photo(homography, 480, 150))) < 80
            r, g, b = img.convert("RGB").getpixel(_in_photo(homography, 200, 200))
            assert r > 150 and g < 90 and b < 90


def test_ground_truth_names_the_injected_defect(sim, outside: Outside) -> None:
    with sim(defect_rate=1.0, defect_mix={"ink_blot": 1.0}) as client:
        client.post(JOBS, json=_job(outside, "job_blot"), headers=KEY)
        truth = _until_status(client, "job_blot", "ready_for_shipment")
        assert truth["defect"] == "ink_blot" and truth["params"]["blots"]
        assert truth["photo"] is True and truth["camera"]["homography"]
        client.post("/sim/control", json={"defect_rate": 0.0})
        client.post(JOBS, json=_job(outside, "job_fine"), headers=KEY)
        assert _until_status(client, "job_fine", "ready_for_shipment")["defect"] is None
        assert client.get("/sim/ledger").json()["defects_injected.ink_blot"] == 1


def test_the_truth_is_the_same_on_every_run_for_a_seed(sim, outside: Outside) -> None:
    truths = []
    for _ in range(2):
        with sim(defect_rate=0.5, seed=42) as client:
            for i in range(6):
                client.post(JOBS, json=_job(outside, f"job_{i}"), headers=KEY)
            truths.append([_until_status(client, f"job_{i}", "ready_for_shipment")["params"] for i in range(6)])
    assert truths[0] == truths[1]


def test_duplicate_deliveries_repeat_the_same_event_byte_for_byte(sim, outside: Outside) -> None:
    with sim(duplicate_rate=1.0) as client:
        client.post(JOBS, json=_job(outside), headers=KEY)
        _wait(lambda: len(outside.hooks) == 8, timeout=15)
        bodies = [body for _, _, body in outside.hooks]
        assert len(set(bodies)) == 4 and all(bodies.count(b) == 2 for b in bodies)
        assert client.get("/sim/ledger").json()["duplicate_deliveries"] == 4


def test_out_of_order_delivery_sends_a_later_status_before_an_earlier_one(sim, outside: Outside) -> None:
    with sim(reorder_rate=1.0) as client:
        client.post(JOBS, json=_job(outside), headers=KEY)
        _wait(lambda: len(outside.statuses("job_1")) == 4)
        statuses = outside.statuses("job_1")
        assert statuses[0] == "ready_for_shipment"  # every earlier one was held back behind it
        assert sorted(statuses) == sorted(["queued", "printing", "printed", "ready_for_shipment"])


def test_delayed_deliveries_arrive_late_but_arrive(sim, outside: Outside) -> None:
    with sim(delay_rate=1.0, delay_max_s=0.5) as client:
        started = time.monotonic()
        client.post(JOBS, json=_job(outside), headers=KEY)
        _wait(lambda: len(outside.statuses("job_1")) == 4)
        assert time.monotonic() - started >= 0.1  # at least 20 % of the maximum delay
        assert client.get("/sim/ledger").json()["delayed_deliveries"] == 4


def test_failed_webhooks_are_retried_then_given_up_and_counted(sim, outside: Outside) -> None:
    outside.fail_next = 2
    with sim(webhook_max_attempts=3) as client:
        client.post(JOBS, json=_job(outside), headers=KEY)
        _wait(lambda: len(outside.statuses("job_1")) >= 6)  # 2 refused attempts + 4 accepted events
        _wait(lambda: client.get("/sim/ledger").json()["webhooks_sent"] == 4)
        client.post(JOBS, json=_job(outside, "job_x", callback_url=outside.base + outside.always_fail_path),
                    headers=KEY)
        ledger = _wait(lambda: (led := client.get("/sim/ledger").json())["webhooks_failed"] == 4 and led)
        assert ledger["webhook_retries"] == 2 + 4 * 2
        assert sum(1 for path, _, _ in outside.hooks if path == outside.always_fail_path) == 12


def test_an_unfetchable_print_file_means_printed_without_a_photo(sim, outside: Outside) -> None:
    with sim(fetch_attempts=2) as client:
        job = client.post(JOBS, json=_job(outside, print_file_url=outside.base + "/gone.png"), headers=KEY).json()
        _until_status(client, "job_1", "printed")
        _wait(lambda: "printed" in outside.statuses("job_1"))
        printed = next(e for e in outside.received() if e["job"]["status"] == "printed")
        assert printed["job"]["photo_url"] is None
        assert client.get(f"{JOBS}/{job['id']}/photo", headers=KEY).status_code == 404
        assert client.get("/sim/ledger").json()["print_file_fetch_failures"] == 1


def test_a_print_file_with_the_wrong_checksum_is_not_photographed(sim, outside: Outside) -> None:
    with sim(fetch_attempts=1) as client:
        client.post(JOBS, json=_job(outside, print_file_sha256="0" * 64), headers=KEY)
        assert _until_status(client, "job_1", "printed")["photo"] is False
        ledger = client.get("/sim/ledger").json()
        assert ledger["print_file_checksum_mismatches"] == 1 and ledger["print_file_fetch_failures"] == 1


def test_only_the_newest_photos_are_kept_over_the_cap(sim, outside: Outside) -> None:
    with sim(photo_cap=2) as client:
        for i in range(4):
            client.post(JOBS, json=_job(outside, f"job_{i}"), headers=KEY)
        for i in range(4):
            _until_status(client, f"job_{i}", "ready_for_shipment")
        ledger = client.get("/sim/ledger").json()
        assert ledger["photos_held"] == 2 and ledger["photos_dropped"] == 2


def test_the_press_runs_at_the_partners_capacity_in_partner_time(sim, outside: Outside) -> None:
    # Spree prints 100 DTG units an hour: one every 36 partner seconds, after 300 s of prepress.
    with sim(time_scale=0.001) as client:  # a frozen clock while the queue fills
        for i in range(5):
            client.post(JOBS, json=_job(outside, f"job_{i}"), headers=KEY)
        client.post("/sim/control", json={"time_scale": FAST})
        press = [_until_status(client, f"job_{i}", "ready_for_shipment")["press"] for i in range(5)]
    starts = [p["start_partner_s"] for p in press]
    assert [b - a for a, b in zip(starts, starts[1:], strict=False)] == pytest.approx([36.0] * 4)
    assert starts[0] == pytest.approx(press[0]["ready_partner_s"])
    assert all(p["end_partner_s"] - p["start_partner_s"] == pytest.approx(36.0) for p in press)


def test_the_free_press_takes_the_most_urgent_job_that_is_out_of_prepress() -> None:
    # given a press busy until t=100 and three queued jobs, the most urgent still in prepress until t=150
    line = Line(36.0, free_at=100.0)
    line.pending.extend(_queued_job(seq, priority, ready_at)
                        for seq, (priority, ready_at) in enumerate([(1.0, 10.0), (5.0, 20.0), (9.0, 150.0)]))
    # when the press takes a job each time it frees up
    taken = []
    for _ in range(3):
        job, start = PartnerSim._next_on_press(line, clock=1000.0, instant=False)
        line.free_at = start + line.unit_partner_s
        taken.append((job.priority, start))
    # then the more urgent of the two ready jobs goes first, and the late urgent one waits for its prepress
    assert taken == [(5.0, 100.0), (1.0, 136.0), (9.0, 172.0)]
    assert PartnerSim._next_on_press(line, clock=1000.0, instant=False) == (None, 0.0)


def test_a_press_does_not_start_a_job_before_the_partners_clock_gets_there() -> None:
    line = Line(36.0)
    line.pending.append(_queued_job(1, 1.0, 300.0))
    assert PartnerSim._next_on_press(line, clock=299.0, instant=False) == (None, 0.0)
    job, start = PartnerSim._next_on_press(line, clock=301.0, instant=False)
    assert job.external_id == "job_1" and start == 300.0


def _queued_job(seq: int, priority: float, ready_at: float) -> Job:
    now = datetime.now(UTC)
    return Job(id=f"pj_{seq}", seq=seq, partner_id=PARTNER, external_id=f"job_{seq}", batch_id=None,
               partner_batch_id=None, sku=SKU, product_type="tshirt", print_method="dtg", print_file_url="",
               print_file_sha256=None, width=1, height=1, dpi=1, priority=priority, ship_to_region=None,
               callback_url="", created_at=now, updated_at=now, ready_at=ready_at)


def test_the_sim_describes_its_partners_and_is_healthy(sim) -> None:
    with sim() as client:
        assert client.get("/healthz").json()["status"] == "ok"
        partners = {p["id"]: p for p in client.get("/sim/partners").json()}
        assert partners[PARTNER]["api_url"] == f"http://partner.test/partners/{PARTNER}"
        assert partners[PARTNER]["capacity_per_hour"]["dtg"] == 100
        assert SKU in partners[PARTNER]["skus"]


def test_instant_mode_runs_a_job_through_without_any_partner_time(sim, outside: Outside) -> None:
    with sim(time_scale=0) as client:
        client.post(JOBS, json=_job(outside), headers=KEY)
        press = _until_status(client, "job_1", "ready_for_shipment")["press"]
        assert press["start_partner_s"] == press["end_partner_s"]


def test_the_command_line_sets_knobs_and_the_environment_overrides_credentials() -> None:
    args = parse_args(["--port", "8123", "--instant", "--outage", f"{PARTNER}=10:30", "--outage", "5:1",
                       "--defect-mix", "ink_blot=2,faded_print=1", "--rate-limit", "7"])
    config = config_from(args, {"PARTNER_API_KEYS": f"{PARTNER}=pk_live_1",
                                "PARTNER_WEBHOOK_SECRETS": f"{PARTNER}=whsec_live_1"})
    assert config.time_scale == 0 and config.public_url == "http://127.0.0.1:8123"
    assert config.outages == (Outage(partner_id=PARTNER, start_s=10, duration_s=30),
                              Outage(partner_id=None, start_s=5, duration_s=1))
    assert config.defect_mix == {"ink_blot": 2.0, "faded_print": 1.0} and config.rate_limit_per_s == 7
    partners = {p.id: p for p in load_partners(config)}
    assert (partners[PARTNER].api_key, partners[PARTNER].webhook_secret) == ("pk_live_1", "whsec_live_1")
    assert (partners[OTHER].api_key, partners[OTHER].webhook_secret) == (f"pk_dev_{OTHER}", f"whsec_dev_{OTHER}")
