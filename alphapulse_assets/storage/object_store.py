"""Artifacts, reports and serving snapshots: an object store with a local and an S3 implementation."""

from __future__ import annotations

import functools
import os
import tempfile
from pathlib import Path

import dagster as dg
from botocore.exceptions import BotoCoreError, ClientError
from dagster_aws.s3 import S3Resource

from alphapulse_assets.storage.errors import StorageUnavailable
from alphapulse_contract.storage import split_s3_uri, store_location


def check_key(key: str) -> str:
    if not key or key.startswith("/") or ".." in key.split("/"):
        raise ValueError(f"object key {key!r} must be a relative path without '..'")
    return key


# What people open from the UI: plots and reports. Only these are served to browsers (alphapulse_assets/reports.py);
# models, manifests, snapshots and alerts are not.
BROWSABLE_PREFIXES = ("plots/", "reports/")


def browsable(key: str) -> bool:
    return key.startswith(BROWSABLE_PREFIXES) and check_key(key) == key


class ObjectStore(dg.ConfigurableResource):
    """Keys are slash-separated paths; `uri()` gives the address other processes (the API) read them by, and
    `browser_url()` the one a person's browser opens a plot or report by (ALPHAPULSE_REPORTS_URL)."""

    # Where browsers reach this store's plots/ and reports/ keys: `python -m alphapulse_assets.reports` (the demo
    # runs it) or any HTTP front of the same keys (a CDN before the bucket). None: nowhere.
    public_url: str | None = None

    def browser_url(self, key: str) -> str | None:
        if self.public_url is None or not browsable(key):
            return None
        return f"{self.public_url.rstrip('/')}/{key}"

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

    def list_keys(self, prefix: str, after: str = "") -> list[str]:
        """Keys starting with `prefix` that sort after `after`, in order."""
        raise NotImplementedError


class LocalObjectStore(ObjectStore):
    """A directory on local disk. Writes are atomic (write aside, then rename) so a reader polling a key, like
    the API watching the promoted-model manifest, never sees half a file."""

    root: str

    def _path(self, key: str) -> Path:
        return Path(self.root) / check_key(key)

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

    def list_keys(self, prefix: str, after: str = "") -> list[str]:
        # Walk only the folder the prefix names (what comes before its last slash).
        parent = prefix.rpartition("/")[0]
        folder = Path(self.root) / check_key(parent) if parent else Path(self.root)
        if not folder.is_dir():
            return []
        # Dot-files are writes in progress (put_bytes writes aside, then renames).
        files = (p for p in folder.rglob("*") if p.is_file() and not p.name.startswith("."))
        keys = (p.relative_to(self.root).as_posix() for p in files)
        return sorted(k for k in keys if k.startswith(prefix) and k > after)


class S3ObjectStore(ObjectStore):
    """A bucket (and optional prefix) on S3 or an S3-compatible server (MinIO, moto), through dagster-aws's
    `S3Resource`, so credentials, region and endpoint are configured the way every Dagster AWS user knows.

    A PUT of one object is atomic on S3: a reader sees the old object or the new one, never a part, which is the
    guarantee the local store's rename gives the API.
    """

    bucket: str
    prefix: str = ""
    s3: S3Resource

    def _key(self, key: str) -> str:
        check_key(key)
        prefix = self.prefix.strip("/")
        return f"{prefix}/{key}" if prefix else key

    def _client(self):
        return _cached_client(self.s3)

    def _call(self, what: str, key: str, fn):
        try:
            return fn()
        except (BotoCoreError, ClientError) as exc:
            code = getattr(exc, "response", {}).get("Error", {}).get("Code")
            if code in ("NoSuchKey", "404"):
                raise FileNotFoundError(f"no object {key!r} in {self.uri('')}") from None
            where = self.s3.endpoint_url or "AWS"
            raise StorageUnavailable(f"object store: {what} {self.uri(key)} at {where} failed: {exc}") from exc

    def put_bytes(self, key: str, data: bytes) -> str:
        full = self._key(key)
        self._call("writing", key, lambda: self._client().put_object(Bucket=self.bucket, Key=full, Body=data))
        return self.uri(key)

    def get_bytes(self, key: str) -> bytes:
        full = self._key(key)
        response = self._call("reading", key, lambda: self._client().get_object(Bucket=self.bucket, Key=full))
        return response["Body"].read()

    def exists(self, key: str) -> bool:
        full = self._key(key)
        try:
            self._call("checking", key, lambda: self._client().head_object(Bucket=self.bucket, Key=full))
        except FileNotFoundError:
            return False
        return True

    def delete(self, key: str) -> None:
        full = self._key(key)
        self._call("deleting", key, lambda: self._client().delete_object(Bucket=self.bucket, Key=full))

    def uri(self, key: str) -> str:
        prefix = self.prefix.strip("/")
        return f"s3://{self.bucket}/" + "/".join(part for part in (prefix, key) if part)

    def list_keys(self, prefix: str, after: str = "") -> list[str]:
        root = self.prefix.strip("/")
        full = self._key(prefix.rstrip("/")) + ("/" if prefix.endswith("/") else "")
        options = {"Bucket": self.bucket, "Prefix": full} | ({"StartAfter": self._key(after)} if after else {})

        def pages():
            return [
                obj["Key"]
                for page in self._client().get_paginator("list_objects_v2").paginate(**options)
                for obj in page.get("Contents", ())
            ]

        keys = self._call("listing", prefix, pages)
        return sorted(k[len(root) + 1 :] if root else k for k in keys)


@functools.lru_cache(maxsize=8)
def _cached_client(s3: S3Resource):
    # boto3 clients are thread-safe and costly to build (~50 ms); one per configuration per process.
    return s3.get_client()


def object_store_from_url(url: str, endpoint_url: str | None = None, public_url: str | None = None) -> ObjectStore:
    """`s3://bucket/prefix` or a local directory (a path or `file://` URL): see `store_location`."""
    location = store_location(url)
    if location.startswith("s3://"):
        bucket, prefix = split_s3_uri(location)
        s3 = S3Resource(endpoint_url=endpoint_url or None)
        return S3ObjectStore(bucket=bucket, prefix=prefix, s3=s3, public_url=public_url)
    return LocalObjectStore(root=location, public_url=public_url)
