"""Fault proxy: an HTTP-aware TCP proxy on loopback that gives a client the network faults a partner or a carrier
really has — latency, a reset, a blackhole, a response lost after the far side committed.

Put it between an adapter and a sim (`PARTNER_API_BASE=http://127.0.0.1:<proxy port>`) and turn the faults on
and off while traffic flows, from Python (`proxy.set_rules([...])`) or over HTTP on the proxy's own port
(`POST /__proxy/rules`). Every request is recorded in arrival order with the fault it got, so a test can tell
which outcomes the client could not know and what the client asked next.

Modes, each fired for the "next N" matching requests and/or with a probability:
  latency        wait `latency_ms`, then forward (a client that timed out meanwhile still gets its request
                 delivered late, as a slow network would)
  reset          read the request, forward nothing, close the client's connection with a TCP RST
  blackhole      read the request, forward nothing, never answer (hold until the client hangs up, then RST)
  lost_response  forward the request, let the upstream answer (it has committed), then RST the client instead

Run: python -m sims.faultproxy --upstream http://127.0.0.1:8200 --port 8210
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import random
import re
import socket
import struct
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any
from urllib.parse import urlsplit

log = logging.getLogger(__name__)

CONTROL_PREFIX = "/__proxy/"
MAX_HEAD = 64 * 1024
BODY_EXCERPT = 4096  # bytes of each request body kept in the record (enough for an id or an external id)


class Mode(StrEnum):
    LATENCY = "latency"
    RESET = "reset"
    BLACKHOLE = "blackhole"
    LOST_RESPONSE = "lost_response"


UNKNOWN_OUTCOME = frozenset({Mode.RESET, Mode.BLACKHOLE, Mode.LOST_RESPONSE})
"""Faults after which the client cannot know whether the far side acted (a reset may come before or after)."""


@dataclass(slots=True, kw_only=True)
class Rule:
    """One fault: fires for the next `next` requests matching `match`, then for each with `probability`.

    `match` is a regular expression searched in "METHOD /path?query" (empty: every request).
    """

    mode: Mode
    next: int = 0
    probability: float = 0.0
    match: str = ""
    latency_ms: float = 0.0
    fired: int = 0

    def __post_init__(self) -> None:
        self.mode = Mode(self.mode)
        if self.next < 0 or not 0.0 <= self.probability <= 1.0 or self.latency_ms < 0:
            raise ValueError(f"rule {self.mode}: next >= 0, 0 <= probability <= 1 and latency_ms >= 0")
        re.compile(self.match)

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Rule:
        known = {"mode", "next", "probability", "match", "latency_ms"}
        unknown = set(data) - known
        if unknown:
            raise ValueError(f"unknown rule fields: {sorted(unknown)}")
        return cls(mode=Mode(data["mode"]), next=int(data.get("next", 0)),
                   probability=float(data.get("probability", 0.0)), match=str(data.get("match", "")),
                   latency_ms=float(data.get("latency_ms", 0.0)))

    def to_json(self) -> dict[str, Any]:
        return {"mode": self.mode.value, "next": self.next, "probability": self.probability, "match": self.match,
                "latency_ms": self.latency_ms, "fired": self.fired}

    def matches(self, line: str) -> bool:
        return not self.match or re.search(self.match, line) is not None


@dataclass(slots=True, kw_only=True)
class Exchange:
    """One request as the proxy saw it: arrival order, what it was, the fault it got, what came of it."""

    seq: int
    at: float  # time.monotonic() on arrival
    method: str
    target: str  # path?query
    body: str  # the first BODY_EXCERPT bytes, decoded leniently
    fault: str = ""  # a Mode value, or "" when passed through untouched
    upstream_status: int | None = None  # None: never forwarded, or the upstream did not answer
    delivered: bool = False  # the client received the upstream's answer

    @property
    def unknown_outcome(self) -> bool:
        """The client got no answer, so it cannot know whether the upstream acted."""
        return not self.delivered

    def to_json(self) -> dict[str, Any]:
        return {"seq": self.seq, "at": self.at, "method": self.method, "target": self.target, "body": self.body,
                "fault": self.fault, "upstream_status": self.upstream_status, "delivered": self.delivered}


class _Request:
    __slots__ = ("method", "target", "version", "headers", "body")

    def __init__(self, method: str, target: str, version: str, headers: list[tuple[str, str]], body: bytes) -> None:
        self.method, self.target, self.version, self.headers, self.body = method, target, version, headers, body

    def header(self, name: str) -> str | None:
        return next((v for k, v in self.headers if k.lower() == name), None)


class FaultProxy:
    """The proxy in a background thread: `with FaultProxy("http://127.0.0.1:8200") as proxy: …`.

    Args:
        upstream: where requests go ("http://host:port"; a path is ignored).
        seed: the random draws of probability rules, reproducible.
        blackhole_hold_s: the longest a blackholed connection is held before it is reset.
        upstream_timeout_s: how long the upstream may take to answer a forwarded request.
    """

    def __init__(self, upstream: str, *, host: str = "127.0.0.1", port: int = 0, seed: int = 0,
                 blackhole_hold_s: float = 120.0, upstream_timeout_s: float = 60.0) -> None:
        parts = urlsplit(upstream)
        if parts.scheme != "http" or not parts.hostname or not parts.port:
            raise ValueError(f"upstream must be http://host:port, not {upstream!r}")
        self.upstream_host, self.upstream_port = parts.hostname, parts.port
        self.host, self.port = host, port or _free_port(host)
        self.url = f"http://{host}:{self.port}"
        self.blackhole_hold_s, self.upstream_timeout_s = blackhole_hold_s, upstream_timeout_s
        self._rng = random.Random(seed)
        self._lock = threading.Lock()
        self._rules: list[Rule] = []
        self._log: list[Exchange] = []
        self._loop: asyncio.AbstractEventLoop | None = None
        self._server: asyncio.AbstractServer | None = None
        self._thread: threading.Thread | None = None
        self._started = threading.Event()
        self._stopping: asyncio.Event | None = None
        self._clients: set[asyncio.Task] = set()

    # ---- the Python API ----------------------------------------------------------------------------------

    def set_rules(self, rules: Iterable[Rule | Mapping[str, Any]]) -> None:
        """Replace every rule (first match wins, in order); `[]` lets everything through."""
        parsed = [r if isinstance(r, Rule) else Rule.from_json(r) for r in rules]
        with self._lock:
            self._rules = parsed

    def add_rule(self, rule: Rule | Mapping[str, Any]) -> None:
        parsed = rule if isinstance(rule, Rule) else Rule.from_json(rule)
        with self._lock:
            self._rules.append(parsed)

    def rules(self) -> list[dict[str, Any]]:
        with self._lock:
            return [r.to_json() for r in self._rules]

    def exchanges(self) -> list[Exchange]:
        """Every request so far, in arrival order (copies)."""
        with self._lock:
            return [Exchange(**{k: getattr(e, k) for k in Exchange.__slots__}) for e in self._log]

    def ledger(self) -> dict[str, Any]:
        """Counts: requests seen, faults injected per mode, answers that never reached the client."""
        with self._lock:
            faults = Counter(e.fault for e in self._log if e.fault)
            return {"requests": len(self._log), "faults": dict(faults),
                    "unknown_outcomes": sum(1 for e in self._log if e.fault and e.unknown_outcome),
                    "forwarded": sum(1 for e in self._log if e.upstream_status is not None),
                    "rules": [r.to_json() for r in self._rules]}

    def clear(self) -> None:
        """Drop every rule and forget every request."""
        with self._lock:
            self._rules, self._log = [], []

    # ---- running -----------------------------------------------------------------------------------------

    def __enter__(self) -> FaultProxy:
        self._thread = threading.Thread(target=self._run, name=f"fault-proxy-{self.port}", daemon=True)
        self._thread.start()
        if not self._started.wait(10) or self._server is None:
            raise RuntimeError(f"fault proxy did not start on {self.url}")
        return self

    def __exit__(self, *exc_info: object) -> None:
        if self._loop is not None and self._stopping is not None:
            self._loop.call_soon_threadsafe(self._stopping.set)
        if self._thread is not None:
            self._thread.join(timeout=10)

    def _run(self) -> None:
        asyncio.run(self._main())

    async def _main(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stopping = asyncio.Event()
        try:
            self._server = await asyncio.start_server(self._accept, self.host, self.port, limit=MAX_HEAD)
        finally:
            self._started.set()
        async with self._server:
            await self._stopping.wait()
            self._server.close()
            for task in list(self._clients):
                task.cancel()
            await asyncio.gather(*self._clients, return_exceptions=True)

    async def serve_forever(self) -> None:
        """Run in the caller's event loop until cancelled (the command line)."""
        await self._main()

    # ---- one client connection ---------------------------------------------------------------------------

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._clients.add(task)
        try:
            await self._serve_client(reader, writer)
        except (ConnectionError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, ValueError) as error:
            log.debug("client connection ended: %s", error)
            writer.transport.abort()
        except asyncio.CancelledError:
            writer.transport.abort()
        finally:
            self._clients.discard(task)
            if not writer.transport.is_closing():
                writer.close()

    async def _serve_client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while True:
            request = await _read_request(reader)
            if request is None:
                return
            if request.target.startswith(CONTROL_PREFIX):
                writer.write(self._control(request))
                await writer.drain()
                continue
            exchange, rule = self._admit(request)
            if rule is not None and rule.mode is Mode.LATENCY:
                await asyncio.sleep(rule.latency_ms / 1000)
            if rule is not None and rule.mode is Mode.RESET:
                _reset(writer)
                return
            if rule is not None and rule.mode is Mode.BLACKHOLE:
                with contextlib.suppress(TimeoutError, ConnectionError):
                    await asyncio.wait_for(reader.read(), self.blackhole_hold_s)  # until the client hangs up
                _reset(writer)
                return
            status, response = await self._forward(request)
            with self._lock:
                exchange.upstream_status = status
            if rule is not None and rule.mode is Mode.LOST_RESPONSE:
                _reset(writer)
                return
            if reader.at_eof():  # the client hung up meanwhile (timed out during a latency): nobody to answer
                return
            with self._lock:  # handed to the client's socket: a client that is still there has its answer
                exchange.delivered = True
            writer.write(response)
            await writer.drain()
            return  # the upstream was asked to close: so is the client (the response says "connection: close")

    def _admit(self, request: _Request) -> tuple[Exchange, Rule | None]:
        """Record the request and pick its fault: the first rule that fires, in order."""
        line = f"{request.method} {request.target}"
        with self._lock:
            chosen = None
            for rule in self._rules:
                if not rule.matches(line):
                    continue
                if rule.next > 0:
                    rule.next -= 1
                    chosen = rule
                elif rule.probability and self._rng.random() < rule.probability:
                    chosen = rule
                if chosen is not None:
                    chosen.fired += 1
                    break
            exchange = Exchange(seq=len(self._log), at=time.monotonic(), method=request.method,
                                target=request.target, body=request.body[:BODY_EXCERPT].decode("utf-8", "replace"),
                                fault=chosen.mode.value if chosen else "")
            self._log.append(exchange)
        if chosen is not None:
            log.info("fault %s on %s", chosen.mode, line[:200])
        return exchange, chosen

    async def _forward(self, request: _Request) -> tuple[int | None, bytes]:
        """The request to the upstream on a fresh connection ("Connection: close"); its whole raw answer."""
        try:
            upstream_reader, upstream_writer = await asyncio.wait_for(
                asyncio.open_connection(self.upstream_host, self.upstream_port), self.upstream_timeout_s)
        except (TimeoutError, OSError) as error:
            return None, _plain(502, f"fault proxy: upstream unreachable ({type(error).__name__})")
        try:
            headers = [(k, v) for k, v in request.headers if k.lower() not in ("connection", "keep-alive")]
            head = f"{request.method} {request.target} {request.version}\r\n" + "".join(
                f"{k}: {v}\r\n" for k, v in headers) + "Connection: close\r\n\r\n"
            upstream_writer.write(head.encode("latin-1") + request.body)
            await upstream_writer.drain()
            response = await asyncio.wait_for(upstream_reader.read(), self.upstream_timeout_s)
        except (TimeoutError, OSError) as error:
            return None, _plain(502, f"fault proxy: upstream failed ({type(error).__name__})")
        finally:
            upstream_writer.close()
        status_line = response.split(b"\r\n", 1)[0].split()
        status = int(status_line[1]) if len(status_line) > 1 and status_line[1].isdigit() else None
        return status, response

    # ---- the control endpoint ----------------------------------------------------------------------------

    def _control(self, request: _Request) -> bytes:
        """GET /__proxy/rules, POST /__proxy/rules {"rules": [...], "append": false}, GET /__proxy/ledger
        (?exchanges=1 adds every request), POST /__proxy/clear."""
        path, _, query = request.target.partition("?")
        name = path[len(CONTROL_PREFIX):].strip("/")
        try:
            if name == "rules" and request.method == "GET":
                return _json(200, {"rules": self.rules()})
            if name == "rules" and request.method == "POST":
                body = json.loads(request.body or b"{}")
                rules = [Rule.from_json(r) for r in body.get("rules", [])]
                if body.get("append"):
                    for rule in rules:
                        self.add_rule(rule)
                else:
                    self.set_rules(rules)
                return _json(200, {"rules": self.rules()})
            if name == "ledger" and request.method == "GET":
                data = self.ledger()
                if "exchanges=1" in query:
                    data["exchanges"] = [e.to_json() for e in self.exchanges()]
                return _json(200, data)
            if name == "clear" and request.method == "POST":
                self.clear()
                return _json(200, {"rules": []})
        except (ValueError, KeyError, TypeError) as error:  # json.JSONDecodeError is a ValueError
            return _json(400, {"error": f"{type(error).__name__}: {error}"})
        return _json(404, {"error": f"no control endpoint {request.method} {path}"})


