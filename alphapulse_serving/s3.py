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


def read_s3_object(bucket: str, key: str, uri: str) -> bytes:
    """The object's bytes; FileNotFoundError when it does not exist; StoreUnavailable when S3 cannot be read."""
    from botocore.exceptions import BotoCoreError, ClientError

    try:
        return s3_client().get_object(Bucket=bucket, Key=key)["Body"].read()
    except ClientError as exc:
        if exc.response.get("Error", {}).get("Code") in ("NoSuchKey", "404"):
            raise FileNotFoundError(uri) from None
        raise StoreUnavailable(f"cannot read {uri}: {exc}") from exc
    except BotoCoreError as exc:
        raise StoreUnavailable(f"cannot read {uri}: {exc}") from exc
