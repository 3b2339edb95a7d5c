"""Prepared values kept in the object store, so a worker process started seconds ago reads what another prepared.

A QA worker prepares a design's print file (decode 4500x5400, reduce, flatten) before its first inspection of
that design: seconds on a loaded machine, longer than a worker lives when one is SIGKILLed every 2 s. Kept only
in the process, that work died with it and the next process began again. Here it is written once to the object
store and read back by any process, as a numpy `.npz` (no pickle) encoded generically over the frozen
dataclass's fields, so fields added to `core.qa.PreparedReference` need no change here.

Fail safe: an entry that cannot be read back as the class is now (corrupt, another format, fields added or
renamed, the preparing module changed) is a miss, so the caller prepares again and overwrites it; a store that
fails to answer or to take a write costs the cache, never the inspection.
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import json
import logging
import re
import sys
import time
from collections.abc import Callable
from functools import cache
from pathlib import Path
from typing import Any, Generic, TypeVar

import numpy as np

from core.ports import ObjectStore

log = logging.getLogger(__name__)

T = TypeVar("T")

FORMAT = 1
"""Bumped when the encoding itself changes; part of every key, so an old entry is never even read."""


class Unserialisable(TypeError):
    """A value holds something other than dataclasses, numpy arrays, numbers, strings, tuples, lists or dicts."""


class Unreadable(ValueError):
    """Stored bytes that are not an encoding of the class as it is now (corrupt, old format, fields changed)."""


# ---- encoding ---------------------------------------------------------------------------------------------------


def encode(value: Any) -> bytes:
    """`value` (a dataclass instance) as `.npz` bytes: its arrays as members, everything else in a JSON manifest.

    Raises:
        Unserialisable: a field holds an object array or a type this encoding does not know.
    """
    if not dataclasses.is_dataclass(value) or isinstance(value, type):
        raise Unserialisable(f"only dataclass instances are encoded, not {type(value).__name__}")
    arrays: dict[str, np.ndarray] = {}
    manifest = json.dumps({"format": FORMAT, "root": _encode(value, arrays, "root")})
    out = io.BytesIO()
    np.savez(out, __manifest__=np.array(manifest), **arrays)
    return out.getvalue()


def _encode(value: Any, arrays: dict[str, np.ndarray], path: str) -> dict:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        cls = type(value)
        return {"class": f"{cls.__module__}:{cls.__qualname__}",
                "fields": {f.name: _encode(getattr(value, f.name), arrays, f"{path}.{f.name}")
                           for f in dataclasses.fields(value) if f.init}}
    if isinstance(value, np.ndarray):
        if value.dtype.hasobject:
            raise Unserialisable(f"{path}: an object array cannot be stored without pickle")
        name = f"a{len(arrays)}"
        arrays[name] = value
        return {"array": name}
    if isinstance(value, np.generic):
        if value.dtype.hasobject:
            raise Unserialisable(f"{path}: an object scalar")
        return {"scalar": value.item(), "dtype": value.dtype.str}
    if value is None or isinstance(value, bool | int | float | str):
        return {"value": value}
    if isinstance(value, tuple | list):
        return {type(value).__name__: [_encode(item, arrays, f"{path}[{n}]") for n, item in enumerate(value)]}
    if isinstance(value, dict) and all(isinstance(k, str) for k in value):
        return {"dict": {k: _encode(v, arrays, f"{path}.{k}") for k, v in value.items()}}
    raise Unserialisable(f"{path}: cannot store a {type(value).__name__}")


# ---- decoding ---------------------------------------------------------------------------------------------------


def decode(cls: type[T], data: bytes) -> T:
    """The `cls` instance that `encode` stored in `data`.

    Raises:
        Unreadable: not an `.npz` of this format, or not a `cls` with exactly the fields `cls` has now.
    """
    try:
        with np.load(io.BytesIO(data), allow_pickle=False) as npz:
            manifest = json.loads(str(npz["__manifest__"][()]))
            if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
                raise Unreadable(f"format {manifest.get('format') if isinstance(manifest, dict) else '?'}, "
                                 f"not {FORMAT}")
            value = _decode(manifest["root"], npz, "root")
    except Unreadable:
        raise
    except Exception as error:  # noqa: BLE001 - whatever the bytes are, an unreadable entry is a miss
        raise Unreadable(f"{type(error).__name__}: {error}") from error
    if type(value) is not cls:
        raise Unreadable(f"a {type(value).__qualname__}, not a {cls.__qualname__}")
    return value


def _decode(node: dict, npz, path: str) -> Any:
    if "class" in node:
        cls = _dataclass(node["class"], path)
        expected = {f.name for f in dataclasses.fields(cls) if f.init}
        if set(node["fields"]) != expected:
            raise Unreadable(f"{path}: stored fields {sorted(node['fields'])}, the class has {sorted(expected)}")
        return cls(**{name: _decode(child, npz, f"{path}.{name}") for name, child in node["fields"].items()})
    if "array" in node:
        return npz[node["array"]]
    if "scalar" in node:
        return np.dtype(node["dtype"]).type(node["scalar"])
    if "value" in node:
        return node["value"]
    if "tuple" in node:
        return tuple(_decode(item, npz, f"{path}[{n}]") for n, item in enumerate(node["tuple"]))
    if "list" in node:
        return [_decode(item, npz, f"{path}[{n}]") for n, item in enumerate(node["list"])]
    if "dict" in node:
        return {k: _decode(v, npz, f"{path}.{k}") for k, v in node["dict"].items()}
    raise Unreadable(f"{path}: unknown node {sorted(node)}")


def _dataclass(name: str, path: str) -> type:
    """The dataclass `module:qualname`, from a module this process has already imported (never an import)."""
    module_name, _, qualname = name.partition(":")
    found: Any = sys.modules.get(module_name)
    for part in qualname.split("."):
        found = getattr(found, part, None)
    if not isinstance(found, type) or not dataclasses.is_dataclass(found):
        raise Unreadable(f"{path}: {name} is not a dataclass of this process")
    return found


# ---- the store --------------------------------------------------------------------------------------------------


@cache
def code_fingerprint(cls: type) -> str:
    """A short hash of the source file that defines `cls`: a change to how it is prepared means new keys."""
    try:
        source = Path(sys.modules[cls.__module__].__file__).read_bytes()
    except (KeyError, TypeError, OSError):
        source = repr([f.name for f in dataclasses.fields(cls)]).encode()
    return hashlib.sha256(source).hexdigest()[:12]


_UNSAFE = re.compile(r"[^A-Za-z0-9_-]+")


def _readable(name: str) -> str:
    """`name` as one safe key segment (no dots, slashes or spaces), at most 80 characters."""
    return _UNSAFE.sub("-", name).strip("-")[:80] or "x"


class StoredPreparations(Generic[T]):
    """Prepared `cls` values in the object store under `prefix`, one key per name (e.g. content hash + substrate).

    The key carries the encoding's format and `code_fingerprint(cls)`, so entries written by other code are
    never read: they are left for the store's cleanup (same prefix), not overwritten.

    With `folder` (name -> a folder ending in "/", e.g. `core.erasable.qa_references_of` of the content hash),
    every code version's entries of a name share that folder instead of `prefix`, so they are deleted together
    (`ObjectStore.delete_prefix`): an entry derived from a customer's print file is erased with the print file.
    """

    def __init__(self, store: ObjectStore, cls: type[T], *, prefix: str = "cache/prepared",
                 folder: Callable[[str], str] | None = None) -> None:
        self.store, self.cls, self.folder = store, cls, folder
        self.version = f"{cls.__qualname__.lower()}-f{FORMAT}-{code_fingerprint(cls)}"
        self.prefix = f"{prefix.strip('/')}/{self.version}"

    def key(self, name: str) -> str:
        """`<prefix>/<class>-f<FORMAT>-<fingerprint>/<name>-<hash>.npz`, or with `folder`
        `<folder(name)><class>-f<FORMAT>-<fingerprint>-<name>-<hash>.npz`.

        Raises:
            ValueError: `folder` gave no folder (empty, absolute, or not ending in "/").
        """
        end = f"{_readable(name)}-{hashlib.sha256(name.encode()).hexdigest()[:16]}.npz"
        if self.folder is None:
            return f"{self.prefix}/{end}"
        folder = self.folder(name)
        if not folder.endswith("/") or folder.startswith("/") or folder == "/":
            raise ValueError(f"prepared entry folder {folder!r} of {name!r}: a relative path ending in '/'")
        return f"{folder}{self.version}-{end}"

    def load(self, name: str) -> T | None:
        """The stored value, or None when absent, unreadable (logged) or the store did not answer (logged)."""
        key = name
        try:
            key = self.key(name)
            data = self.store.get(key)
        except KeyError:
            return None
        except Exception as error:  # noqa: BLE001 - the store failing costs the cache, not the caller's work
            log.warning("prepared %s: could not read %s (%s: %s); preparing instead", self.cls.__qualname__, key,
                        type(error).__name__, error)
            return None
        try:
            return decode(self.cls, data)
        except Unreadable as error:
            log.warning("prepared %s: %s is unreadable (%s); preparing again", self.cls.__qualname__, key, error)
            return None

    def save(self, name: str, value: T) -> bool:
        """Store `value` under `name`; False (logged) when it cannot be encoded or the store refused it."""
        key = name
        try:
            key = self.key(name)
            self.store.put(key, encode(value), content_type="application/octet-stream")
        except Exception as error:  # noqa: BLE001 - an unsaved preparation is only made again elsewhere
            log.warning("prepared %s: could not store %s (%s: %s)", self.cls.__qualname__, key,
                        type(error).__name__, error)
            return False
        return True

    def load_or_make(self, name: str, make: Callable[[], T]) -> T:
        """The stored value, else `make()`, stored for every other process."""
        started = time.perf_counter()
        found = self.load(name)
        if found is not None:
            log.info("prepared %s %s read from the store in %.3f s", self.cls.__qualname__, name,
                     time.perf_counter() - started)
            return found
        started = time.perf_counter()
        found = make()
        made = time.perf_counter()
        saved = self.save(name, found)
        log.info("prepared %s %s made in %.2f s, %s in %.3f s", self.cls.__qualname__, name, made - started,
                 "stored" if saved else "not stored", time.perf_counter() - made)
        return found
