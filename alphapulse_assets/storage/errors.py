"""Errors the storage resources raise, shared by every implementation."""


class StorageUnavailable(RuntimeError):
    """The object store or the warehouse could not be reached or refused the call. Runs fail with this and are
    retried under the assets' RetryPolicy; the failed call wrote nothing."""
