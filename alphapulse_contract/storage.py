"""Where the graph's objects live and how both sides read them: the store's location, S3 with boto3's own
configuration, and model URIs.

Neither side takes S3 settings of its own: the endpoint comes from AWS_ENDPOINT_URL_S3 / AWS_ENDPOINT_URL, the
credentials from the usual chain (environment, profile, instance or pod role), as for every AWS tool.
"""

from __future__ import annotations

import functools
import os
import re
from pathlib import Path
from urllib.parse import unquote, urlparse

from alphapulse_contract.predictors import ArtifactError, SourceUnreachable


class StoreUnavailable(SourceUnreachable):
    """The object store could not be reached."""

    source = "store"
    label = "object store"


def s3_client():
    return _client_for(os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL") or None)


@functools.cache
def _client_for(endpoint_url: str | None):
    import boto3
    from botocore.config import Config

    # A poll must not hang on an unreachable endpoint: the API reports degraded and keeps what it has.
    config = Config(connect_timeout=3, read_timeout=10, retries={"max_attempts": 2})
    return boto3.client("s3", endpoint_url=endpoint_url, config=config)


def call_s3(fn, uri: str, verb: str, unavailable: type[SourceUnreachable] = StoreUnavailable):
    """`fn(client)`, with S3's failures as the API reasons about them: FileNotFoundError(uri) for a missing key,
    `unavailable` for anything else (unreachable, refused, a body that stopped arriving). Reading a response body
    belongs inside `fn`, where its errors are caught too."""
    from botocore.exceptions import BotoCoreError, ClientError

    try:
        return fn(s3_client())
    except ClientError as exc:
        if exc.response.get("Error", {}).get("Code") in ("NoSuchKey", "404"):
            raise FileNotFoundError(uri) from None
        raise unavailable(f"cannot {verb} {uri}: {exc}") from exc
    except BotoCoreError as exc:
        raise unavailable(f"cannot {verb} {uri}: {exc}") from exc


def read_s3_object(bucket: str, key: str, uri: str) -> bytes:
    """The object's bytes; FileNotFoundError when it does not exist; StoreUnavailable when S3 cannot be read."""
    return call_s3(lambda s3: s3.get_object(Bucket=bucket, Key=key)["Body"].read(), uri, "read")


_BUCKET = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")


def store_location(raw: str) -> str:
    """The object store as the graph and the API both name it (ALPHAPULSE_OBJECT_STORE_URL): an `s3://bucket/prefix`
    URL, kept as given, or a local directory (a path or `file://` URL), made absolute. ValueError otherwise."""
    parsed = urlparse(raw)
    if parsed.scheme == "s3":
        if not _BUCKET.match(parsed.netloc):
            raise ValueError(
                f"{raw!r}: an S3 URL names a bucket, like s3://alphapulse/prod (expected s3://<bucket>/<optional "
                "prefix> with a valid bucket name)"
            )
        return raw
    if parsed.scheme in ("", "file"):
        return str(Path(unquote(parsed.path) if parsed.scheme else raw).expanduser().resolve())
    raise ValueError(
        f"{raw!r}: the object store is a local directory or an s3:// URL (expected s3://<bucket>/<prefix> or a path)"
    )


def split_s3_uri(uri: str) -> tuple[str, str]:
    """`s3://bucket/some/key` as ("bucket", "some/key")."""
    parsed = urlparse(uri)
    return parsed.netloc, parsed.path.strip("/")


def read_uri(uri: str) -> bytes:
    """Bytes at a `file://` URI, a plain path or an `s3://bucket/key` URI (endpoint and credentials from boto3's
    usual environment: AWS_ENDPOINT_URL_S3 or AWS_ENDPOINT_URL, AWS_ACCESS_KEY_ID, ... or an instance role)."""
    parsed = urlparse(uri)
    if parsed.scheme in ("", "file"):
        path = Path(unquote(parsed.path) if parsed.scheme else uri)
        try:
            return path.read_bytes()
        except OSError as exc:
            raise ArtifactError(f"cannot read {uri}: {exc.strerror or exc}") from exc
    if parsed.scheme == "s3":
        try:
            return read_s3_object(*split_s3_uri(uri), uri)
        except FileNotFoundError:
            raise ArtifactError(f"cannot read {uri}: no such object") from None
    raise ArtifactError(f"unsupported URI scheme {parsed.scheme!r} in {uri}")
