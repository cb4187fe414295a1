"""One contract, two object stores: the local directory and S3 (moto's server over real HTTP)."""

import json

import pytest

from alphapulse_assets.storage.object_store import (
    LocalObjectStore,
    S3ObjectStore,
    StorageUnavailable,
    object_store_from_url,
)
from alphapulse_contract.storage import read_uri


@pytest.fixture(params=["local", "s3"])
def store(request, tmp_path):
    if request.param == "local":
        return LocalObjectStore(root=str(tmp_path / "objects"))
    endpoint = request.getfixturevalue("s3_endpoint")
    bucket = request.getfixturevalue("s3_bucket")
    return object_store_from_url(f"s3://{bucket}/alphapulse/prod", endpoint_url=endpoint)


def test_round_trip_overwrite_and_delete(store):
    uri = store.put_bytes("models/v1/model.ubj", b"first")
    assert store.get_bytes("models/v1/model.ubj") == b"first"
    assert store.exists("models/v1/model.ubj")
    assert uri == store.uri("models/v1/model.ubj")
    store.put_bytes("models/v1/model.ubj", b"second")
    assert store.get_bytes("models/v1/model.ubj") == b"second"
    store.delete("models/v1/model.ubj")
    assert not store.exists("models/v1/model.ubj")
    store.delete("models/v1/model.ubj")  # deleting what is not there is not an error


def test_missing_keys_raise_file_not_found(store):
    assert not store.exists("serving/promoted_model.json")
    with pytest.raises(FileNotFoundError, match="serving/promoted_model.json"):
        store.get_bytes("serving/promoted_model.json")


@pytest.mark.parametrize("key", ["", "/etc/passwd", "../escape", "a/../../b"])
def test_unsafe_keys_are_refused(store, key):
    with pytest.raises(ValueError, match="relative path"):
        store.put_bytes(key, b"x")


def test_uris_are_what_the_api_reads(store, monkeypatch):
    """The promoted-model manifest names its artifact by `uri()`; the API must read it back from that alone."""
    if isinstance(store, S3ObjectStore):
        monkeypatch.setenv("AWS_ENDPOINT_URL_S3", store.s3.endpoint_url)
    payload = json.dumps({"a": 1}).encode()
    uri = store.put_bytes("serving/online_features.json", payload)
    assert read_uri(uri) == payload


def test_large_objects_survive(store):
    blob = bytes(range(256)) * 40_000  # ~10 MB: larger than one multipart chunk
    store.put_bytes("reports/drift/big.html", blob)
    assert store.get_bytes("reports/drift/big.html") == blob


def test_local_writes_leave_no_temporary_files(tmp_path):
    store = LocalObjectStore(root=str(tmp_path))
    store.put_bytes("a/b.json", b"{}")
    assert store.uri("a/b.json").startswith("file://")
    assert [p.name for p in (tmp_path / "a").iterdir()] == ["b.json"]


def test_an_unreachable_s3_is_a_clear_error(s3_endpoint):
    store = object_store_from_url("s3://alphapulse/prod", endpoint_url="http://127.0.0.1:9")
    with pytest.raises(StorageUnavailable, match=r"writing s3://alphapulse/prod/x.json at http://127.0.0.1:9"):
        store.put_bytes("x.json", b"{}")


def test_a_missing_bucket_is_a_clear_error(s3_endpoint):
    store = object_store_from_url("s3://no-such-bucket", endpoint_url=s3_endpoint)
    with pytest.raises(StorageUnavailable, match="NoSuchBucket"):
        store.put_bytes("x.json", b"{}")


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("s3://bucket-1/p/q/", ("s3", "bucket-1", "p/q")),
        ("/tmp/objects", ("local", "/tmp/objects")),
        ("file:///srv/o", ("local", "/srv/o")),
    ],
)
def test_store_urls(url, expected):
    store = object_store_from_url(url)
    if expected[0] == "s3":
        assert (store.bucket, store.prefix) == expected[1:]
    else:
        assert store.root == expected[1]


def test_bad_store_urls_are_refused():
    with pytest.raises(ValueError, match="names a bucket"):
        object_store_from_url("s3:///prefix")
    with pytest.raises(ValueError, match="local directory or an s3:// URL"):
        object_store_from_url("gs://bucket")


def test_the_api_reads_the_store_url_by_the_same_rules():
    from alphapulse_serving.config import ServingConfig
    from alphapulse_serving.security import ConfigError

    env = {"ALPHAPULSE_API_KEYS": "k" * 32, "ALPHAPULSE_HOME": "/tmp/alphapulse-api-config"}
    config = ServingConfig.from_env({**env, "ALPHAPULSE_OBJECT_STORE_URL": "s3://alphapulse-prod/v1"})
    assert config.store == "s3://alphapulse-prod/v1"
    assert ServingConfig.from_env(env).store == "/tmp/alphapulse-api-config/objects"
    with pytest.raises(ConfigError, match="ALPHAPULSE_OBJECT_STORE_URL=.*valid bucket name"):
        ServingConfig.from_env({**env, "ALPHAPULSE_OBJECT_STORE_URL": "s3://Bad_Bucket/x"})
