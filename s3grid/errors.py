"""The one exception hierarchy of s3grid, and the translation of botocore errors into it.

Every error a user can meet derives from :class:`S3GridError`. The S3 wrapper in
``s3.py`` calls :func:`translate` so that callers never see a raw ``ClientError``;
the original exception stays reachable as ``__cause__``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    ConnectionClosedError,
    ConnectTimeoutError,
    EndpointConnectionError,
    FlexibleChecksumError,
    IncompleteReadError,
    NoCredentialsError,
    ReadTimeoutError,
    ResponseStreamingError,
)

if TYPE_CHECKING:
    from s3grid.model import SaveResult

__all__ = [
    "AccessDeniedError",
    "AthenaQueryError",
    "ConfigError",
    "ConflictError",
    "LostUpdateError",
    "MasterFormatError",
    "MasterNotFoundError",
    "NotFoundError",
    "QueryError",
    "S3GridError",
    "S3RequestError",
    "SQLError",
    "SchemaError",
    "StoreUnavailableError",
    "ValidationError",
    "VersioningError",
]


class S3GridError(Exception):
    """Base class of every error raised by s3grid.

    ``code`` holds the S3 error code when the error came from S3 ("NoSuchKey", ...).
    """

    code: str | None = None


class ConfigError(S3GridError):
    """The configuration is missing a value or holds an invalid one."""


class VersioningError(ConfigError):
    """The bucket does not keep versions (off or suspended): s3grid refuses to write there."""


class StoreUnavailableError(S3GridError):
    """S3 could not be reached (network, timeout, throttling) after retries.

    ``maybe_committed`` is True only when a write was sent and its outcome is unknown.
    """

    def __init__(self, message: str, *, maybe_committed: bool = False) -> None:
        super().__init__(message)
        self.maybe_committed = maybe_committed


class NotFoundError(S3GridError):
    """The bucket, an object (a snapshot, an audit, a manifest) or a version does not exist."""


class MasterNotFoundError(NotFoundError):
    """The master, or the requested version of it, does not exist."""


class MasterFormatError(S3GridError):
    """An object is not valid Parquet/CSV (for example, Parquet magic bytes missing), or
    not the s3grid record it should be (an audit line, a run manifest)."""


class S3RequestError(S3GridError):
    """S3 refused a request for a reason s3grid has no better name for; ``code`` says which."""


class QueryError(S3GridError):
    """A query failed: a bulk edit's SELECT on DuckDB, or any statement on Athena."""


class SQLError(QueryError):
    """A bulk-edit query failed on DuckDB (syntax, unknown column, runtime error)."""


class AthenaQueryError(QueryError):
    """An Athena query failed or was cancelled, or could not be looked up; nothing was
    promoted. ``query_id`` and Athena's ``reason`` say which and why."""

    def __init__(
        self, message: str, *, query_id: str | None = None, reason: str | None = None
    ) -> None:
        super().__init__(message)
        self.query_id = query_id
        self.reason = reason


class AccessDeniedError(S3GridError):
    """S3 refused the request for lack of permission."""


class ValidationError(S3GridError):
    """The data breaks a rule of the master (duplicate key, empty table, bad note)."""

    def __init__(self, message: str, *, duplicates: Sequence[tuple[Any, ...]] = ()) -> None:
        super().__init__(message)
        self.duplicates = list(duplicates)


class SchemaError(ValidationError):
    """A value or a column does not fit the master's Arrow schema.

    When the problem is one value, ``row``, ``column``, ``value``, ``expected`` and
    ``reason`` say which and why; for column-level problems they are ``None``.
    """

    def __init__(
        self,
        message: str,
        *,
        row: Any = None,
        column: str | None = None,
        value: Any = None,
        expected: str | None = None,
        reason: str | None = None,
    ) -> None:
        super().__init__(message)
        self.row = row
        self.column = column
        self.value = value
        self.expected = expected
        self.reason = reason  # why the value does not fit, without where it is


class ConflictError(S3GridError):
    """The master changed since it was loaded: the save was refused and nothing was written.

    Carries the base (what the caller loaded) and the current master's VersionId and
    ETag, and who saved the current master and when (from its s3grid metadata).
    """

    def __init__(
        self,
        message: str,
        *,
        key: str = "",
        base_version: str | None = None,
        base_etag: str | None = None,
        current_version: str | None = None,
        current_etag: str | None = None,
        saved_by: str | None = None,
        saved_at: str | None = None,
        current_note: str | None = None,
    ) -> None:
        super().__init__(message)
        self.key = key
        self.base_version = base_version
        self.base_etag = base_etag
        self.current_version = current_version
        self.current_etag = current_etag
        self.saved_by = saved_by
        self.saved_at = saved_at
        self.current_note = current_note


class LostUpdateError(S3GridError):
    """The save committed, but over a version other than its base: a lost update.

    Stores without atomic conditional writes can let two conditional PUTs both succeed.
    ``overwritten`` names the version(s) that were replaced without being seen; their
    changes are not in the master now. ``result`` is the committed save (its snapshot and
    audit exist, the audit records the overwritten versions). Merge them back.
    """

    def __init__(self, message: str, *, overwritten: tuple[str, ...], result: SaveResult) -> None:
        super().__init__(message)
        self.overwritten = overwritten
        self.result: SaveResult = result


