"""The fault proxy: what reaches the upstream and what reaches the client under each fault, and its record."""

from __future__ import annotations

import contextlib
import json
import re
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx
import pytest

from sims.faultproxy import Exchange, FaultProxy, Lookups, Mode, Rule, asked_first


class _Upstream(ThreadingHTTPServer):
    daemon_threads = True
    commits: list[str]


class _Handler(BaseHTTPRequestHandler):
    """POST /things commits the body's "id"; GET /things?id=… says whether it was committed."""

    protocol_version = "HTTP/1.1"
    server: _Upstream

    def do_POST(self) -> None:  # noqa: N802 - the stdlib's name
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        self.server.commits.append(body["id"])
        self._answer(201, {"id": body["id"], "created": True})

    def do_GET(self) -> None:  # noqa: N802
        wanted = self.path.partition("id=")[2]
        self._answer(200 if wanted in self.server.commits else 404, {"id": wanted})

    def _answer(self, status: int, data: dict) -> None:
        body = json.dumps(data).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args) -> None:
        pass


@pytest.fixture
def upstream() -> Iterator[_Upstream]:
    server = _Upstream(("127.0.0.1", 0), _Handler)
    server.commits = []
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


@pytest.fixture
def proxy(upstream) -> Iterator[FaultProxy]:
    with FaultProxy(f"http://127.0.0.1:{upstream.server_address[1]}", blackhole_hold_s=5) as p:
        yield p


def post(proxy: FaultProxy, thing: str, *, timeout: float = 5.0) -> httpx.Response:
    return httpx.post(f"{proxy.url}/things", json={"id": thing}, timeout=timeout)


def test_without_rules_every_request_passes_through_and_is_recorded(proxy, upstream):
    # when
    created = post(proxy, "a")
    found = httpx.get(f"{proxy.url}/things?id=a", timeout=5)
    # then
    assert (created.status_code, created.json()) == (201, {"id": "a", "created": True})
    assert found.status_code == 200
    assert upstream.commits == ["a"]
    assert [(e.method, e.target, e.fault, e.upstream_status, e.delivered) for e in proxy.exchanges()] == [
        ("POST", "/things", "", 201, True), ("GET", "/things?id=a", "", 200, True)]
    assert json.loads(proxy.exchanges()[0].body) == {"id": "a"}


def test_a_reset_reaches_the_client_as_a_dropped_connection_and_nothing_reaches_the_upstream(proxy, upstream):
    # given
    proxy.set_rules([Rule(mode=Mode.RESET, next=1)])
    # when / then
    with pytest.raises(httpx.TransportError):
        post(proxy, "a")
    assert upstream.commits == []
    [exchange] = proxy.exchanges()
    assert (exchange.fault, exchange.upstream_status, exchange.unknown_outcome) == ("reset", None, True)


def test_a_blackhole_never_answers_and_never_forwards(proxy, upstream):
    # given
    proxy.set_rules([Rule(mode=Mode.BLACKHOLE, next=1)])
    # when / then: the client's own timeout is what ends it
    with pytest.raises(httpx.ReadTimeout):
        post(proxy, "a", timeout=0.5)
    assert upstream.commits == []
    assert proxy.ledger()["faults"] == {"blackhole": 1}


def test_a_response_lost_after_commit_leaves_the_upstream_committed_and_the_client_without_an_answer(proxy, upstream):
    # given
    proxy.set_rules([Rule(mode=Mode.LOST_RESPONSE, next=1)])
    # when
    with pytest.raises(httpx.TransportError):
        post(proxy, "a")
    # then: the upstream acted; asking (through the proxy, the rule spent) finds it
    assert upstream.commits == ["a"]
    assert httpx.get(f"{proxy.url}/things?id=a", timeout=5).status_code == 200
    first = proxy.exchanges()[0]
    assert (first.fault, first.upstream_status, first.delivered) == ("lost_response", 201, False)


def test_latency_delays_but_delivers(proxy, upstream):
    # given
    proxy.set_rules([Rule(mode=Mode.LATENCY, probability=1.0, latency_ms=50)])
    # when
    response = post(proxy, "a")
    # then
    assert response.status_code == 201
    assert upstream.commits == ["a"]
    [exchange] = proxy.exchanges()
    assert (exchange.fault, exchange.delivered) == ("latency", True)


def test_a_latency_past_the_clients_timeout_still_delivers_the_request_late(proxy, upstream):
    # given
    proxy.set_rules([Rule(mode=Mode.LATENCY, next=1, latency_ms=600)])
    # when
    with pytest.raises(httpx.ReadTimeout):
        post(proxy, "late", timeout=0.2)
    # then: the upstream gets it anyway once the delay is over; the client never saw the answer
    deadline = threading.Event()
    for _ in range(50):
        if upstream.commits:
            break
        deadline.wait(0.05)
    assert upstream.commits == ["late"]
    for _ in range(50):
        if proxy.exchanges()[0].upstream_status is not None:
            break
        deadline.wait(0.05)
    assert not proxy.exchanges()[0].delivered


