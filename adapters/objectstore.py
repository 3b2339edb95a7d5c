"""Object store adapters: a local versioned folder (the embedded default)."""

from __future__ import annotations

import hashlib
import os
import tempfile
from pathlib import Path


class LocalVersionedStore:
    """Keys map to folders; each put writes a new immutable version file and moves a `current` pointer.

    Old versions stay readable by id, like S3 bucket versioning, so a re-render never destroys what a partner
    already downloaded.
    """

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)

    def _folder(self, key: str) -> Path:
        if key.startswith("/") or ".." in Path(key).parts:
            raise ValueError(f"unsafe object key {key!r}")
        return self.root / key

    def put(self, key: str, data: bytes, *, content_type: str = "application/octet-stream") -> str:
        """Store `data` under `key`; returns the new version id (content hash prefix + sequence)."""
        folder = self._folder(key)
        folder.mkdir(parents=True, exist_ok=True)
        sequence = len([p for p in folder.iterdir() if p.suffix == ".v"]) + 1
        version = f"{sequence:06d}-{hashlib.sha256(data).hexdigest()[:16]}"
        self._atomic_write(folder / f"{version}.v", data)
        self._atomic_write(folder / "current", version.encode())
        (folder / "content_type").write_text(content_type)
        return version

    def get(self, key: str, *, version: str | None = None) -> bytes:
        """The current (or a given) version's bytes. Raises KeyError when absent."""
        folder = self._folder(key)
        try:
            version = version or (folder / "current").read_text()
            return (folder / f"{version}.v").read_bytes()
        except FileNotFoundError as missing:
            raise KeyError(key) from missing

    def exists(self, key: str) -> bool:
        return (self._folder(key) / "current").exists()

    def versions(self, key: str) -> list[str]:
        folder = self._folder(key)
        return sorted(p.stem for p in folder.glob("*.v")) if folder.exists() else []

    @staticmethod
    def _atomic_write(path: Path, data: bytes) -> None:
        handle, temporary = tempfile.mkstemp(dir=path.parent)
        with os.fdopen(handle, "wb") as out:
            out.write(data)
        os.replace(temporary, path)
