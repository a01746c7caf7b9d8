"""The one way s3grid talks to S3: :class:`S3Bucket`.

Every request goes through :meth:`S3Bucket.call`, which retries transient failures,
checks that a response is complete, refuses writes to an unversioned bucket, and
translates botocore errors into :mod:`s3grid.errors`. Large bodies go in ranges and
parts, with progress.
"""

from __future__ import annotations

import hashlib
import io
import logging
import random
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from typing import Any, TypeVar
from urllib.parse import urlsplit

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError, ProfileNotFound
from botocore.parsers import ResponseParserError

from s3grid.config import S3GridConfig
from s3grid.errors import (
    BODY_ERRORS,
    AccessDeniedError,
    ConfigError,
    ConflictError,
    IncompleteResponseError,
    NotFoundError,
    S3GridError,
    ValidationError,
    VersioningError,
    is_transient,
    translate,
)

__all__ = [
    "MAX_SINGLE_PUT",
    "PROGRESS_BYTES",
    "PartStream",
    "S3Bucket",
    "SeekableReader",
    "is_aws_endpoint",
]

log = logging.getLogger(__name__)

_B = TypeVar("_B")  # what a GET's body was read into

# S3's limit for one PUT and for one CopyObject. The save's snapshot is a server-side
# copy, so this is the largest master a save can write (Parquet of ~150M rows of 13
# columns); over it a copy would need a multipart copy, with other ETags.
MAX_SINGLE_PUT = 5 * 1024**3
# Above this a save goes up to AWS in parts while it encodes (below, one PUT after it):
# low, so that encoding and upload overlap for most of a large body.
AWS_MULTIPART_BYTES = 32 * 1024**2
PROGRESS_BYTES = 64 * 1024**2  # transfers this large take seconds: show progress
PART_BYTES = 16 * 1024**2  # multipart part size (S3: at least 5 MiB, at most 10,000 parts)
PART_THREADS = 4  # parts in flight at once: S3 gives each connection its own bandwidth


def _back_off(what: str, exc: Exception, attempt: int) -> None:
    """Wait before retry ``attempt`` + 1: exponential, capped at 5 s, with jitter."""
    delay = min(5.0, 0.2 * 2 ** (attempt - 1)) * (0.5 + random.random())
    log.info("%s failed (%s); retry %d in %.2fs", what, exc, attempt, delay)
    time.sleep(delay)


def _progress(total: int, desc: str) -> Any:
    from tqdm.auto import tqdm

    return tqdm(total=total, unit="B", unit_scale=True, desc=desc, leave=False)


class _ProgressReader(io.BytesIO):
    """The body of a PUT that reports how far the upload got.

    botocore reads the body once for the checksum and again to send it; the bar shows
    the furthest position reached, so it never counts twice.
    """

    def __init__(self, data: bytes, bar: Any) -> None:
        super().__init__(data)
        self._bar = bar
        self._furthest = 0

    def read(self, size: int | None = -1) -> bytes:
        chunk = super().read(size)
        pos = self.tell()
        if pos > self._furthest:
            self._bar.update(pos - self._furthest)
            self._furthest = pos
        return chunk


class SeekableReader(io.RawIOBase):
    """A read-only, seekable file of ``size`` bytes; subclasses say how to read a range.

    botocore rewinds a body to resend it; pyarrow seeks to a Parquet footer, then to
    each column chunk.
    """

    def __init__(self, size: int) -> None:
        super().__init__()
        self._size = size
        self._pos = 0

    def _read_range(self, start: int, n: int) -> Any:
        """Up to ``n`` bytes from ``start`` (bytes-like)."""
        raise NotImplementedError

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._pos

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self._pos, io.SEEK_END: self._size}[whence]
        self._pos = max(0, base + offset)
        return self._pos

    def readinto(self, buffer: Any) -> int:
        n = min(len(buffer), self._size - self._pos)
        if n <= 0:
            return 0
        data = self._read_range(self._pos, n)
        buffer[: len(data)] = data
        self._pos += len(data)
        return len(data)

    def __len__(self) -> int:
        return self._size


