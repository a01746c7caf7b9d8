"""The commit: what every save writes and checks, and the conditional write itself.

:class:`SaveMetadata` is everything a version carries about the save that wrote it (so
reconcile can rebuild its snapshot and audit from the version alone); :class:`ExpectEtag`
is the commit's precondition, turned into request conditions and checked against a HEAD
(pure). :func:`commit` is the compare-and-swap on the master, the one place it is
written; :func:`confirm_commit` finds the committed version in the listing and names any
version that slipped in between (a lost update). Both talk to S3 through
:class:`~s3grid.s3.S3Bucket` only.
"""

from __future__ import annotations

import getpass
import logging
import time
import unicodedata
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any
from urllib.parse import quote, unquote

from s3grid.audit import format_timestamp, parse_timestamp
from s3grid.config import S3GridConfig
from s3grid.diff import (
    ChangeCounts,
)
from s3grid.errors import (
    ConflictError,
    NotFoundError,
    StoreUnavailableError,
    ValidationError,
)
from s3grid.formats import content_type

if TYPE_CHECKING:
    from s3grid.s3 import PartStream, S3Bucket

__all__ = [
    "MAX_NOTE_CHARS",
    "ExpectEtag",
    "SaveMetadata",
    "SaveNotFoundError",
    "check_note",
    "check_unchanged",
    "commit",
    "commit_copy",
    "confirm_commit",
    "current_user",
    "metadata_note",
    "new_save_id",
    "unreachable",
]

log = logging.getLogger(__name__)

MAX_NOTE_CHARS = 1000
# S3 limits user metadata to 2 KB in total; the note gets what the other fields leave.
NOTE_METADATA_BYTES = 1200
_META = "s3grid-"
# S3 keeps 2 KB of user metadata per object: the CSV types' share comes off the note's.
TYPES_METADATA_BYTES = 900


@dataclass(frozen=True)
class SaveMetadata:
    """The s3grid metadata carried by every master version s3grid writes.

    It is everything reconcile needs to rebuild the snapshot and audit keys and the
    audit record, so a repair never depends on anything but the version itself.
    """

    save_id: str
    saved_at: datetime
    user: str
    source: str
    note: str
    base_version: str | None
    base_etag: str | None
    row_count: int
    column_count: int
    changes: ChangeCounts = field(default_factory=ChangeCounts)
    note_truncated: bool = False
    column_types: str = ""  # a CSV master's declared types (formats.csv_types_text)

    def to_s3(self) -> dict[str, str]:
        """As S3 user metadata (ASCII only, so text is percent-encoded)."""
        note, truncated = metadata_note(
            self.note, limit=NOTE_METADATA_BYTES - len(self.column_types)
        )
        c = self.changes
        return {
            f"{_META}save-id": self.save_id,
            f"{_META}saved-at": format_timestamp(self.saved_at),
            f"{_META}user": quote(self.user, safe=""),
            f"{_META}source": self.source,
            f"{_META}note": note,
            f"{_META}note-truncated": "1" if truncated else "0",
            f"{_META}base-version": self.base_version or "",
            f"{_META}base-etag": self.base_etag or "",
            f"{_META}shape": f"{self.row_count}x{self.column_count}",
            f"{_META}changes": f"{c.cells_changed},{c.rows_added},{c.rows_deleted}",
            **({f"{_META}types": self.column_types} if self.column_types else {}),
        }

    @classmethod
    def from_s3(cls, metadata: dict[str, str]) -> SaveMetadata | None:
        """Parse S3 user metadata; None when the version was not written by s3grid."""
        m = {k.lower(): v for k, v in metadata.items()}
        save_id = m.get(f"{_META}save-id")
        if not save_id:
            return None
        try:
            rows, cols = (int(x) for x in m.get(f"{_META}shape", "0x0").split("x"))
            cells, added, deleted = (int(x) for x in m.get(f"{_META}changes", "0,0,0").split(","))
            return cls(
                save_id=save_id,
                saved_at=parse_timestamp(m[f"{_META}saved-at"]),
                user=unquote(m.get(f"{_META}user", "")),
                source=m.get(f"{_META}source", "editor"),
                note=unquote(m.get(f"{_META}note", "")),
                base_version=m.get(f"{_META}base-version") or None,
                base_etag=m.get(f"{_META}base-etag") or None,
                row_count=rows,
                column_count=cols,
                changes=ChangeCounts(cells, added, deleted),
                note_truncated=m.get(f"{_META}note-truncated") == "1",
                column_types=m.get(f"{_META}types", ""),
            )
        except (KeyError, ValueError):
            log.warning("ignoring malformed s3grid metadata: %r", metadata)
            return None


