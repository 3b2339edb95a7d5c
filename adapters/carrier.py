"""EasyPost through the official client: strict verification, shipments, idempotent buys, labels, Retry-After."""

from __future__ import annotations

import logging
import random
import threading
import time
from dataclasses import replace
from decimal import ROUND_HALF_UP, Decimal
from typing import Any, Callable, TypeVar
from urllib.parse import quote

import easypost
import httpx
import redis
from easypost.errors import (
    ApiError,
    EasyPostError,
    ForbiddenError,
    GatewayTimeoutError,
    HttpError,
    InternalServerError,
    InvalidRequestError,
    JsonError,
    NotFoundError,
    PaymentError,
    RateLimitError,
    ServiceUnavailableError,
    TimeoutError,
    UnauthorizedError,
)

from adapters.partners import TOKEN_BUCKET
from core.commands import Address
from core.services.shipping import (
    CarrierRefused,
    CarrierShipment,
    CarrierUnavailable,
    FieldError,
    Parcel,
    Purchase,
    Rate,
    UnknownOutcome,
    Verification,
)

log = logging.getLogger(__name__)
T = TypeVar("T")

BUCKET_KEY = "pressroom:bucket:easypost"
PAUSE_KEY = "pressroom:carrier:easypost:paused"
# Failures that leave nothing changed at EasyPost but may clear up: a retry later is the answer.
_TRANSIENT = (TimeoutError, HttpError, JsonError, InternalServerError, ServiceUnavailableError, GatewayTimeoutError,
              UnauthorizedError, ForbiddenError, PaymentError)
# EasyPost's address fields → ours (core.commands.Address); "address" means the address as a whole.
_FIELDS = {"street1": "line1", "street2": "line2", "city": "city", "state": "region", "zip": "postal_code",
           "country": "country", "name": "name", "address": "address"}


