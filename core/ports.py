"""Ports: what the domain needs from the outside world, as Protocols; adapters and db implement them."""

from __future__ import annotations

from typing import Protocol

from core.commands import StageCommand


class Payments(Protocol):
    """Card authorisations. Both calls are idempotent on their key/id."""

    def authorize(self, *, amount_cents: int, currency: str, idempotency_key: str) -> str:
        """Returns the authorisation id. Raises PaymentDeclined."""

    def void(self, authorization_id: str) -> None: ...


class MessageBus(Protocol):
    """Sends stage commands to their queues; called only after a commit."""

    def send(self, command: StageCommand) -> None: ...


class Ids(Protocol):
    """Identifiers: sortable ids and human order numbers (randomness stays outside core)."""

    def new(self, prefix: str) -> str: ...

    def order_number(self) -> str: ...


class ObjectStore(Protocol):
    """Versioned blobs by key (print files, previews, labels): a put never destroys an older version.

    Adapters: `adapters.objectstore.LocalVersionedStore` (embedded default) and `adapters.s3store.S3Store`;
    both pass `tests/contract/test_object_store_contract.py`. Transient outages raise `StorageUnavailable`.
    """

    def put(self, key: str, data: bytes, *, content_type: str) -> str:
        """Store `data` as the newest version of `key`; returns its version id."""

    def get(self, key: str, *, version: str | None = None) -> bytes:
        """The newest (or the given) version's bytes.

        Raises:
            KeyError: no such key, or no such version of it.
        """

    def exists(self, key: str) -> bool:
        """True while at least one version of `key` is stored."""

    def versions(self, key: str) -> list[str]:
        """Every version id of `key`, oldest first; empty when the key is absent."""

    def url(self, key: str, *, expires_s: int = 900, version: str | None = None) -> str:
        """A URL a browser on this machine can GET: a presigned HTTP URL, or a `file://` URI for a folder.

        A `file://` URI pins the version that was newest when it was made and never expires; a presigned URL
        expires after `expires_s` and may be made without checking that the key exists.
        """

    def delete_all_versions(self, key: str) -> int:
        """Erase every version of `key` (erasure requests); returns how many versions were removed."""

    def delete_prefix(self, prefix: str) -> int:
        """Erase every version of every key under the folder `prefix` (non-empty, ending in "/"); returns how
        many versions were removed. Keys that merely start with the same letters (`a/bc` for `a/b/`) stay.

        Raises:
            ValueError: `prefix` is empty or does not end in "/" (it would name more than one folder).
        """