@dataclass(frozen=True)
class ExpectEtag:
    """The commit's precondition: the master is still the version the caller loaded.

    ``etag=None`` means "the master must not exist yet" (a first save). Pure: it turns
    into request conditions and validates a HEAD result, but does no I/O itself.
    """

    etag: str | None
    version_id: str | None = None

    def conditions(self) -> dict[str, Any]:
        """The ``put_object`` condition arguments for this expectation."""
        return {"IfMatch": self.etag} if self.etag else {"IfNoneMatch": "*"}

    def holds(self, current: dict[str, Any] | None) -> bool:
        """Whether a HEAD response (None: no object) satisfies the expectation."""
        if self.etag is None:
            return current is None
        return current is not None and current.get("ETag") == self.etag

    def validate(self, current: dict[str, Any] | None, *, key: str) -> None:
        """Raise :class:`ConflictError` unless ``current`` is the expected version."""
        if self.holds(current):
            return
        meta = SaveMetadata.from_s3(current.get("Metadata", {})) if current else None
        if self.etag is None:
            what = f"{key} already exists (version {current and current.get('VersionId')})"
        elif current is None:
            what = f"{key} was deleted since you loaded it"
        else:
            who = f" by {meta.user} at {format_timestamp(meta.saved_at)}" if meta else ""
            what = (
                f"{key} was changed{who} since you loaded version {self.version_id}; "
                f"it is now version {current.get('VersionId')}"
            )
        raise ConflictError(
            f"Conflict: {what}. Nothing was written. Reload (or merge your edits onto the "
            "new version) and save again.",
            key=key,
            base_version=self.version_id,
            base_etag=self.etag,
            current_version=current.get("VersionId") if current else None,
            current_etag=current.get("ETag") if current else None,
            saved_by=meta.user if meta else None,
            saved_at=format_timestamp(meta.saved_at) if meta else None,
            current_note=meta.note if meta else None,
        )


def metadata_note(note: str, limit: int = NOTE_METADATA_BYTES) -> tuple[str, bool]:
    """The note percent-encoded for metadata, cut to fit between whole characters.

    A cut never splits a character's bytes, nor a character from the accents, joiners
    and variation selectors that follow it. Returns ``(encoded, truncated)``.
    """
    encoded = quote(note, safe="")
    if len(encoded) <= limit:
        return encoded, False
    end, size = 0, 0
    for ch in note:
        size += len(quote(ch, safe=""))
        if size > limit:
            break
        end += 1
    while end > 0 and _joins_previous(note, end):
        end -= 1
    return quote(note[:end], safe=""), True


def _joins_previous(text: str, i: int) -> bool:
    """Whether ``text[i]`` belongs to the character before it (a mark, a joiner)."""
    ch = text[i]
    return (
        unicodedata.category(ch).startswith("M")
        or ch in "\u200d\ufe0e\ufe0f"
        or text[i - 1] == "\u200d"
        or 0x1F3FB <= ord(ch) <= 0x1F3FF  # skin-tone modifiers
    )


def new_save_id(saved_at: datetime) -> str:
    """16 hex digits: the microsecond (5 digits), then 11 random ones.

    Keys carry only whole seconds; leading with the microsecond makes saves within one
    second sort by time too.
    """
    return f"{saved_at.microsecond:05x}{uuid.uuid4().hex[:11]}"


def current_user() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):  # no passwd entry, e.g. in some containers
        return "unknown"


def check_note(note: str) -> str:
    """Validate a save note: required (not blank); any Unicode and newlines, but bounded
    and without control codes.

    Raises:
        ValidationError: the note is blank, too long or holds control characters.
    """
    if not isinstance(note, str):
        raise ValidationError(f"The note must be text, got {type(note).__name__}.")
    if not note.strip():
        raise ValidationError(
            "A save needs a note: say what changed and why. It goes into the audit, where "
            "colleagues (and you, later) read why this version exists. Nothing was written."
        )
    if len(note) > MAX_NOTE_CHARS:
        raise ValidationError(
            f"The note is {len(note)} characters; the limit is {MAX_NOTE_CHARS}. "
            "Shorten it (link to a longer description instead)."
        )
    surrogates = sorted({f"U+{ord(ch):04X}" for ch in note if unicodedata.category(ch) == "Cs"})
    if surrogates:
        raise ValidationError(
            f"The note contains {', '.join(surrogates)}, half of a character that cannot be "
            "stored as text (often from a broken copy and paste); retype that part."
        )
    bad = sorted(
        {f"U+{ord(ch):04X}" for ch in note if unicodedata.category(ch) == "Cc" and ch not in "\n\t"}
    )
    if bad:
        raise ValidationError(
            f"The note contains control characters {', '.join(bad)}; remove them "
            "(newlines and tabs are fine)."
        )
    return note


