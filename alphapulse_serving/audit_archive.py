"""Sealed audit batches in the object store, so that a decision's packet outlives the pod that made it.

A batch is one gzip'd JSON Lines object, one self-contained packet per line (feature values inlined, so an auditor
needs nothing but `zcat | jq`), named

    audit/<YYYY-MM-DD>/<writer>-<seq>-<first_ms>-<last_ms>.jsonl.gz

<writer> is the pod (host) name and the local database's own id, so two databases never write the same key even
when a laptop's audit directory is wiped and its sequence starts again; <seq> counts that database's batches; the
millisecond range is the decision times the batch holds. Decision ids carry their time (UUIDv7), so finding an old
decision is one listing of its day and a read of the batches whose range covers it. A batch's bytes are fixed when
it is sealed: a retried upload writes the same object again, never a second copy.

The archive is the graph's object store by default (a directory on a laptop, `s3://bucket/prefix` in production)
or ALPHAPULSE_API_AUDIT_ARCHIVE_URL, for a bucket with its own retention (Object Lock, lifecycle).
"""

from __future__ import annotations

import base64
import functools
import gzip
import hashlib
import os
import re
from abc import ABC, abstractmethod
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import orjson

from alphapulse_contract.predictors import SourceUnreachable
from alphapulse_contract.storage import call_s3, split_s3_uri

PREFIX = "audit"


class ArchiveUnavailable(SourceUnreachable):
    """The audit archive could not be read or written: packets stay in the local database until it can."""

    source = "audit_archive"
    label = "audit archive"


