"""Artifacts, reports and serving snapshots: an object store with a local and (later) an S3 implementation."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import dagster as dg


class ObjectStore(dg.ConfigurableResource):
    """Keys are slash-separated paths; `uri()` gives the address other processes (the API) read them by."""

    def put_bytes(self, key: str, data: bytes) -> str:
        raise NotImplementedError

    def get_bytes(self, key: str) -> bytes:
        raise NotImplementedError

    def exists(self, key: str) -> bool:
        raise NotImplementedError

    def delete(self, key: str) -> None:
        """Remove `key`; removing a key that is not there is not an error."""
        raise NotImplementedError

    def uri(self, key: str) -> str:
        raise NotImplementedError


class LocalObjectStore(ObjectStore):
    """A directory on local disk. Writes are atomic (write aside, then rename) so a reader polling a key, like
    the API watching the promoted-model manifest, never sees half a file."""

    root: str

    def _path(self, key: str) -> Path:
        if not key or key.startswith("/") or ".." in key.split("/"):
            raise ValueError(f"object key {key!r} must be a relative path without '..'")
        return Path(self.root) / key

    def put_bytes(self, key: str, data: bytes) -> str:
        target = self._path(key)
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.")
        try:
            with os.fdopen(fd, "wb") as handle:
                handle.write(data)
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(tmp, target)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        return self.uri(key)

    def get_bytes(self, key: str) -> bytes:
        path = self._path(key)
        if not path.is_file():
            raise FileNotFoundError(f"no object {key!r} in {self.root}")
        return path.read_bytes()

    def exists(self, key: str) -> bool:
        return self._path(key).is_file()

    def delete(self, key: str) -> None:
        self._path(key).unlink(missing_ok=True)

    def uri(self, key: str) -> str:
        return self._path(key).resolve().as_uri()