# ------------------------------------------------------------------- the commit


class SaveNotFoundError(StoreUnavailableError):
    """A commit whose answer was garbled, and whose version the listing does not show."""


def unreachable(url: str, exc: Exception) -> StoreUnavailableError:
    """The error for a save that could not reach S3 before anything was sent."""
    return StoreUnavailableError(
        f"Could not save to {url}: S3 is unreachable ({exc}). Nothing was written; your "
        "edits are kept. Check the endpoint and retry.",
    )


def confirm_commit(
    bucket: S3Bucket,
    cfg: S3GridConfig,
    version_id: str,
    etag: str,
    expect: ExpectEtag,
    meta: SaveMetadata,
) -> tuple[str, str, tuple[str, ...]]:
    """The committed ``(version_id, etag)`` as S3 lists them, and the versions between
    ours and our base: non-empty only if a write slipped past the lock.

    S3 lists a key's versions newest first; the one just before ours must be the base.
    When the commit's answer named a version the listing does not hold (headers cut
    mid-value), ours is found among the newest by its save id.

    Raises:
        StoreUnavailableError: the committed version cannot be found (maybe_committed).
    """
    key = cfg.master_key
    listed = bucket.newest_versions(key, 100)
    ids = [v["VersionId"] for v in listed]
    if version_id not in ids:
        version_id = _find_save(bucket, cfg, listed, expect, meta)
    etag = listed[ids.index(version_id)].get("ETag") or etag
    if expect.version_id is None:
        return version_id, etag, ()  # a first save: nothing to compare
    older = ids[ids.index(version_id) + 1 :]
    if not older or older[0] == expect.version_id:
        return version_id, etag, ()
    if expect.version_id in older:
        return version_id, etag, tuple(older[: older.index(expect.version_id)])
    return version_id, etag, (older[0],)


def _find_save(
    bucket: S3Bucket,
    cfg: S3GridConfig,
    listed: list[dict[str, Any]],
    expect: ExpectEtag,
    meta: SaveMetadata,
) -> str:
    """The VersionId of save ``meta`` among the newest listed versions (newer than the base)."""
    for version in listed:
        if version["VersionId"] == expect.version_id:
            break
        head = bucket.head(cfg.master_key, version["VersionId"])
        found = SaveMetadata.from_s3(head.get("Metadata", {})) if head else None
        if found is not None and found.save_id == meta.save_id:
            return str(version["VersionId"])
    raise SaveNotFoundError(
        f"The save to {cfg.uri} was committed, but S3's answer was garbled and its "
        f"version could not be found. Reload to see it, then run `s3grid reconcile`.",
        maybe_committed=True,
    )


def check_unchanged(bucket: S3Bucket, key: str, expect: ExpectEtag) -> None:
    """Raise :class:`ConflictError` if the master is no longer the expected version."""
    url = bucket.url(key)
    try:
        current = bucket.head(key)
    except StoreUnavailableError as exc:
        raise unreachable(url, exc) from exc
    expect.validate(current, key=url)


def commit(
    bucket: S3Bucket, cfg: S3GridConfig, body: bytes, expect: ExpectEtag, meta: SaveMetadata
) -> tuple[str, str]:
    """The compare-and-swap: PUT the master only if it is still the expected version.

    Returns ``(version_id, etag)`` of the committed version. Any doubt (a timeout, a
    412 after a resend) is settled by HEADing the master and comparing the save id.
    """

    def put() -> dict[str, Any]:
        return bucket.put(
            cfg.master_key,
            body,
            retry=False,
            Metadata=meta.to_s3(),
            ContentType=content_type(cfg.file_format),
            **expect.conditions(),
        )

    # no s3grid metadata in a HEAD (not ours, or its headers were cut): the body names
    # its save id too, so an ETag equal to our body's is our version
    return _swap(bucket, cfg, put, expect, meta, body_etag=lambda: bucket.etag_of(body))