class IncompleteResponseError(BotoCoreError):
    """S3's answer arrived cut short: a header s3grid relies on (ETag, VersionId) is
    missing, or the body does not parse. The request may have been carried out."""

    fmt = "The response to {operation} was cut short ({missing})"


# Error codes S3 (and S3-compatible stores) return for conditions worth a retry.
TRANSIENT_CODES = frozenset(
    {
        "500",
        "502",
        "503",
        "504",
        "InternalError",
        "ServiceUnavailable",
        "SlowDown",
        "RequestTimeout",
        "RequestTimeTooSkewed",
        "Throttling",
        "ThrottlingException",
    }
)
_NOT_FOUND_CODES = frozenset({"404", "NoSuchKey", "NoSuchBucket", "NoSuchVersion", "NotFound"})
_DENIED_CODES = frozenset(
    {"403", "AccessDenied", "InvalidAccessKeyId", "SignatureDoesNotMatch", "ExpiredToken"}
)
# A request that never left this machine: retrying it cannot duplicate a write.
NOT_SENT_ERRORS: tuple[type[Exception], ...] = (EndpointConnectionError, ConnectTimeoutError)
# A request that may have reached S3 before the connection failed.
MAYBE_SENT_ERRORS: tuple[type[Exception], ...] = (
    ReadTimeoutError,
    ConnectionClosedError,
    IncompleteResponseError,
)

# A response body that arrived damaged (its checksum is not the one the store keeps) or
# cut short: reading the object again may well succeed, and a read changes nothing.
BODY_ERRORS: tuple[type[Exception], ...] = (
    FlexibleChecksumError,
    IncompleteReadError,
    ResponseStreamingError,
)


def error_code(exc: ClientError) -> str:
    """The S3 error code of a ClientError ("NoSuchKey", "PreconditionFailed", ...)."""
    return str(exc.response.get("Error", {}).get("Code", ""))


def http_status(exc: ClientError) -> int:
    """The HTTP status of a ClientError, or 0 if unknown."""
    return int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0) or 0)


def is_transient(exc: BaseException) -> bool:
    """Whether an error is worth retrying (network trouble, throttling, 5xx)."""
    if isinstance(exc, NOT_SENT_ERRORS + MAYBE_SENT_ERRORS):
        return True
    if isinstance(exc, ClientError):
        return error_code(exc) in TRANSIENT_CODES or http_status(exc) >= 500
    return False


def translate(exc: BaseException, *, what: str) -> S3GridError:
    """Map a botocore exception to the s3grid exception a user can act on.

    Args:
        exc: the botocore (or other) exception raised by a boto3 call.
        what: a short description of the request, such as ``"GET s3://b/k"``.
    """
    err = _translate(exc, what=what)
    if isinstance(exc, ClientError) and err.code is None:
        err.code = error_code(exc) or str(http_status(exc))
    return err


def _translate(exc: BaseException, *, what: str) -> S3GridError:
    if isinstance(exc, S3GridError):
        return exc
    if isinstance(exc, NoCredentialsError):
        return AccessDeniedError(
            f"{what}: no AWS credentials found; set AWS_PROFILE or run `aws sso login`."
        )
    if isinstance(exc, FlexibleChecksumError):
        return StoreUnavailableError(
            f"{what}: the body arrived damaged: its checksum is not the one the store keeps "
            f"for the object ({exc}). Nothing was changed; retry, and if it keeps happening, "
            "check what sits between here and the store (a proxy that rewrites bodies)."
        )
    if isinstance(exc, IncompleteReadError | ResponseStreamingError):
        return StoreUnavailableError(
            f"{what}: the body was cut short ({exc}). Nothing was changed; check the "
            "endpoint and network, then retry."
        )
    if isinstance(exc, NOT_SENT_ERRORS + MAYBE_SENT_ERRORS) or (
        isinstance(exc, ClientError) and is_transient(exc)
    ):
        sent = isinstance(exc, MAYBE_SENT_ERRORS)
        outcome = (
            "The request may or may not have been carried out"
            if sent
            else "Nothing was changed by this request"
        )
        return StoreUnavailableError(
            f"{what}: S3 is unreachable ({exc}). {outcome}; check the endpoint and "
            "network, then retry.",
            maybe_committed=sent,
        )
    if isinstance(exc, ClientError):
        code = error_code(exc)
        status = http_status(exc)
        if code in _NOT_FOUND_CODES or status == 404:
            label = "bucket" if code == "NoSuchBucket" else "object"
            return NotFoundError(f"{what}: {label} not found ({code or status}).")
        if code in _DENIED_CODES or status == 403:
            return AccessDeniedError(
                f"{what}: access denied ({code or status}); check the IAM policy "
                "(`s3grid` README lists the minimum permissions) and your AWS profile."
            )
        if code == "ConditionalRequestConflict" or status == 409:
            # S3: a concurrent conditional write to the same key is in flight; the store
            # re-reads the master and retries if it has not moved on.
            return ConflictError(f"{what}: concurrent conditional write in progress (409).")
        if code == "PreconditionFailed" or status == 412:
            return ConflictError(f"{what}: precondition failed; the object changed.")
        if code == "InvalidBucketName":
            return ConfigError(f"{what}: invalid bucket name.")
        return S3RequestError(f"{what}: S3 error {code or status}: {exc}")
    return S3RequestError(f"{what}: unexpected error: {exc!r}")