def test_next_n_faults_only_the_next_n_matching_requests(proxy, upstream):
    # given: resets for the next two POSTs; GETs are never matched
    proxy.set_rules([Rule(mode=Mode.RESET, next=2, match=r"^POST /things")])
    # when
    assert httpx.get(f"{proxy.url}/things?id=x", timeout=5).status_code == 404
    outcomes = []
    for thing in "abc":
        try:
            outcomes.append(post(proxy, thing).status_code)
        except httpx.TransportError:
            outcomes.append("reset")
    # then
    assert outcomes == ["reset", "reset", 201]
    assert upstream.commits == ["c"]
    assert proxy.rules()[0]["fired"] == 2 and proxy.rules()[0]["next"] == 0


def test_a_probability_rule_fires_at_its_rate_reproducibly_for_a_seed(upstream):
    # given
    url = f"http://127.0.0.1:{upstream.server_address[1]}"
    runs = []
    for _ in range(2):
        with FaultProxy(url, seed=3) as proxy:
            proxy.set_rules([Rule(mode=Mode.RESET, probability=0.5)])
            for n in range(20):
                with contextlib.suppress(httpx.TransportError):
                    post(proxy, f"p{n}")
            runs.append([e.fault for e in proxy.exchanges()])
    # then: some but not all reset, the same ones for the same seed
    assert 0 < runs[0].count("reset") < 20
    assert runs[0] == runs[1]


def test_the_control_endpoint_sets_rules_and_reports_the_ledger(proxy, upstream):
    # when
    set_ = httpx.post(f"{proxy.url}/__proxy/rules", json={"rules": [{"mode": "lost_response", "next": 1}]}, timeout=5)
    with pytest.raises(httpx.TransportError):
        post(proxy, "a")
    ledger = httpx.get(f"{proxy.url}/__proxy/ledger?exchanges=1", timeout=5).json()
    refused = httpx.post(f"{proxy.url}/__proxy/rules", json={"rules": [{"mode": "explode"}]}, timeout=5)
    # then
    assert set_.status_code == 200 and set_.json()["rules"][0]["mode"] == "lost_response"
    assert ledger["requests"] == 1 and ledger["faults"] == {"lost_response": 1} and ledger["unknown_outcomes"] == 1
    assert ledger["exchanges"][0]["upstream_status"] == 201
    assert refused.status_code == 400
    assert httpx.post(f"{proxy.url}/__proxy/clear", timeout=5).json() == {"rules": []}
    assert proxy.exchanges() == []


def _exchange(seq: int, method: str, target: str, *, body: str = "", delivered: bool = True) -> Exchange:
    return Exchange(seq=seq, at=0.0, method=method, target=target, body=body, delivered=delivered)


def test_asked_first_counts_a_blind_retry_after_an_unknown_outcome_and_not_a_lookup():
    # given: job j1's submit got no answer and was looked up; j2's was resubmitted blind; j3 answered
    lookups = Lookups(effect=re.compile(r"^POST /jobs$"), lookup=re.compile(r"^GET /jobs\?external_id=(\w+)"),
                      body_key=re.compile(r'"external_id": "(\w+)"'))
    log = [_exchange(0, "POST", "/jobs", body='{"external_id": "j1"}', delivered=False),
           _exchange(1, "POST", "/jobs", body='{"external_id": "j2"}', delivered=False),
           _exchange(2, "GET", "/jobs?external_id=j1"),
           _exchange(3, "POST", "/jobs", body='{"external_id": "j2"}'),
           _exchange(4, "POST", "/jobs", body='{"external_id": "j3"}')]
    # when
    unknown, blind = asked_first(log, lookups)
    # then
    assert unknown == 2
    assert [e.seq for e in blind] == [1]


def test_the_record_of_a_real_exchange_tells_a_blind_resend_from_asking_first(proxy, upstream):
    # given each thing's first POST answered and then lost (the upstream committed it)
    lookups = Lookups(effect=re.compile(r"^POST /things$"), lookup=re.compile(r"^GET /things\?id=(\w+)"),
                      body_key=re.compile(r'"id":\s*"(\w+)"'))
    # when one client resends "blind" at once and another asks before resending
    for thing, ask in (("blind", False), ("careful", True)):
        proxy.set_rules([Rule(mode=Mode.LOST_RESPONSE, next=1)])
        with contextlib.suppress(httpx.TransportError):
            post(proxy, thing)
        if ask and httpx.get(f"{proxy.url}/things?id={thing}", timeout=5).status_code == 200:
            continue
        post(proxy, thing)
    # then the blind one is caught, and the upstream shows why it matters: "blind" committed twice
    unknown, blind = asked_first(proxy.exchanges(), lookups)
    assert unknown == 2
    assert [json.loads(e.body)["id"] for e in blind] == ["blind"]
    assert upstream.commits == ["blind", "blind", "careful"]