def commit_copy(
    bucket: S3Bucket,
    cfg: S3GridConfig,
    source: tuple[str, str],
    expect: ExpectEtag,
    meta: SaveMetadata,
) -> tuple[str, str]:
    """The compare-and-swap by server-side copy: copy ``source`` (``(key, version_id)``,
    the new body already uploaded with ``meta`` as its metadata) onto the master only if
    the master is still the expected version. As :func:`commit` otherwise; as atomic as
    the store's conditional ``CopyObject`` (``s3grid check-store``)."""

    def copy() -> dict[str, Any]:
        resp = bucket.copy(*source, cfg.master_key, retry=False, **expect.conditions())
        return {"VersionId": resp.get("VersionId"), "ETag": resp["CopyObjectResult"]["ETag"]}

    return _swap(bucket, cfg, copy, expect, meta, body_etag=None)


def commit_stream(
    bucket: S3Bucket,
    cfg: S3GridConfig,
    stream: PartStream,
    args: dict[str, Any],
    expect: ExpectEtag,
    meta: SaveMetadata,
    encode_again: Callable[[], bytes],
) -> tuple[str, str]:
    """The compare-and-swap of a body streamed to the master (``stream``, its object
    arguments ``args``): its last request (the complete, or one PUT) carries the
    condition. As :func:`commit` otherwise. A resend needs the body again, as the
    upload's parts go with a failed complete (S3 asks for a new upload after a 409):
    ``encode_again`` makes it, and it goes up as :func:`commit` sends one."""
    conditions = expect.conditions()
    finished = False

    def send() -> dict[str, Any]:
        nonlocal finished
        if not finished:
            finished = True
            return stream.finish(conditions=conditions, retry=False, **args)
        return bucket.put(cfg.master_key, encode_again(), retry=False, **args, **conditions)

    # the same bytes either way (the save id is in them), sent in the same parts
    return _swap(bucket, cfg, send, expect, meta, body_etag=lambda: stream.etag)


def _swap(
    bucket: S3Bucket,
    cfg: S3GridConfig,
    send: Callable[[], dict[str, Any]],
    expect: ExpectEtag,
    meta: SaveMetadata,
    *,
    body_etag: Callable[[], str] | None,
) -> tuple[str, str]:
    """Send the conditional write ``send`` (exactly once per attempt) and settle any
    doubt about its outcome; ``body_etag`` recognises our version by its bytes when a
    HEAD lacks the metadata."""
    key = cfg.master_key
    url = bucket.url(key)

    def ours(head: dict[str, Any] | None) -> bool:
        if head is None:
            return False
        found = SaveMetadata.from_s3(head.get("Metadata", {}))
        if found is not None:
            return found.save_id == meta.save_id
        return body_etag is not None and head.get("ETag") == body_etag()

    for attempt in range(1, cfg.max_attempts + 1):
        try:
            resp = send()
            return resp.get("VersionId") or "null", resp["ETag"]
        except (ConflictError, NotFoundError, StoreUnavailableError) as exc:
            sent = not isinstance(exc, StoreUnavailableError) or exc.maybe_committed
            try:
                current = bucket.head(key)
            except StoreUnavailableError as head_exc:
                if sent:
                    raise StoreUnavailableError(
                        f"The save to {url} may or may not have been committed: the "
                        f"connection failed ({exc}) and the master could not be checked. "
                        "Your edits are kept. When S3 is back, Reload to see whether "
                        f"save {meta.save_id} landed, and run `s3grid reconcile`.",
                        maybe_committed=True,
                    ) from head_exc
                raise unreachable(url, exc) from exc
            if ours(current):
                assert current is not None
                return current.get("VersionId") or "null", current["ETag"]
            retryable = isinstance(exc, StoreUnavailableError) or (
                exc.code in ("ConditionalRequestConflict", "409")
            )
            expect.validate(current, key=url)  # raises ConflictError if moved on
            if not retryable or attempt == cfg.max_attempts:
                if isinstance(exc, StoreUnavailableError):
                    raise StoreUnavailableError(
                        f"Could not save to {url} after {attempt} attempts ({exc}). "
                        "The master is unchanged; your edits are kept. Retry later.",
                    ) from exc
                raise
            time.sleep(min(5.0, 0.2 * 2 ** (attempt - 1)))
    raise AssertionError("unreachable")  # pragma: no cover