class EasyPostCarrier:
    """The `Carrier` port on EasyPost (or the carrier sim, through `api_base`).

    One instance per process, shared by threads: calls take a token from a Redis bucket shared by every
    worker, and a 429 pauses them all for its Retry-After (read through the client's response hook, since
    the client's exceptions carry no headers).
    """

    def __init__(self, api_key: str, api_base: str, *, timeout_s: float = 10.0,
                 redis_client: redis.Redis | None = None, rate_per_s: float = 5.0, burst: int = 10,
                 max_attempts: int = 4, max_inline_wait_s: float = 10.0,
                 sleep: Callable[[float], None] = time.sleep) -> None:
        self.client = easypost.EasyPostClient(api_key, api_base=api_base, timeout=timeout_s)
        self.client.subscribe_to_response_hook(self._remember_retry_after)
        self.http = httpx.Client(timeout=timeout_s)
        self.redis = redis_client
        self.rate_per_s, self.burst = rate_per_s, burst
        self.max_attempts, self.max_inline_wait_s = max_attempts, max_inline_wait_s
        self.sleep = sleep
        self._bucket = redis_client.register_script(TOKEN_BUCKET) if redis_client is not None else None
        self._local = threading.local()  # the hook runs on the calling thread: Retry-After of *this* call

    # ---- the port ------------------------------------------------------------------------------------------

    def verify_address(self, address: Address) -> Verification:
        try:
            self._call("verify address", lambda: self.client.address.create(verify_strict=True,
                                                                             **_easypost_address(address)))
        except InvalidRequestError as refused:  # ADDRESS.VERIFY.FAILURE, with one error per field
            errors = [e for e in (refused.errors or []) if isinstance(e, dict)]
            found = tuple(FieldError(field=_FIELDS.get(str(e.get("field")), str(e.get("field") or "address")),
                                     code=str(e.get("code") or refused.code or "invalid"),
                                     message=str(e.get("message") or "")) for e in errors)
            fixes = {_FIELDS[str(e["field"])]: str(e["suggestion"]) for e in errors
                     if e.get("suggestion") and _FIELDS.get(str(e.get("field"))) not in (None, "address")}
            return Verification(ok=False, suggestion=replace(address, **fixes) if fixes else None,
                                errors=found or (FieldError(field="address", code=str(refused.code or "invalid"),
                                                            message=refused.message),))
        except EasyPostError as error:
            raise _unavailable("verify address", error) from error
        return Verification(ok=True)

    def create_shipment(self, to: Address, from_: Address, parcel: Parcel, reference: str) -> CarrierShipment:
        params = {"to_address": _easypost_address(to), "from_address": _easypost_address(from_),
                  "parcel": {"weight": parcel.weight_oz, "length": parcel.length_in, "width": parcel.width_in,
                             "height": parcel.height_in},
                  "reference": reference, "options": {"label_format": "PNG"}}
        try:
            shipment = self._call("create shipment", lambda: self.client.shipment.create(**params))
        except EasyPostError as error:
            raise _refused_or_unavailable("create shipment", error) from error
        return _shipment(shipment)

    def buy(self, shipment_id: str, rate_id: str) -> Purchase:
        try:
            bought = self._call("buy", lambda: self.client.shipment.buy(shipment_id, rate={"id": rate_id}))
        except InvalidRequestError as refused:
            if refused.code != "SHIPMENT.POSTAGE.EXISTS":
                raise CarrierRefused(f"EasyPost refused to buy {shipment_id}: {refused.code} {refused.message}",
                                     code="carrier_refused") from refused
            log.info("shipment %s was already bought; retrieving its postage", shipment_id)
            purchase = self.retrieve(shipment_id).purchase
            if purchase is None:
                raise UnknownOutcome(f"shipment {shipment_id}: postage exists but is not visible yet") from refused
            return purchase
        except (UnauthorizedError, ForbiddenError, PaymentError) as error:
            raise _unavailable("buy", error) from error  # refused as a whole: nothing was bought
        except EasyPostError as error:  # timeout, dropped connection, 5xx: maybe bought
            raise UnknownOutcome(f"buy of {shipment_id}: {type(error).__name__}: {error}") from error
        purchase = _purchase(bought)
        if purchase is None:
            raise UnknownOutcome(f"buy of {shipment_id} answered without postage")
        return purchase

    def retrieve(self, shipment_id: str) -> CarrierShipment:
        try:
            shipment = self._call("retrieve shipment", lambda: self.client.shipment.retrieve(shipment_id))
        except EasyPostError as error:
            raise _refused_or_unavailable("retrieve shipment", error) from error
        return _shipment(shipment)

    def find_by_reference(self, reference: str) -> CarrierShipment | None:
        """EasyPost takes a shipment's `reference` in place of its id; None when it has no shipment by that name."""
        try:
            shipment = self._call("find shipment by reference",
                                  lambda: self.client.shipment.retrieve(quote(reference, safe="")))
        except NotFoundError:
            return None
        except EasyPostError as error:
            raise _refused_or_unavailable("find shipment by reference", error) from error
        return _shipment(shipment)

    def fetch_label(self, url: str) -> bytes:
        try:
            response = self.http.get(url)
        except httpx.HTTPError as error:
            raise CarrierUnavailable(f"label {url[:80]}: {type(error).__name__}") from error
        if response.status_code != 200:
            raise CarrierUnavailable(f"label {url[:80]}: HTTP {response.status_code}")
        return response.content

    # ---- plumbing ------------------------------------------------------------------------------------------

    def _call(self, what: str, call: Callable[[], T]) -> T:
        """One API call under the shared rate limit; a 429 is waited out here when short, later when not."""
        for attempt in range(1, self.max_attempts + 1):
            self._take_token(what)
            self._local.retry_after = None
            try:
                return call()
            except RateLimitError:
                wait = self._local.retry_after or 1.0
                self._pause_everyone(wait)
                if wait > self.max_inline_wait_s or attempt == self.max_attempts:
                    raise CarrierUnavailable(f"EasyPost throttled {what}; retry in {wait:.0f}s",
                                             retry_after_s=wait) from None
                log.info("EasyPost throttled %s; waiting %.1fs as Retry-After asks", what, wait)
                self.sleep(wait + random.uniform(0, 0.1 * wait))
        raise AssertionError("unreachable")  # the loop returns or raises

    def _remember_retry_after(self, **response: Any) -> None:
        if response.get("http_status") == 429:
            self._local.retry_after = _seconds((response.get("headers") or {}).get("Retry-After"))

    def _pause_everyone(self, seconds: float) -> None:
        if self.redis is not None:
            self.redis.set(PAUSE_KEY, 1, px=max(1, int(seconds * 1000)))

    def _take_token(self, what: str) -> None:
        if self.redis is None or self._bucket is None:
            return
        paused_ms = self.redis.pttl(PAUSE_KEY)
        if paused_ms and paused_ms > 0:
            if paused_ms / 1000 > self.max_inline_wait_s:
                raise CarrierUnavailable(f"EasyPost asked us to pause; {what} retries later",
                                         retry_after_s=paused_ms / 1000)
            self.sleep(paused_ms / 1000)
        while True:
            wait = float(self._bucket(keys=[BUCKET_KEY], args=[self.rate_per_s, self.burst, time.time()]))
            if wait <= 0:
                return
            self.sleep(wait)


