from __future__ import annotations

from typing import Any

import pytest
from botocore.exceptions import ClientError, EndpointConnectionError, ReadTimeoutError

from s3grid import S3GridConfig
from s3grid.errors import (
    AccessDeniedError,
    ConflictError,
    NotFoundError,
    S3GridError,
    S3RequestError,
    StoreUnavailableError,
    translate,
)
from s3grid.s3 import S3Bucket


def client_error(code: str, status: int) -> ClientError:
    return ClientError(
        {"Error": {"Code": code, "Message": code}, "ResponseMetadata": {"HTTPStatusCode": status}},
        "GetObject",
    )


@pytest.mark.parametrize(
    ("exc", "kind"),
    [
        (client_error("NoSuchKey", 404), NotFoundError),
        (client_error("NoSuchBucket", 404), NotFoundError),
        (client_error("InvalidStorageClass", 400), S3RequestError),
        (client_error("AccessDenied", 403), AccessDeniedError),
        (client_error("PreconditionFailed", 412), ConflictError),
        (client_error("SlowDown", 503), StoreUnavailableError),
        (EndpointConnectionError(endpoint_url="http://x"), StoreUnavailableError),
    ],
)
def test_translate(exc: Exception, kind: type[S3GridError]) -> None:
    err = translate(exc, what="GET s3://b/k")
    assert type(err) is kind
    assert "s3://b/k" in str(err)


class FlakyClient:
    def __init__(self, failures: list[Exception]) -> None:
        self.failures = failures
        self.calls = 0

    def get_object(self, **kwargs: Any) -> dict[str, Any]:
        self.calls += 1
        if self.failures:
            raise self.failures.pop(0)
        return {"ETag": '"e1"', "ok": kwargs}


def test_wrapper_retries_transient_then_succeeds() -> None:
    client = FlakyClient([client_error("SlowDown", 503), client_error("InternalError", 500)])
    bucket = S3Bucket(S3GridConfig(bucket="b", max_attempts=3), client)
    resp = bucket.call("get_object", what="GET", Key="k")
    assert resp == {"ETag": '"e1"', "ok": {"Bucket": "b", "Key": "k"}}
    assert client.calls == 3


def test_wrapper_keeps_cause_and_does_not_retry_permanent() -> None:
    original = client_error("AccessDenied", 403)
    client = FlakyClient([original])
    bucket = S3Bucket(S3GridConfig(bucket="b", max_attempts=3), client)
    with pytest.raises(AccessDeniedError) as info:
        bucket.call("get_object", what="GET", Key="k")
    assert info.value.__cause__ is original
    assert client.calls == 1


def test_wrapper_gives_up_with_store_unavailable() -> None:
    timeout = ReadTimeoutError(endpoint_url="http://x")
    client = FlakyClient([timeout, timeout])
    bucket = S3Bucket(S3GridConfig(bucket="b", max_attempts=2), client)
    with pytest.raises(StoreUnavailableError) as info:
        bucket.call("get_object", what="GET", Key="k")
    assert info.value.maybe_committed
    assert client.calls == 2


def test_an_answer_that_never_came_does_not_also_say_nothing_changed() -> None:
    err = translate(ReadTimeoutError(endpoint_url="http://x"), what="PUT s3://b/k")
    assert isinstance(err, StoreUnavailableError) and err.maybe_committed
    assert "may or may not have been carried out" in str(err)
    assert "Nothing was changed" not in str(err)
    unsent = translate(EndpointConnectionError(endpoint_url="http://x"), what="PUT s3://b/k")
    assert not unsent.maybe_committed and "Nothing was changed" in str(unsent)


def test_query_errors_share_a_base() -> None:
    import s3grid
    from s3grid.athena import AthenaQueryError
    from s3grid.localsql import SQLError

    assert issubclass(SQLError, s3grid.QueryError) and issubclass(
        AthenaQueryError, s3grid.QueryError
    )
    assert SQLError is s3grid.SQLError and AthenaQueryError is s3grid.AthenaQueryError


def test_a_missing_snapshot_is_not_called_a_missing_master(master_store: Any) -> None:
    from s3grid import MasterNotFoundError, NotFoundError

    with pytest.raises(NotFoundError, match="No snapshot at") as info:
        master_store.restore(
            snapshot_key="snapshots/master_20240101T000000_nope.parquet",
            base=master_store.load(),
            note="x",
        )
    assert not isinstance(info.value, MasterNotFoundError)
    with pytest.raises(MasterNotFoundError):  # a version of the master is the master's
        master_store.read_version("not-a-version")
