"""Signed, expiring links: stored files (print files for partners, previews) and customers' order pages."""

from __future__ import annotations

import base64
import hashlib
import hmac
from enum import StrEnum
from urllib.parse import quote, urlencode

ASSET_FILES = {"print.png": "image/png", "print.pdf": "application/pdf", "preview": "image/jpeg"}


def asset_signature(secret: str, asset_id: str, file: str, expires: int) -> str:
    message = f"{asset_id}/{file}:{expires}".encode()
    return hmac.new(secret.encode(), message, hashlib.sha256).hexdigest()


def signed_asset_path(secret: str, asset_id: str, file: str, *, expires: int) -> str:
    """`/v1/assets/{id}/{file}?expires=…&sig=…` — valid until `expires` (unix seconds)."""
    query = urlencode({"expires": expires, "sig": asset_signature(secret, asset_id, file, expires)})
    return f"/v1/assets/{asset_id}/{file}?{query}"


def verify_asset_signature(secret: str, asset_id: str, file: str, *, expires: int, sig: str, now: float) -> bool:
    """True when the signature matches and the link has not expired (constant-time comparison)."""
    if expires < now:
        return False
    return hmac.compare_digest(asset_signature(secret, asset_id, file, expires), sig)


# ---- customers' self-service links -----------------------------------------------------------------------------

CUSTOMER_LINK_PATH = "/orders/{order_id}"
"""Where a customer's signed link opens the order's self-service page (served by api/selfservice.py)."""


class LinkCheck(StrEnum):
    """What a customer's token turned out to be; only `valid` opens the page."""

    VALID = "valid"
    EXPIRED = "expired"  # signed by us, but older than its lifetime
    INVALID = "invalid"  # not signed by us for this order: tampered, truncated or for another order


def customer_signature(secret: str, order_id: str, expires: int) -> str:
    """HMAC-SHA256 of the order id and expiry, URL-safe base64 without padding (43 characters)."""
    digest = hmac.new(secret.encode(), f"customer:{order_id}:{expires}".encode(), hashlib.sha256).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


def customer_token(secret: str, order_id: str, *, expires: int) -> str:
    """`<expires>.<signature>`: opens one order's page, and its forms, until `expires` (unix seconds)."""
    return f"{expires}.{customer_signature(secret, order_id, expires)}"


def signed_customer_path(secret: str, order_id: str, *, expires: int) -> str:
    """`/orders/{id}?t=<token>` — the link every customer e-mail carries."""
    query = urlencode({"t": customer_token(secret, order_id, expires=expires)})
    return CUSTOMER_LINK_PATH.format(order_id=quote(order_id, safe="")) + f"?{query}"


def check_customer_token(secret: str, order_id: str, token: str, *, now: float) -> LinkCheck:
    """Whether `token` opens `order_id`'s page at `now`: the signature first (constant time), then the expiry,
    so an edited expiry reads as tampered, not as expired."""
    expires_text, _, signature = (token or "").partition(".")
    if not expires_text.isdigit() or len(expires_text) > 12 or not signature or len(signature) > 64 \
            or expires_text != str(int(expires_text)):  # one spelling per expiry: no leading zeros
        return LinkCheck.INVALID
    expires = int(expires_text)
    if not hmac.compare_digest(customer_signature(secret, order_id, expires), signature):
        return LinkCheck.INVALID
    return LinkCheck.VALID if now <= expires else LinkCheck.EXPIRED
