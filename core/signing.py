"""Signed, expiring links to stored files (print files for partners, previews for the dashboard and e-mails)."""

from __future__ import annotations

import hashlib
import hmac
from urllib.parse import urlencode

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