# ---- HTTP/1.1 framing, just enough ---------------------------------------------------------------------------


async def _read_request(reader: asyncio.StreamReader) -> _Request | None:
    """One request (head and body, Content-Length or chunked); None when the client closed between requests."""
    try:
        head = await reader.readuntil(b"\r\n\r\n")
    except asyncio.IncompleteReadError as partial:
        if partial.partial.strip():
            raise ValueError("connection closed mid-request") from None
        return None
    lines = head.decode("latin-1").split("\r\n")
    method, target, version = lines[0].split(" ", 2)
    headers = []
    for line in lines[1:]:
        if line:
            name, _, value = line.partition(":")
            headers.append((name.strip(), value.strip()))
    request = _Request(method, target, version, headers, b"")
    if (request.header("transfer-encoding") or "").lower() == "chunked":
        request.body = await _read_chunked(reader)
    else:
        length = int(request.header("content-length") or 0)
        request.body = await reader.readexactly(length) if length else b""
    return request


async def _read_chunked(reader: asyncio.StreamReader) -> bytes:
    """A chunked body, kept in its chunked form (the Transfer-Encoding header is forwarded with it)."""
    raw = b""
    while True:
        size_line = await reader.readuntil(b"\r\n")
        raw += size_line
        size = int(size_line.split(b";")[0].strip(), 16)
        if size == 0:
            while True:  # trailers, then the empty line
                trailer = await reader.readuntil(b"\r\n")
                raw += trailer
                if trailer == b"\r\n":
                    return raw
        raw += await reader.readexactly(size + 2)


