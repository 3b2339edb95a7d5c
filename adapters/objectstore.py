"""Object store adapters: the local versioned folder (embedded default), the factory, and retrieval timing."""

from __future__ import annotations

import contextlib
import logging
import os
import re
import secrets
import tempfile
import time
from collections.abc import Callable
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Any

from core.ports import ObjectStore

if TYPE_CHECKING:
    from adapters.s3store import S3Store, StorageUnavailable

__all__ = ["LocalVersionedStore", "S3Store", "StorageUnavailable", "make_object_store", "measure_retrieval"]

log = logging.getLogger(__name__)


def __getattr__(name: str) -> Any:
    """`S3Store` and `StorageUnavailable` from `adapters.s3store` on first use: boto3 is an eighth of a worker's
    boot CPU, and a process on the local folder store never needs it."""
    if name in ("S3Store", "StorageUnavailable"):
        from adapters import s3store  # noqa: PLC0415

        return getattr(s3store, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

_VERSION = re.compile(r"\d{20}-[0-9a-f]{12}")
_VERSION_FILE = re.compile(r"\.v-(\d{20}-[0-9a-f]{12})(?:\.[A-Za-z0-9]{1,10})?")
_SUFFIX = re.compile(r"\.[A-Za-z0-9]{1,10}")


def _folder_prefix(prefix: str) -> str:
    """`prefix` if it names one folder ("a/b/"); an empty or unterminated one could erase other keys too."""
    if not prefix.endswith("/") or not prefix.strip("/"):
        raise ValueError(f"prefix {prefix!r} must name a folder: non-empty and ending in '/'")
    return prefix


class LocalVersionedStore:
    """The `core.ports.ObjectStore` on a local folder, with S3-like versioning: a put never overwrites.

    Key `a/b.png` is the folder `root/a/b.png/`; each version is an immutable file in it named
    `.v-<ns>-<random>.png`, written to a temporary file and renamed into place, so readers never see half a
    file and several processes may put the same key at once. The nanosecond prefix orders versions; the random
    part keeps two puts in the same nanosecond apart. Key segments may not start with a dot, so a key never
    collides with those files. `url()` gives a `file://` URI of one version file, which does not expire.
    """

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root).resolve()
        self.root.mkdir(parents=True, exist_ok=True)

    def put(self, key: str, data: bytes, *, content_type: str = "application/octet-stream") -> str:
        """Store `data` as the newest version of `key`; returns its version id.

        The content type is not kept: the version file carries the key's extension, which is what a browser
        opening the `file://` URL goes by.
        """
        folder = self._folder(key)
        for attempt in range(3):
            folder.mkdir(parents=True, exist_ok=True)
            try:
                version = self._next_version(folder)
                handle, temporary = tempfile.mkstemp(dir=folder, prefix=".tmp-")
                break
            except FileNotFoundError:  # an erasure pruned the empty folder between mkdir and here
                if attempt == 2:
                    raise
        try:
            with os.fdopen(handle, "wb") as out:
                out.write(data)
                out.flush()
                os.fsync(out.fileno())
            os.replace(temporary, self._file(key, version))
        except BaseException:
            Path(temporary).unlink(missing_ok=True)
            raise
        return version

    def get(self, key: str, *, version: str | None = None) -> bytes:
        """The newest (or the given) version's bytes.

        Raises:
            KeyError: no such key, or no such version of it.
        """
        try:
            return self._existing_file(key, version).read_bytes()
        except FileNotFoundError as erased:  # erased between finding and reading it
            raise KeyError(key) from erased

    def exists(self, key: str) -> bool:
        """True while at least one version of `key` is stored."""
        return bool(self.versions(key))

    def versions(self, key: str) -> list[str]:
        """Every version id of `key`, oldest first; empty when the key is absent."""
        try:
            names = [entry.name for entry in os.scandir(self._folder(key)) if entry.is_file()]
        except (FileNotFoundError, NotADirectoryError):
            return []
        return sorted(match[1] for match in map(_VERSION_FILE.fullmatch, names) if match)

    def url(self, key: str, *, expires_s: int = 900, version: str | None = None) -> str:
        """A `file://` URI of the newest (or given) version file; `expires_s` is ignored: files don't expire.

        Raises:
            KeyError: no such key, or no such version of it.
        """
        return self._existing_file(key, version).as_uri()

    def delete_all_versions(self, key: str) -> int:
        """Erase every version of `key` and the folders it leaves empty; returns how many versions went."""
        removed = 0
        for version in self.versions(key):
            try:
                self._file(key, version).unlink()
                removed += 1
            except FileNotFoundError:  # another process erased it first
                pass
        self._prune(self._folder(key))
        log.info("erased %s version(s) of %s", removed, key)
        return removed

    def delete_prefix(self, prefix: str) -> int:
        """Erase every version of every key under the folder `prefix` (ending in "/") and the folders it leaves
        empty; returns how many versions went. A put racing with it may survive: run it again if that matters.

        Raises:
            ValueError: `prefix` is empty, does not end in "/", or is unsafe (as a key would be).
        """
        folder = self._folder(_folder_prefix(prefix).removesuffix("/"))
        removed = 0
        for where, _, names in os.walk(folder, topdown=False):  # symlinks are not followed
            for name in names if where != str(folder) else ():  # those are the versions of key `a/b`, not under it
                if _VERSION_FILE.fullmatch(name):
                    try:
                        os.unlink(os.path.join(where, name))
                        removed += 1
                    except FileNotFoundError:  # another process erased it first
                        pass
            with contextlib.suppress(OSError):  # a put is landing a version here, or it is already gone
                os.rmdir(where)
        self._prune(folder.parent)
        log.info("erased %s version(s) under %s", removed, prefix)
        return removed

    def _folder(self, key: str) -> Path:
        """The folder of `key`, refusing anything that could leave the root or collide with version files.

        Raises:
            ValueError: an empty, absolute or backslashed key, an empty or dot-leading segment (`..`), NUL.
        """
        parts = key.split("/")
        if "\\" in key or "\0" in key or any(not part or part.startswith(".") for part in parts):
            raise ValueError(f"unsafe object key {key!r}: use relative segments that don't start with a dot")
        folder = self.root.joinpath(*parts)
        if not folder.resolve().is_relative_to(self.root):  # a symlink planted inside the root
            raise ValueError(f"unsafe object key {key!r}: it resolves outside the store")
        return folder

    def _file(self, key: str, version: str) -> Path:
        suffix = PurePosixPath(key).suffix
        return self._folder(key) / f".v-{version}{suffix if _SUFFIX.fullmatch(suffix) else ''}"

    def _existing_file(self, key: str, version: str | None) -> Path:
        if version is None:
            known = self.versions(key)
            if not known:
                raise KeyError(key)
            version = known[-1]
        elif not _VERSION.fullmatch(version):
            raise KeyError(key)  # also keeps a crafted version id from naming another path
        path = self._file(key, version)
        if not path.is_file():
            raise KeyError(key)
        return path

    @staticmethod
    def _next_version(folder: Path) -> str:
        """A fresh id after every stored one, even if the wall clock stepped back since the last put."""
        newest = max((int(m[1][:20]) for entry in os.scandir(folder)
                      if (m := _VERSION_FILE.fullmatch(entry.name))), default=0)
        return f"{max(time.time_ns(), newest + 1):020d}-{secrets.token_hex(6)}"

    def _prune(self, folder: Path) -> None:
        while folder != self.root and folder.is_relative_to(self.root):
            try:
                folder.rmdir()
            except OSError:  # not empty (other keys or versions live below), or already gone
                return
            folder = folder.parent