class _PartReader(SeekableReader):
    """One part of a body, read in place: no copy of the part while it uploads."""

    def __init__(self, view: memoryview) -> None:
        super().__init__(len(view))
        self._view = view

    def _read_range(self, start: int, n: int) -> Any:
        return self._view[start : start + n]


def _part_size(total: int) -> int:
    """Bytes per part of a multipart upload of ``total`` bytes (S3 allows 10,000 parts)."""
    return max(PART_BYTES, -(-total // 10_000))


# Requests that write into the bucket: refused unless it keeps every version.
_WRITE_OPS = frozenset(
    {
        "put_object",
        "copy_object",
        "delete_object",
        "delete_objects",
        "create_multipart_upload",
        "upload_part",
        "complete_multipart_upload",
    }
)


# What a successful answer always carries; without it, the answer was cut short.
_REQUIRED_FIELDS: dict[str, tuple[str, ...]] = {
    "get_object": ("ETag",),
    "head_object": ("ETag",),
    "put_object": ("ETag",),
    "upload_part": ("ETag",),
    "complete_multipart_upload": ("ETag",),
    "copy_object": ("CopyObjectResult.ETag",),
}


def _md5_etag(body: bytes) -> str:
    """The ETag S3 gives ``body`` sent in one PUT (its MD5)."""
    return f'"{hashlib.md5(body, usedforsecurity=False).hexdigest()}"'


def _multipart_etag(digests: Sequence[bytes]) -> str:
    """The ETag S3 gives an object completed from parts with these MD5 digests: the MD5
    of the digests, and their count."""
    joined = hashlib.md5(b"".join(digests), usedforsecurity=False).hexdigest()
    return f'"{joined}-{len(digests)}"'


def _parts_etag(parts: Sequence[dict[str, Any]]) -> str:
    """:func:`_multipart_etag` from the parts' own ETags; "" if a part's ETag is not an
    MD5 (SSE-KMS)."""
    try:
        digests = [bytes.fromhex(str(p["ETag"]).strip('"')) for p in parts]
    except ValueError:
        return ""
    if any(len(d) != 16 for d in digests):
        return ""
    return _multipart_etag(digests)


def is_aws_endpoint(url: str | None) -> bool:
    """Whether ``url`` is an AWS S3 endpoint (``*.amazonaws.com``, China's ``.com.cn``)."""
    host = urlsplit(url or "").hostname or ""
    return host.endswith((".amazonaws.com", ".amazonaws.com.cn"))


@dataclass(frozen=True)
class Upload:
    """A multipart upload whose parts are sent, waiting for its complete."""

    key: str
    upload_id: str
    parts: tuple[dict[str, Any], ...]


class PartStream(io.RawIOBase):
    """A write-only file whose bytes go up to one key in parts while they are written.

    Nothing is sent before ``when`` gives the object's arguments (the caller may still
    refuse the save); until then the bytes are held. After that, every full part is
    uploaded on a worker thread while the writer goes on, at most ``PART_THREADS`` in
    flight (the writer waits beyond that, so memory stays near that many parts).
    :meth:`finish` sends the rest: the whole body as :meth:`S3Bucket.put` sends it if no
    part was sent, else the last part and the complete, either carrying the conditions
    it is given (the master's compare-and-swap). :meth:`abort` drops whatever was
    started. The object appears when :meth:`finish` returns.

    ``when`` is asked before each write until it returns the object's arguments
    (``Metadata``, ``ContentType``): sending starts then (the writer's thread asks).
    Without it, nothing is sent before :meth:`finish`. Parts go only once the body has
    grown past ``threshold``.
    """

    def __init__(
        self,
        bucket: S3Bucket,
        key: str,
        when: Callable[[], dict[str, Any] | None] | None = None,
        *,
        threshold: int = 0,
    ) -> None:
        super().__init__()
        self._bucket = bucket
        self.key = key
        self._when = when
        self._threshold = threshold
        self._etag: Callable[[], str] = str  # "" until finish knows what it sends
        self._buf = bytearray()
        self.size = 0
        self._args: dict[str, Any] | None = None
        self._upload_id: str | None = None
        self._pool: ThreadPoolExecutor | None = None
        self._sending: list[Any] = []
        self._bar: Any = None

    def writable(self) -> bool:
        return True

    def tell(self) -> int:
        return self.size

    def write(self, data: Any) -> int:
        n = memoryview(data).nbytes
        self.size += n
        if self.size > MAX_SINGLE_PUT:
            raise ValidationError(
                f"{self._bucket.url(self.key)}: the body is over 5 GB, the most S3 copies in "
                "one CopyObject (a save's commit or snapshot). Split the table or archive rows."
            )
        self._buf += data
        if self._args is None and self._when is not None:
            self._args = self._when()
        if self._args is not None and self.size > self._threshold:
            self._send_full_parts()
        return n

    @property
    def etag(self) -> str:
        """The ETag S3 gives the finished object ("" before :meth:`finish` sends its
        last request, or when it cannot be known), to recognise it by."""
        return self._etag()

    def _send_full_parts(self) -> None:
        full = len(self._buf) // PART_BYTES * PART_BYTES
        if not full:
            return
        if self._upload_id is None:
            self._start()
        # one cut from the front for all of them: a body held back until validation
        # passed would otherwise be moved down once per part
        with memoryview(self._buf) as view:
            for start in range(0, full, PART_BYTES):
                self._send(bytes(view[start : start + PART_BYTES]))
        del self._buf[:full]

    def _start(self) -> None:
        assert self._args is not None
        url = self._bucket.url(self.key)
        self._upload_id = self._bucket.call(
            "create_multipart_upload", what=f"START UPLOAD {url}", Key=self.key, **self._args
        )["UploadId"]
        self._pool = ThreadPoolExecutor(PART_THREADS, thread_name_prefix="s3grid-part")

    def _send(self, part: bytes) -> None:
        assert self._pool is not None
        while len([f for f in self._sending if not f.done()]) >= PART_THREADS:
            next(f for f in self._sending if not f.done()).result()  # wait: bounded memory
        for f in self._sending:
            if f.done():
                f.result()  # a failed part fails the stream now, not at the end
        number = len(self._sending) + 1
        if self._bar is None and self.size >= PROGRESS_BYTES:
            self._bar = _progress(0, f"save {self.key}")
        if self._bar is not None:
            self._bar.total = self.size
        self._sending.append(self._pool.submit(self._upload_part, number, part))

    def _upload_part(self, number: int, part: bytes) -> dict[str, Any]:
        resp = self._bucket.call(
            "upload_part",
            what=f"UPLOAD PART {number} of {self._bucket.url(self.key)}",
            Key=self.key,
            UploadId=self._upload_id,
            PartNumber=number,
            Body=_PartReader(memoryview(part)),
        )
        if self._bar is not None:
            self._bar.update(len(part))
        return {"PartNumber": number, "ETag": resp["ETag"]}

    def finish(
        self,
        *,
        conditions: dict[str, Any] | None = None,
        retry: bool = True,
        **kwargs: Any,
    ) -> dict[str, Any]:
        """Send what is left and make the object appear; its answer (``VersionId``,
        ``ETag``). ``conditions`` (``IfMatch``/``IfNoneMatch``) go on the PUT or the
        complete, which is resent as ``retry`` says. ``kwargs``: the object's arguments,
        if ``when`` has not given them."""
        if self._args is None:
            self._args = kwargs
        conditions = conditions or {}
        try:
            if self.size > self._threshold:  # parts held back until the arguments came
                self._send_full_parts()
            if self._upload_id is None:  # nothing sent: as put() sends a body this size
                body = bytes(self._buf)
                self._etag = lambda: self._bucket.etag_of(body)
                return self._bucket.put(self.key, body, retry=retry, **self._args, **conditions)
            if self._buf or not self._sending:
                self._send(bytes(self._buf))
            self._buf = bytearray()
            parts = tuple(f.result() for f in self._sending)
            self._etag = lambda: _parts_etag(parts)
            upload = Upload(self.key, self._upload_id, parts)
            self._upload_id = None  # completed or aborted by complete_upload
            return self._bucket.complete_upload(upload, retry=retry, **conditions)
        except BaseException:
            self.abort()
            raise
        finally:
            self._close_pool()

    def abort(self) -> None:
        """Drop the upload, if one was started; nothing is left behind."""
        self._buf = bytearray()
        self._close_pool()
        if self._upload_id is not None:
            self._bucket.abort_upload(Upload(self.key, self._upload_id, ()))
            self._upload_id = None

    def _close_pool(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None
        if self._bar is not None:
            self._bar.close()
            self._bar = None


class S3Bucket:
    """The one chokepoint for S3 calls: retries with backoff, errors translated.

    Botocore's own retries are switched off so that this class alone decides what is
    safe to send twice; a conditional PUT that may have landed is never blindly resent.
    """

    def __init__(self, cfg: S3GridConfig, client: Any = None) -> None:
        self.cfg = cfg
        self.name = cfg.bucket
        self._client = client if client is not None else self._make_client(cfg)
        # Seen "Enabled": the writes of one save need not ask again (each save asks
        # afresh, as versioning can be suspended at any time).
        self._versioned = False

    @staticmethod
    def _make_client(cfg: S3GridConfig) -> Any:
        try:
            session = boto3.session.Session(profile_name=cfg.profile, region_name=cfg.region)
        except ProfileNotFound as exc:
            raise ConfigError(
                f"AWS profile {cfg.profile!r} not found; check AWS_PROFILE or --profile."
            ) from exc

        def config(path_style: bool) -> Config:
            return Config(
                # One attempt: botocore's "max_attempts" counts retries (1 is two sends);
                # "total_max_attempts" counts sends. S3Bucket.call decides what is resent.
                retries={"total_max_attempts": 1, "mode": "standard"},
                connect_timeout=cfg.connect_timeout,
                read_timeout=cfg.read_timeout,
                # Custom endpoints (moto, MinIO, Ceph) rarely serve virtual-hosted buckets.
                s3={"addressing_style": "path"} if path_style else None,
            )

        client = session.client(
            "s3", endpoint_url=cfg.endpoint_url, config=config(bool(cfg.endpoint_url))
        )
        if not cfg.endpoint_url and not is_aws_endpoint(client.meta.endpoint_url):
            # An endpoint from AWS_ENDPOINT_URL_S3 or the profile: a custom store too.
            client = session.client("s3", config=config(True))
        return client

    @property
    def on_aws(self) -> bool:
        """Whether requests go to AWS S3 itself, judged by the client's real endpoint
        (``endpoint_url``, ``AWS_ENDPOINT_URL_S3`` or the profile's), not by whether an
        endpoint was passed."""
        return is_aws_endpoint(self._client.meta.endpoint_url)

    @property
    def cli_endpoint(self) -> str:
        """What an ``aws`` command for this bucket needs to reach its store: nothing on
        AWS, else `` --endpoint-url <url>``."""
        return "" if self.on_aws else f" --endpoint-url {self._client.meta.endpoint_url}"

    @property
    def multipart_threshold(self) -> int:
        """Bodies larger than this go up in parts: ``cfg.multipart_bytes`` if set, else
        32 MiB on AWS, whose conditional ``CompleteMultipartUpload`` is atomic; on other
        stores one PUT up to S3's 5 GiB limit, as not all of them make that complete
        atomic."""
        if self.cfg.multipart_bytes is not None:
            return self.cfg.multipart_bytes
        return AWS_MULTIPART_BYTES if self.on_aws else MAX_SINGLE_PUT

    @property
    def client(self) -> Any:
        """The underlying boto3 client (for tests and advanced use)."""
        return self._client

    def url(self, key: str, version_id: str | None = None) -> str:
        """``s3://bucket/key`` (with ``?versionId=`` when given), for messages."""
        suffix = f"?versionId={version_id}" if version_id else ""
        return f"s3://{self.name}/{key}{suffix}"

    def call(self, op: str, *, what: str, retry: bool = True, **kwargs: Any) -> Any:
        """Run one boto3 S3 operation.

        Args:
            op: the boto3 method name (``"get_object"``).
            what: a short description for error messages.
            retry: retry transient failures; False sends exactly once.
            **kwargs: the operation's parameters (``Bucket`` is filled in).

        Raises:
            S3GridError: the translated failure, with the botocore error as ``__cause__``.
        """
        kwargs.setdefault("Bucket", self.name)
        if op in _WRITE_OPS and kwargs["Bucket"] == self.name and not self._versioned:
            self.require_versioning()
        attempts = self.cfg.max_attempts if retry else 1
        rewind = getattr(kwargs.get("Body"), "seek", None)
        for attempt in range(1, attempts + 1):
            if rewind is not None:
                rewind(0)  # a retry must send the whole body again
            try:
                try:
                    resp = getattr(self._client, op)(**kwargs)
                except ResponseParserError as exc:  # a body cut short; not a BotoCoreError
                    raise IncompleteResponseError(operation=op, missing=str(exc)) from exc
                self._check_complete(op, resp)
                return resp
            except (ClientError, BotoCoreError) as exc:
                if attempt < attempts and is_transient(exc):
                    _back_off(what, exc, attempt)
                    continue
                raise translate(exc, what=what) from exc
        raise AssertionError("unreachable")  # pragma: no cover

    def _check_complete(self, op: str, resp: Any) -> None:
        """Refuse a success whose headers were cut short (it could pass for a missing ETag
        or a version "null"): the caller treats it like a timeout and settles it."""
        fields = _REQUIRED_FIELDS.get(op, ())
        if self._versioned and op in ("put_object", "complete_multipart_upload", "copy_object"):
            fields = (*fields, "VersionId")  # a versioned bucket names every new version
        missing = []
        for path in fields:
            value = resp
            for part in path.split("."):
                value = value.get(part) if isinstance(value, dict) else None
            if value in (None, ""):
                missing.append(path)
        if missing:
            raise IncompleteResponseError(operation=op, missing="no " + ", ".join(missing))

    def versioning(self) -> str:
        """The bucket's versioning status: ``"Enabled"``, ``"Suspended"`` or ``"Off"``."""
        resp = self.call("get_bucket_versioning", what=f"GET VERSIONING s3://{self.name}")
        status = str(resp.get("Status") or "Off")
        self._versioned = status == "Enabled"
        return status

    def versioning_problem(self, *, fresh: bool = False) -> str | None:
        """Why s3grid may not write to this bucket, or None when versioning is on.

        ``fresh`` asks S3 even if versioning was seen on before (it can be suspended).
        """
        if self._versioned and not fresh:
            return None
        try:
            status = self.versioning()
        except AccessDeniedError as exc:
            return (
                f"s3grid could not check that bucket {self.name!r} keeps versions ({exc}). "
                "Grant s3:GetBucketVersioning on the bucket (`s3grid` README, IAM policy)."
            )
        if status == "Enabled":
            return None
        return (
            f"Bucket {self.name!r} has versioning {status.lower()}: a save would overwrite "
            "the only copy of the master, and snapshots would copy nothing. Turn it on with "
            f"`aws s3api put-bucket-versioning --bucket {self.name} "
            f"--versioning-configuration Status=Enabled{self.cli_endpoint}`, then retry."
        )

    def require_versioning(self, *, fresh: bool = False) -> None:
        """Refuse to write unless the bucket keeps every version (asked once per bucket
        object, or now with ``fresh``: each save asks, as a bucket can be suspended).

        Raises:
            VersioningError: versioning is off or suspended, or cannot be checked.
        """
        problem = self.versioning_problem(fresh=fresh)
        if problem is not None:
            raise VersioningError(problem)

    def get(
        self, key: str, version_id: str | None = None
    ) -> tuple[bytes | bytearray, dict[str, Any]]:
        """GET an object; the body and the response (ETag, VersionId, Metadata).

        botocore checks the body against the checksum the store keeps for the object,
        where it returns one; a body that arrives damaged or cut short is read again
        (``max_attempts`` in all) and never handed on.

        Raises:
            StoreUnavailableError: the body stayed damaged or cut short.
        """
        extra: dict[str, Any] = {"VersionId": version_id} if version_id else {}
        what = f"GET {self.url(key, version_id)}"
        return self._get_object(what, lambda resp: self._read_body(key, resp), Key=key, **extra)

    def _get_object(
        self, what: str, read: Callable[[dict[str, Any]], _B], **kwargs: Any
    ) -> tuple[_B, dict[str, Any]]:
        """One GetObject and ``read`` of its body, both again (``max_attempts`` in all)
        when the body arrives damaged or cut short: a read changes nothing."""
        attempts = self.cfg.max_attempts
        for attempt in range(1, attempts + 1):
            resp = self.call("get_object", what=what, **kwargs)
            try:
                return read(resp), resp
            except (BotoCoreError, OSError) as exc:
                resp["Body"].close()  # its connection is mid-body: not for reuse
                if attempt < attempts and (isinstance(exc, BODY_ERRORS) or is_transient(exc)):
                    _back_off(what, exc, attempt)
                    continue
                raise translate(exc, what=what) from exc
        raise AssertionError("unreachable")  # pragma: no cover

    @staticmethod
    def _read_body(key: str, resp: dict[str, Any]) -> bytes | bytearray:
        size = int(resp.get("ContentLength") or 0)
        if size < PROGRESS_BYTES:
            body: bytes = resp["Body"].read()
            return body
        # large: read in chunks into one preallocated buffer, with progress
        buf = bytearray(size)
        view = memoryview(buf)
        pos = 0
        with _progress(size, f"load {key}") as bar:
            for chunk in resp["Body"].iter_chunks(8 << 20):
                view[pos : pos + len(chunk)] = chunk
                pos += len(chunk)
                bar.update(len(chunk))
        # A short body never gets here: botocore checks the length at its end and
        # raises IncompleteReadError (read again by _get_object). The buffer is handed
        # over as is: bytes(buf) would hold a second copy of a large master.
        return buf

    def head(self, key: str, version_id: str | None = None) -> dict[str, Any] | None:
        """HEAD an object; None when it does not exist."""
        extra: dict[str, Any] = {"VersionId": version_id} if version_id else {}
        try:
            return dict(
                self.call("head_object", what=f"HEAD {self.url(key, version_id)}", Key=key, **extra)
            )
        except NotFoundError:
            return None

    def put(
        self,
        key: str,
        body: bytes,
        *,
        retry: bool = True,
        parts: bool | None = None,
        **kwargs: Any,
    ) -> dict[str, Any]:
        """PUT an object (pass ``IfMatch``/``IfNoneMatch`` through ``kwargs``).

        Up to :attr:`multipart_threshold`, one request; above, a multipart upload whose
        complete carries the condition (boto3's managed transfer does not take
        ``IfMatch``). Either way the object appears, or not, in one atomic step where
        the store makes the complete atomic (``s3grid check-store`` tells).
        ``parts``: True or False overrides the choice by size (the store check).

        Raises:
            ValidationError: the body is over 5 GiB.
        """
        if len(body) > MAX_SINGLE_PUT:
            raise ValidationError(
                f"{self.url(key)}: {len(body) / 1e9:.1f} GB is over 5 GB, the most S3 takes "
                "in one PUT or copies in one CopyObject (the save's snapshot). Split the "
                "table or archive rows."
            )
        if parts is None:
            parts = len(body) > self.multipart_threshold
        try:
            if parts:
                return self._put_in_parts(key, body, retry=retry, **kwargs)
            return self._send(key, body, retry=retry, **kwargs)
        except ConflictError:
            # An earlier attempt of this very PUT may have landed with its answer lost:
            # the resend then finds the key taken. Taken by exactly these bytes is done.
            if kwargs.get("IfNoneMatch") == "*":
                head = self.head(key)
                if head is not None and head.get("ETag") == self.etag_of(body):
                    return head
            raise

    def etag_of(self, body: bytes) -> str:
        """The ETag S3 gives ``body`` as :meth:`put` uploads it (MD5, or MD5 of the
        parts' MD5s). Objects encrypted with SSE-KMS have other ETags: no match then."""
        if len(body) <= self.multipart_threshold:
            return _md5_etag(body)
        size = _part_size(len(body))
        return _multipart_etag(
            [
                hashlib.md5(body[i : i + size], usedforsecurity=False).digest()
                for i in range(0, len(body), size)
            ]
        )

    def _send(self, key: str, body: bytes, *, retry: bool, **kwargs: Any) -> dict[str, Any]:
        payload: Any = body
        bar = None
        if len(body) >= PROGRESS_BYTES:
            bar = _progress(len(body), f"save {key}")
            payload = _ProgressReader(body, bar)
        try:
            return dict(
                self.call(
                    "put_object",
                    what=f"PUT {self.url(key)}",
                    retry=retry,
                    Key=key,
                    Body=payload,
                    **kwargs,
                )
            )
        finally:
            if bar is not None:
                bar.close()

    def _put_in_parts(self, key: str, body: bytes, *, retry: bool, **kwargs: Any) -> dict[str, Any]:
        """A multipart upload: parts in parallel, then one conditional complete.

        Nothing is visible until the complete, which S3 checks against ``IfMatch`` /
        ``IfNoneMatch`` like a PUT.
        """
        conditions = {k: kwargs.pop(k) for k in ("IfMatch", "IfNoneMatch") if k in kwargs}
        return self.complete_upload(
            self.upload_parts(key, body, **kwargs), retry=retry, **conditions
        )

    def upload_parts(self, key: str, body: bytes, **kwargs: Any) -> Upload:
        """Start a multipart upload of ``body`` and send its parts (safe to resend, so
        retried); nothing is visible until :meth:`complete_upload`. A failed part aborts
        the upload (S3 would otherwise bill the orphaned parts)."""
        url = self.url(key)
        upload_id = self.call(
            "create_multipart_upload", what=f"START UPLOAD {url}", Key=key, **kwargs
        )["UploadId"]
        upload = Upload(key, upload_id, ())
        view = memoryview(body)
        size = _part_size(len(body))
        bounds = [(i + 1, start) for i, start in enumerate(range(0, len(body), size))]
        bar = _progress(len(body), f"save {key}") if len(body) >= PROGRESS_BYTES else None

        def send(number: int, start: int) -> dict[str, Any]:
            part = view[start : start + size]
            resp = self.call(
                "upload_part",
                what=f"UPLOAD PART {number}/{len(bounds)} of {url}",
                Key=key,
                UploadId=upload_id,
                PartNumber=number,
                Body=_PartReader(part),
            )
            if bar is not None:
                bar.update(len(part))
            return {"PartNumber": number, "ETag": resp["ETag"]}

        pool = ThreadPoolExecutor(PART_THREADS, thread_name_prefix="s3grid-part")
        try:
            try:
                futures = [pool.submit(send, number, start) for number, start in bounds]
                return replace(upload, parts=tuple(f.result() for f in futures))
            finally:  # on a failed part, the parts not yet started are not sent at all
                pool.shutdown(wait=True, cancel_futures=True)
        except BaseException:
            self.abort_upload(upload)
            raise
        finally:
            if bar is not None:
                bar.close()

    def complete_upload(
        self, upload: Upload, *, retry: bool = True, **conditions: Any
    ) -> dict[str, Any]:
        """Complete ``upload`` (``IfMatch`` / ``IfNoneMatch`` in ``conditions``): the
        object appears in one step, or not at all and the upload is aborted. The
        complete is resent as ``retry`` says."""
        try:
            return dict(
                self.call(
                    "complete_multipart_upload",
                    what=f"COMPLETE UPLOAD {self.url(upload.key)}",
                    retry=retry,
                    Key=upload.key,
                    UploadId=upload.upload_id,
                    MultipartUpload={"Parts": list(upload.parts)},
                    **conditions,
                )
            )
        except BaseException:
            self.abort_upload(upload)  # harmless after a complete that did land
            raise

    def abort_upload(self, upload: Upload) -> None:
        """Abort ``upload``, logging (not raising) a failure to do so."""
        try:
            self.call(
                "abort_multipart_upload",
                what=f"ABORT UPLOAD {self.url(upload.key)}",
                Key=upload.key,
                UploadId=upload.upload_id,
            )
        except S3GridError as exc:
            log.warning("Could not abort upload %s of %s: %s", upload.upload_id, upload.key, exc)

    def copy(
        self, src_key: str, src_version: str | None, dst_key: str, **kwargs: Any
    ) -> dict[str, Any]:
        """Server-side copy of exactly one version (no second upload of the bytes); the
        answer (``VersionId``, ``CopyObjectResult.ETag``). Conditions on the destination
        (``IfMatch``/``IfNoneMatch``) and ``retry`` pass through ``kwargs``."""
        source = {"Bucket": self.name, "Key": src_key}
        if src_version:
            source["VersionId"] = src_version
        return dict(
            self.call(
                "copy_object",
                what=f"COPY {self.url(src_key, src_version)} -> {self.url(dst_key)}",
                Key=dst_key,
                CopySource=source,
                **kwargs,
            )
        )

    def get_range(self, key: str, start: int, length: int) -> bytes:
        """``length`` bytes of ``key`` from ``start`` (a ranged GET; read again if cut
        short, as :meth:`get`)."""
        body, _ = self._get_object(
            f"GET {self.url(key)} (bytes {start}-{start + length - 1})",
            lambda resp: bytes(resp["Body"].read()),
            Key=key,
            Range=f"bytes={start}-{start + length - 1}",
        )
        return body

    def delete(self, key: str) -> None:
        """DELETE an object (on a versioned bucket this adds a delete marker)."""
        self.call("delete_object", what=f"DELETE {self.url(key)}", Key=key)

    def stream(
        self,
        key: str,
        when: Callable[[], dict[str, Any] | None] | None = None,
        *,
        threshold: int = 0,
    ) -> PartStream:
        """A file to write ``key`` through in parts as its bytes are made (see
        :class:`PartStream`)."""
        return PartStream(self, key, when, threshold=threshold)

    def delete_many(self, keys: Sequence[str], *, what: str) -> None:
        """DELETE ``keys``, a thousand per request (S3's limit)."""
        self._delete_objects([{"Key": k} for k in keys], what=what)

    def delete_versions(self, prefix: str) -> int:
        """Remove every version and delete marker under ``prefix`` for good (scratch
        objects only: the master's history is never deleted this way); their count."""
        gone = [
            {"Key": v["Key"], "VersionId": v["VersionId"]}
            for page in self._version_pages(prefix)
            for v in page.get("Versions", []) + page.get("DeleteMarkers", [])
        ]
        self._delete_objects(gone, what=f"DELETE VERSIONS {self.url(prefix)}")
        return len(gone)

    def _delete_objects(self, objects: Sequence[dict[str, str]], *, what: str) -> None:
        for i in range(0, len(objects), 1000):  # S3 takes a thousand per request
            self.call(
                "delete_objects",
                what=what,
                Delete={"Objects": list(objects[i : i + 1000]), "Quiet": True},
            )

    def list_objects(self, prefix: str) -> Iterator[dict[str, Any]]:
        """All objects under ``prefix`` (Key, Size, LastModified, ETag)."""
        token: str | None = None
        while True:
            extra: dict[str, Any] = {"ContinuationToken": token} if token else {}
            page = self.call(
                "list_objects_v2", what=f"LIST {self.url(prefix)}", Prefix=prefix, **extra
            )
            yield from page.get("Contents", [])
            if not page.get("IsTruncated"):
                return
            token = page["NextContinuationToken"]

    def newest_versions(self, key: str, count: int = 100) -> list[dict[str, Any]]:
        """Up to ``count`` of the newest versions of exactly ``key``, newest first, from
        one request (delete markers excluded)."""
        page = self.call(
            "list_object_versions",
            what=f"LIST VERSIONS {self.url(key)}",
            Prefix=key,
            MaxKeys=count,
        )
        return [v for v in page.get("Versions", []) if v["Key"] == key]

    def list_versions(self, key: str) -> Iterator[dict[str, Any]]:
        """Every version of exactly ``key``, newest first (delete markers excluded)."""
        for page in self._version_pages(key):
            yield from (v for v in page.get("Versions", []) if v["Key"] == key)

    def _version_pages(self, prefix: str) -> Iterator[dict[str, Any]]:
        """The ListObjectVersions pages under ``prefix``, followed to the last."""
        markers: dict[str, Any] = {}
        while True:
            page = self.call(
                "list_object_versions",
                what=f"LIST VERSIONS {self.url(prefix)}",
                Prefix=prefix,
                **markers,
            )
            yield page
            if not page.get("IsTruncated"):
                return
            markers = {
                "KeyMarker": page["NextKeyMarker"],
                "VersionIdMarker": page["NextVersionIdMarker"],
            }
