"""Reading the serving objects from S3 or an S3-compatible server, with boto3's own configuration.

The API takes no S3 settings of its own: the endpoint comes from AWS_ENDPOINT_URL_S3 / AWS_ENDPOINT_URL, the
credentials from the usual chain (environment, profile, instance or pod role), as for every AWS tool.
"""

from __future__ import annotations

import functools
import os

from alphapulse_serving.predictors import SourceUnreachable


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