def _easypost_address(address: Address) -> dict[str, Any]:
    return {"name": address.name, "street1": address.line1, "street2": address.line2 or None,
            "city": address.city, "state": address.region or None, "zip": address.postal_code,
            "country": address.country}


def _cents(amount: Any) -> int:
    return int((Decimal(str(amount)) * 100).to_integral_value(ROUND_HALF_UP))


def _seconds(value: Any) -> float | None:
    try:
        return max(0.0, float(value))
    except (TypeError, ValueError):
        return None


def _shipment(shipment: Any) -> CarrierShipment:
    rates = tuple(Rate(id=r.id, carrier=str(r.get("carrier")), service=str(r.get("service")),
                       rate_cents=_cents(r.get("rate")), delivery_days=r.get("delivery_days"))
                  for r in shipment.get("rates") or [])
    return CarrierShipment(id=shipment.id, rates=rates, purchase=_purchase(shipment),
                           to=_our_address(shipment.get("to_address")))


def _our_address(address: Any) -> Address | None:
    """The destination as the carrier holds it, on our field names (None when the answer has none)."""
    if not address:
        return None
    return Address(name=str(address.get("name") or ""), line1=str(address.get("street1") or ""),
                   line2=str(address.get("street2") or ""), city=str(address.get("city") or ""),
                   region=str(address.get("state") or ""), postal_code=str(address.get("zip") or ""),
                   country=str(address.get("country") or ""))


def _purchase(shipment: Any) -> Purchase | None:
    label, rate = shipment.get("postage_label"), shipment.get("selected_rate")
    if label is None or rate is None or not shipment.get("tracking_code"):
        return None
    return Purchase(tracking_code=str(shipment.tracking_code), label_url=str(label.get("label_url")),
                    carrier=str(rate.get("carrier")), service=str(rate.get("service")),
                    rate_cents=_cents(rate.get("rate")))


def _unavailable(what: str, error: EasyPostError) -> CarrierUnavailable:
    status = getattr(error, "http_status", None)
    return CarrierUnavailable(f"EasyPost {what} failed: {type(error).__name__}"
                              f"{f' (HTTP {status})' if status else ''}: {error}")


def _refused_or_unavailable(what: str, error: EasyPostError) -> CarrierUnavailable | CarrierRefused:
    if isinstance(error, _TRANSIENT) or not isinstance(error, ApiError):
        return _unavailable(what, error)
    return CarrierRefused(f"EasyPost refused to {what}: {error.code or type(error).__name__} {error.message}")