def day_of(ms: int) -> str:
    return datetime.fromtimestamp(ms // 1000, UTC).date().isoformat()


@dataclass(frozen=True, order=True)
class BatchName:
    day: str
    writer: str
    seq: int
    first_ms: int
    last_ms: int

    _PATTERN = re.compile(r"^(?P<writer>[a-z0-9][a-z0-9-]*)-(?P<seq>\d{8,})-(?P<first>\d+)-(?P<last>\d+)\.jsonl\.gz$")

    @property
    def key(self) -> str:
        return f"{PREFIX}/{self.day}/{self.writer}-{self.seq:08d}-{self.first_ms}-{self.last_ms}.jsonl.gz"

    def covers(self, ms: int) -> bool:
        return self.first_ms <= ms <= self.last_ms

    @classmethod
    def parse(cls, key: str) -> BatchName | None:
        """The name of an archive key, or None for anything else under audit/ (a stray upload, a temp file)."""
        parts = key.split("/")
        if len(parts) != 3 or parts[0] != PREFIX:
            return None
        match = cls._PATTERN.match(parts[2])
        if match is None:
            return None
        return cls(parts[1], match["writer"], int(match["seq"]), int(match["first"]), int(match["last"]))


def batch_body(packets: list[dict]) -> bytes:
    """The object's bytes: deterministic (gzip's mtime is 0), so a re-sealed batch re-uploads identical bytes."""
    lines = b"".join(orjson.dumps(p) + b"\n" for p in packets)
    return gzip.compress(lines, compresslevel=6, mtime=0)


def find_packet(body: bytes, decision_id: str) -> dict | None:
    """The packet with this id in a batch's (decompressed) bytes. A substring search, then one parse: a batch holds
    thousands of packets and a lookup wants one."""
    start = body.find(b'"decision_id":"' + decision_id.encode() + b'"')
    if start < 0:
        return None
    line_start = body.rfind(b"\n", 0, start) + 1
    line_end = body.find(b"\n", start)
    return orjson.loads(body[line_start : line_end if line_end >= 0 else len(body)])


class AuditArchive(ABC):
    """Where sealed batches go. Keys are relative (`audit/...`); `uri` says where one really is."""

    @abstractmethod
    def put(self, key: str, body: bytes, metadata: dict[str, str]) -> str:
        """Write a batch; return once it is durably stored (the receipt: an ETag or a digest). ArchiveUnavailable
        on failure, in which case nothing may be assumed about the key."""

    @abstractmethod
    def get(self, key: str) -> bytes:
        """A batch's bytes; FileNotFoundError if absent; ArchiveUnavailable if the archive cannot be read."""

    @abstractmethod
    def keys(self, prefix: str) -> list[str]:
        """Every key under a prefix ending in "/", at any depth (relative keys)."""

    @abstractmethod
    def uri(self, key: str = "") -> str: ...

    def find(self, decision_id: str, decided_ms: int) -> dict | None:
        """The archived packet of a decision made at `decided_ms`, or None."""
        names = (BatchName.parse(k) for k in self.keys(f"{PREFIX}/{day_of(decided_ms)}/"))
        for name in sorted(n for n in names if n is not None and n.covers(decided_ms)):
            found = find_packet(self._batch_lines(name.key), decision_id)
            if found is not None:
                return found
        return None

    @functools.lru_cache(maxsize=8)  # noqa: B019 - one archive per app; batches are immutable, auditors read neighbours
    def _batch_lines(self, key: str) -> bytes:
        try:
            return gzip.decompress(self.get(key))
        except FileNotFoundError:
            return b""  # listed, then gone (a lifecycle expiry): not found, as for any other expired packet


class LocalAuditArchive(AuditArchive):
    """A directory (the laptop's object store): each batch written to a temporary name, fsynced, then renamed."""

    def __init__(self, root: Path):
        self.root = Path(root)

    def put(self, key: str, body: bytes, metadata: dict[str, str]) -> str:
        path = self.root / key
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
            with open(temporary, "wb") as handle:
                handle.write(body)
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(temporary, path)
        except OSError as exc:
            raise ArchiveUnavailable(f"cannot write {path}: {exc.strerror or exc}") from exc
        return metadata["sha256"]

    def get(self, key: str) -> bytes:
        try:
            return (self.root / key).read_bytes()
        except FileNotFoundError:
            raise
        except OSError as exc:
            raise ArchiveUnavailable(f"cannot read {self.root / key}: {exc.strerror or exc}") from exc

    def keys(self, prefix: str) -> list[str]:
        directory = self.root / prefix
        if not directory.is_dir():
            return []
        # Recursive, as an S3 prefix listing is; dot-files are uploads in progress.
        return [
            p.relative_to(self.root).as_posix()
            for p in directory.rglob("*")
            if p.is_file() and not p.name.startswith(".")
        ]

    def uri(self, key: str = "") -> str:
        return str(self.root / key)


class S3AuditArchive(AuditArchive):
    """A bucket and prefix, through the API's boto3 client (endpoint and credentials from boto3's environment)."""

    def __init__(self, location: str):
        self.bucket, self.prefix = split_s3_uri(location)

    def _full(self, key: str) -> str:
        return f"{self.prefix}/{key}" if self.prefix else key

    def _call(self, verb: str, key: str, fn):
        return call_s3(fn, self.uri(key), verb, ArchiveUnavailable)

    def put(self, key: str, body: bytes, metadata: dict[str, str]) -> str:
        # Content-MD5 makes S3 refuse a body that changed on the way: a 200 is a confirmation of these bytes.
        md5 = base64.b64encode(hashlib.md5(body, usedforsecurity=False).digest()).decode()
        response = self._call(
            "write",
            key,
            lambda s3: s3.put_object(
                Bucket=self.bucket,
                Key=self._full(key),
                Body=body,
                ContentMD5=md5,
                ContentType="application/gzip",
                Metadata=metadata,
            ),
        )
        return response["ETag"].strip('"')

    def get(self, key: str) -> bytes:
        return self._call("read", key, lambda s3: s3.get_object(Bucket=self.bucket, Key=self._full(key))["Body"].read())

    def keys(self, prefix: str) -> list[str]:
        def listing(s3) -> list[str]:
            pages = s3.get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=self._full(prefix))
            strip = len(self._full(""))
            return [item["Key"][strip:] for page in pages for item in page.get("Contents", [])]

        return self._call("list", prefix, listing)

    def uri(self, key: str = "") -> str:
        return f"s3://{self.bucket}/" + "/".join(part for part in (self.prefix, key) if part)


def archive_for(location: str) -> AuditArchive:
    """The archive at a store location as `store_location` returns it: `s3://bucket/prefix` or a directory."""
    return S3AuditArchive(location) if location.startswith("s3://") else LocalAuditArchive(Path(location))