def make_object_store(settings: Any) -> ObjectStore:
    """The S3 store when `settings.s3_bucket` is set, else the local folder at `settings.object_store_dir`.

    Reads `s3_endpoint_url`, `s3_region`, `s3_access_key` and `s3_secret_key` when present (boto3's usual
    credential chain otherwise). Does not call `ensure_bucket()`: that is a deploy step with wider rights.
    """
    bucket = getattr(settings, "s3_bucket", None)
    if bucket:
        from adapters.s3store import S3Store  # noqa: PLC0415 - boto3 only for a bucket (see __getattr__)

        return S3Store(bucket, endpoint_url=getattr(settings, "s3_endpoint_url", None) or None,
                       region=getattr(settings, "s3_region", None) or "us-east-1",
                       access_key=getattr(settings, "s3_access_key", None) or None,
                       secret_key=getattr(settings, "s3_secret_key", None) or None)
    return LocalVersionedStore(getattr(settings, "object_store_dir", None) or "var/objects")


def measure_retrieval(store: ObjectStore, key: str, *, clock: Callable[[], float]) -> float:
    """Seconds one full read of the current version of `key` takes (the guide's target: under 0.2 s).

    Args:
        clock: a monotonic clock in seconds, e.g. `time.perf_counter`.

    Raises:
        KeyError: the key is absent.
        StorageUnavailable: the store did not answer.
    """
    started = clock()
    store.get(key)
    return clock() - started
