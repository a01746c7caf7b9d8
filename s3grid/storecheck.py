"""``s3grid check-store``: is s3grid's locked save safe on this bucket's store?

s3grid's promise rests on a few behaviours of the store: versioning, conditional writes
that are refused when stale, exactly one winner among racing conditional writes, copies
and reads of an exact version, and versions listed newest first. AWS S3 documents all of
them; S3-compatible stores (SeaweedFS, MinIO, Ceph) differ in places. This module tries
each one with scratch objects under ``s3grid-check-store/<run id>/`` and removes every
version of them afterwards.

It also tries a conditional ``CopyObject`` (``If-Match`` on the destination): saves with
``commit="copy"`` (``S3GRID_COMMIT=copy``) stream their body to the snapshot while
encoding and commit with that copy, so they need it to be atomic. Where it is, the
report says so, as the faster way to save large masters there.

Verdicts:

- ``safe``: every behaviour a save relies on holds, multipart completes included.
- ``safe with single PUTs only``: everything holds except that a conditional multipart
  complete is not atomic. s3grid saves with one PUT (up to 5 GB) on any store that is not
  AWS, so this is safe for s3grid; on AWS it would not be, and is reported ``unsafe``.
- ``unsafe``: a behaviour s3grid relies on does not hold (the reason is given).
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

from s3grid.errors import ConflictError, S3GridError, ValidationError
from s3grid.layout import check_store_prefix, new_run_id
from s3grid.s3 import MAX_SINGLE_PUT, S3Bucket

__all__ = [
    "SAFE",
    "SINGLE_PUTS_ONLY",
    "UNSAFE",
    "StoreCheck",
    "StoreReport",
    "check_store",
    "verdict_of",
]

SAFE = "safe"
SINGLE_PUTS_ONLY = "safe with single PUTs only"
UNSAFE = "unsafe"

RACERS = 8
BIG_BODY = 8 * 1024**2
MULTIPART_CHECK = "multipart complete with If-Match"
COPY_CHECK = "CopyObject with If-Match"


@dataclass(frozen=True)
class StoreCheck:
    """One behaviour tried: whether it held, what was seen, and whether s3grid needs it
    (``required``) or only its multipart saves do."""

    name: str
    ok: bool
    detail: str
    required: bool = True


@dataclass(frozen=True)
class StoreReport:
    """What :func:`check_store` found, with the verdict and its reason."""

    location: str
    endpoint: str
    aws: bool
    checks: tuple[StoreCheck, ...]
    verdict: str
    reason: str

    @property
    def safe(self) -> bool:
        """True unless the verdict is ``unsafe`` (the CLI's exit status 0)."""
        return self.verdict != UNSAFE

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict (``s3grid check-store --json``)."""
        return {**asdict(self), "checks": [asdict(c) for c in self.checks]}

    def __str__(self) -> str:
        lines = [f"Store check of {self.location} ({self.endpoint})"]
        width = max(len(c.name) for c in self.checks) if self.checks else 0
        for c in self.checks:
            mark = "ok  " if c.ok else ("FAIL" if c.required else "no  ")
            lines.append(f"  {mark} {c.name:<{width}}  {c.detail}")
        lines.append(f"Verdict: {self.verdict}: {self.reason}")
        return "\n".join(lines)


def check_store(bucket: S3Bucket, *, rounds: int = 5, big_body: int = BIG_BODY) -> StoreReport:
    """Try each behaviour s3grid relies on against ``bucket``'s store; clean up after.

    Args:
        bucket: the bucket (its endpoint and credentials are the ones checked).
        rounds: race rounds per body size (each has :data:`RACERS` writers; a race
            that is not atomic often has one winner by chance, so one round is not
            enough); the multipart race, whose rounds are cheap and which stops at the
            first round with two winners, runs four times as many.
        big_body: the larger race body, in bytes.

    Returns:
        The report; nothing of it stays in the bucket (every scratch version is removed).

    Raises:
        ValidationError: ``rounds`` is below 1.
        StoreUnavailableError: the store cannot be reached.
    """
    if rounds < 1:
        raise ValidationError(f"rounds={rounds}: a race needs at least one round.")
    prefix = check_store_prefix(new_run_id())
    problem = bucket.versioning_problem(fresh=True)
    checks = [
        StoreCheck(
            "versioning",
            problem is None,
            "enabled: every save keeps the version before it"
            if problem is None
            else f"{problem} Nothing else was tried: s3grid does not write there.",
        )
    ]
    if problem is None:
        probe = _Probe(bucket, prefix)
        try:
            checks += [
                probe.run("If-Match refused when stale", probe.if_match),
                probe.run("If-None-Match: * honoured", probe.if_none_match),
                probe.run(
                    f"race of {RACERS} conditional PUTs",
                    lambda: probe.race(rounds, (1024, big_body), parts=False),
                ),
                probe.run("CopyObject of a VersionId", probe.copy_version),
                probe.run("ListObjectVersions newest first", probe.version_order),
                probe.run(
                    COPY_CHECK,
                    lambda: probe.race(rounds, (1024, big_body), copy=True),
                    required=bucket.cfg.commit == "copy",  # the commit of a streamed save
                ),
                probe.run(
                    MULTIPART_CHECK,
                    # the completes race however small the parts: many cheap rounds
                    lambda: probe.race(4 * rounds, (1024,), parts=True),
                    # s3grid saves in parts on AWS, or where multipart_bytes asks for it
                    required=bucket.multipart_threshold < MAX_SINGLE_PUT,
                ),
            ]
        finally:
            bucket.delete_versions(prefix)
    verdict, reason = verdict_of(checks)
    return StoreReport(
        location=bucket.url(prefix),
        endpoint=str(bucket.client.meta.endpoint_url),
        aws=bucket.on_aws,
        checks=tuple(checks),
        verdict=verdict,
        reason=reason,
    )


def verdict_of(checks: list[StoreCheck]) -> tuple[str, str]:
    """The verdict and its reason: unsafe if a required check failed; safe with single
    PUTs only if the multipart check failed where it is not required; else safe."""
    failed = [c for c in checks if not c.ok and c.required]
    if failed:
        return UNSAFE, "; ".join(f"{c.name}: {c.detail}" for c in failed)
    copy_hint = ""
    if any(c.name == COPY_CHECK and c.ok and not c.required for c in checks):
        copy_hint = (
            " A conditional copy is atomic here too: S3GRID_COMMIT=copy (S3GridConfig("
            'commit="copy")) streams saves of large masters while they encode.'
        )
    if any(c.name == MULTIPART_CHECK and not c.ok for c in checks):
        return SINGLE_PUTS_ONLY, (
            "a conditional multipart complete is not atomic here; s3grid saves with one "
            "PUT on stores other than AWS (up to 5 GB), so its saves are safe." + copy_hint
        )
    unused = [c.name for c in checks if not c.ok]
    return SAFE, "every behaviour s3grid's saves rely on holds" + (
        f" ({', '.join(unused)}: not atomic, and not used by a save)." if unused else "."
    ) + copy_hint


class _NotAsExpected(Exception):
    """A behaviour did not hold; the message says what was seen."""


class _Probe:
    def __init__(self, bucket: S3Bucket, prefix: str) -> None:
        self.bucket, self.prefix = bucket, prefix
        self._n = 0

    def key(self, name: str) -> str:
        self._n += 1
        return f"{self.prefix}{name}-{self._n}"

    def run(self, name: str, attempt: Callable[[], str], *, required: bool = True) -> StoreCheck:
        try:
            return StoreCheck(name, True, attempt(), required)
        except _NotAsExpected as exc:
            return StoreCheck(name, False, str(exc), required)
        except S3GridError as exc:
            return StoreCheck(name, False, f"could not be tried: {exc}", required)

    def put(self, key: str, body: bytes, **kwargs: Any) -> dict[str, Any]:
        return self.bucket.put(key, body, retry=False, **kwargs)

    def refused(self, key: str, body: bytes, **kwargs: Any) -> bool:
        try:
            self.put(key, body, **kwargs)
        except ConflictError:
            return True
        return False

    def if_match(self) -> str:
        key = self.key("if-match")
        etag = self.put(key, b"first")["ETag"]
        if not self.refused(key, b"stale", IfMatch='"0123456789abcdef0123456789abcdef"'):
            raise _NotAsExpected("a PUT with a stale If-Match was stored (no 412)")
        if self.refused(key, b"current", IfMatch=etag):
            raise _NotAsExpected("a PUT with the current ETag as If-Match was refused")
        if self.bucket.get(key)[0] != b"current":
            raise _NotAsExpected("the object does not hold the one accepted PUT")
        return "412 for a stale ETag; the current one accepted"

    def if_none_match(self) -> str:
        key = self.key("if-none-match")
        if self.refused(key, b"new", IfNoneMatch="*"):
            raise _NotAsExpected("a PUT with If-None-Match: * on a new key was refused")
        if not self.refused(key, b"again", IfNoneMatch="*"):
            raise _NotAsExpected("a PUT with If-None-Match: * replaced an existing object")
        return "a new key written; an existing one refused"

    def race(
        self, rounds: int, sizes: tuple[int, ...], *, parts: bool = False, copy: bool = False
    ) -> str:
        """``rounds`` rounds per size of :data:`RACERS` writers with one If-Match: exactly
        one wins, and the object then holds the winner's bytes. The writers PUT, complete
        multipart uploads (``parts``), or server-side copy objects onto it (``copy``)."""
        seen = []
        for size in sizes:
            for _ in range(rounds):
                key = self.key("race")
                etag = self.put(key, b"start", parts=parts)["ETag"]
                bodies = [bytes([i]) * size for i in range(RACERS)]
                won = self._race_once(key, etag, bodies, parts=parts, copy=copy)
                if len(won) != 1:
                    raise _NotAsExpected(
                        f"{len(won)} of {RACERS} writers with the same If-Match succeeded "
                        f"({_size(size)} bodies); exactly one may"
                    )
                if self.bucket.get(key)[0] != bodies[won[0]]:
                    raise _NotAsExpected("the object does not hold the winner's bytes")
                seen.append(size)
        sizes_text = " and ".join(_size(s) for s in sizes)
        what = "multipart completes" if parts else "copies" if copy else "PUTs"
        return f"{len(seen)} rounds ({sizes_text} {what}): one winner each"

    def _race_once(
        self, key: str, etag: str, bodies: list[bytes], *, parts: bool, copy: bool = False
    ) -> list[int]:
        """Which writers of ``bodies`` won. With ``parts``, every upload's parts are sent
        first, so the completes themselves race, as two savers' would; with ``copy``,
        each body is first stored under a key of its own, and the copies race."""
        if copy:
            sources = [self.key("copy-source") for _ in bodies]
            for source, body in zip(sources, bodies, strict=True):
                self.put(source, body)

            def write(i: int) -> None:
                self.bucket.copy(sources[i], None, key, IfMatch=etag, retry=False)

        elif parts:
            uploads = [self.bucket.upload_parts(key, body) for body in bodies]

            def write(i: int) -> None:
                self.bucket.complete_upload(uploads[i], retry=False, IfMatch=etag)

        else:

            def write(i: int) -> None:
                self.put(key, bodies[i], IfMatch=etag)

        won: list[int] = []
        errors: list[BaseException] = []
        start = threading.Barrier(len(bodies))

        def race(i: int) -> None:
            start.wait()
            try:
                write(i)
                won.append(i)
            except ConflictError:
                pass  # refused (412), or a conditional write in flight (409): lost
            except BaseException as exc:  # any other answer is worth reporting
                errors.append(exc)

        threads = [threading.Thread(target=race, args=(i,)) for i in range(len(bodies))]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        if errors:
            raise errors[0]
        return won

    def copy_version(self) -> str:
        key, copy = self.key("copy"), self.key("copy-target")
        first = self.put(key, b"version one")
        self.put(key, b"version two")
        version = first.get("VersionId")
        if not version:
            raise _NotAsExpected("a PUT answered without a VersionId")
        self.bucket.copy(key, version, copy)
        if self.bucket.get(copy)[0] != b"version one":
            raise _NotAsExpected("the copy holds another version's bytes")
        if self.bucket.get(key, version)[0] != b"version one":
            raise _NotAsExpected("a GET of the old VersionId returned other bytes")
        return "the copy and a GET of the old version hold its bytes"

    def version_order(self) -> str:
        key = self.key("versions")
        made = [self.put(key, f"v{i}".encode()).get("VersionId") for i in range(3)]
        listed = [v["VersionId"] for v in self.bucket.newest_versions(key)]
        if listed != made[::-1]:
            raise _NotAsExpected(f"listed {listed}, written {made} (oldest first)")
        return "3 versions listed newest first"


def _size(n: int) -> str:
    return f"{n / 1024**2:.0f} MiB" if n >= 1024**2 else f"{n / 1024:.0f} KiB"