def _reset(writer: asyncio.StreamWriter) -> None:
    """Close with a TCP RST (SO_LINGER 0), not a FIN: what a client sees when a middlebox or the far side drops."""
    sock = writer.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    writer.transport.abort()


def _json(status: int, data: Any) -> bytes:
    body = json.dumps(data).encode()
    reason = {200: "OK", 400: "Bad Request", 404: "Not Found"}.get(status, "OK")
    return (f"HTTP/1.1 {status} {reason}\r\nContent-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
            .encode() + body)


def _plain(status: int, text: str) -> bytes:
    body = text.encode()
    return (f"HTTP/1.1 {status} Bad Gateway\r\nContent-Type: text/plain\r\nContent-Length: {len(body)}\r\n"
            f"Connection: close\r\n\r\n").encode() + body


def _free_port(host: str) -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


# ---- reading the record ------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class Lookups:
    """Which requests act on a resource and which only ask about it, for `asked_first`."""

    effect: re.Pattern[str]  # "METHOD target" of a call with an effect; group 1 (or the body's key) names it
    lookup: re.Pattern[str]  # "METHOD target" of a read that asks about it; group 1 names it
    body_key: re.Pattern[str] | None = None  # when the effect's target does not name it: searched in the body


def asked_first(exchanges: Sequence[Exchange], lookups: Lookups, *, fault: str | None = None,
                ) -> tuple[int, list[Exchange]]:
    """Effectful requests whose outcome the client could not know, and of those the ones whose next request
    about the same resource was NOT a lookup (a blind retry). A resource never touched again counts as asked
    (nothing was retried blindly). `fault` counts only the requests that got that fault ("" for none).

    Returns:
        (unknown outcomes, blind retries)
    """
    def key_of(exchange: Exchange) -> tuple[str, str] | None:
        line = f"{exchange.method} {exchange.target}"
        if m := lookups.lookup.search(line):
            return "lookup", m.group(1)
        if m := lookups.effect.search(line):
            if m.groups() and m.group(1):
                return "effect", m.group(1)
            if lookups.body_key is not None and (b := lookups.body_key.search(exchange.body)):
                return "effect", b.group(1)
        return None

    keyed = [(e, key_of(e)) for e in exchanges]
    unknown, blind = 0, []
    for n, (exchange, kind_key) in enumerate(keyed):
        if kind_key is None or kind_key[0] != "effect" or not exchange.unknown_outcome:
            continue
        if fault is not None and exchange.fault != fault:
            continue
        unknown += 1
        following = next((k for _, k in keyed[n + 1:] if k is not None and k[1] == kind_key[1]), None)
        if following is not None and following[0] != "lookup":
            blind.append(exchange)
    return unknown, blind


# ---- the command line ----------------------------------------------------------------------------------------


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m sims.faultproxy", description=__doc__.splitlines()[0])
    parser.add_argument("--upstream", required=True, help="http://host:port of the sim behind the proxy")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8210)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--rule", action="append", default=[], type=json.loads,
                        help='a starting rule as JSON, e.g. \'{"mode": "reset", "probability": 0.1}\' (repeatable)')
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s fault-proxy %(message)s")
    proxy = FaultProxy(args.upstream, host=args.host, port=args.port, seed=args.seed)
    proxy.set_rules(args.rule)
    log.info("fault proxy on %s → %s; control on %srules", proxy.url, args.upstream, CONTROL_PREFIX)
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(proxy.serve_forever())
    return 0


if __name__ == "__main__":
    sys.exit(main())
