"""schemathesis hooks for the api-fuzz check (loaded through SCHEMATHESIS_HOOKS).

- `rules_agree_with_schema`: a schema-valid request may still be refused for what a static schema cannot know (a SKU
  the catalogue does not sell, an artwork never uploaded, stock, a template's text slots, an image's content); any
  other refusal of schema-valid input means the schema admits what the rules refuse, and fails the run.
- `before_call` signs the webhooks with the API's own secrets (the same environment), so the fuzzer reaches what the
  handlers do after the signature check: a request without the signature header is sent as generated.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import unicodedata
from typing import Any

import schemathesis

from core.artwork import RefusalCode
from core.settings import Settings
from core.text import TextProblemCode

# Problem codes that depend on data, per operation; everything else the rules refuse, the schema states.
DATA_DEPENDENT = {
    "POST /v1/orders": {"unknown_sku", "out_of_stock", "artwork_unknown", "artwork_resolution_too_low",
                        "unknown_text_slot", "text_does_not_fit", *TextProblemCode},
    "POST /v1/artwork": {RefusalCode.UNSUPPORTED_FORMAT, RefusalCode.POLYGLOT, RefusalCode.TRUNCATED,
                         RefusalCode.TOO_MANY_PIXELS},
}
# The statuses the built-in positive_data_acceptance check is told to let through for the operations above; this
# check then looks inside each such refusal. 402: the payment fake declines some external ids, as a card would.
# The webhooks' bodies are their senders' (Shopify's, a partner's); the schema says what the handler reads and what it
# refuses, and a signed payload the rules refuse (no name, an unknown partner's event id) is a 422 (402: declined).
REFUSED_FOR_DATA = {"POST /v1/orders": (402, 422), "POST /v1/artwork": (422,),
                    "POST /webhooks/shopify/orders-create": (402, 422), "POST /webhooks/partners/{partner_id}": (422,)}
SETTINGS = Settings.from_env(os.environ)


@schemathesis.check
def rules_agree_with_schema(ctx, response, case) -> bool | None:
    """A schema-valid request refused with 422 names only problems that depend on data."""
    meta = case.meta
    if meta is None or not meta.generation.mode.is_positive or response.status_code != 422:
        return None
    operation = f"{case.method.upper()} {case.operation.path}"
    if operation not in DATA_DEPENDENT:
        return None
    try:
        problems = json.loads(response.content).get("errors", [])
    except (ValueError, AttributeError):
        raise AssertionError("a 422 without a problem JSON body") from None
    expressible = sorted({f"{p.get('field')} {p.get('code')}" for p in problems
                          if p.get("code") not in DATA_DEPENDENT.get(operation, set())})
    if expressible:
        raise AssertionError(f"Schema-valid input refused for a rule the schema does not state: "
                             f"{', '.join(expressible)}")
    return None


def _header(headers: dict[str, Any], name: str) -> str | None:
    """The key `headers` holds `name` under (any case), or None when the request goes without it."""
    return next((key for key in headers if key.lower() == name.lower()), None)


def _latin1(value: str) -> bool:
    try:
        value.encode("latin-1")
    except UnicodeEncodeError:
        return False
    return value.isprintable()


@schemathesis.hook
def before_call(context, case, kwargs) -> None:
    """Sign a webhook's JSON body over the bytes the transport will send (requests' `json=`: json.dumps)."""
    path = case.operation.path
    if case.method.upper() != "POST" or not path.startswith("/webhooks/") or case.media_type != "application/json":
        return
    try:
        raw = json.dumps(case.body, allow_nan=False).encode()
    except (TypeError, ValueError):
        return
    headers = case.headers if case.headers is not None else {}
    if path == "/webhooks/shopify/orders-create" and (key := _header(headers, "X-Shopify-Hmac-Sha256")):
        secret = SETTINGS.shopify_webhook_secret.encode()
        headers[key] = base64.b64encode(hmac.new(secret, raw, hashlib.sha256).digest()).decode()
    elif path == "/webhooks/carrier/easypost" and (key := _header(headers, "X-Hmac-Signature")):
        secret = unicodedata.normalize("NFKD", SETTINGS.easypost_webhook_secret).encode()
        headers[key] = "hmac-sha256-hex=" + hmac.new(secret, raw, hashlib.sha256).hexdigest()
    elif path == "/webhooks/partners/{partner_id}" and (key := _header(headers, "X-Partner-Signature")):
        partner = str((case.path_parameters or {}).get("partner_id", ""))
        secret = SETTINGS.partner_webhook_secret(partner).encode()
        headers[key] = "sha256=" + hmac.new(secret, raw, hashlib.sha256).hexdigest()
        event_id = case.body.get("event_id") if isinstance(case.body, dict) else None
        event_key = _header(headers, "X-Partner-Event-Id")
        if event_key and event_id is not None and len(str(event_id)) <= 120 and _latin1(str(event_id)):
            headers[event_key] = str(event_id)  # the header the signed body must agree with
    case.headers = headers
