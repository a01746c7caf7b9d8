"""Keep the latest N saves of a master; archive older snapshots, changesets and audits.

Copy, verify, then delete: a crash leaves at most a harmless duplicate, and a re-run
finishes the job (and is otherwise a no-op). Saves are ordered by the audit record's
timestamp (microseconds), not by key names; only s3grid audits of this master key are
considered, so other masters' artifacts, ``audit/glue/`` and foreign objects are never
touched. Master versions are never deleted.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pandas as pd

from s3grid.errors import S3RequestError, ValidationError
from s3grid.layout import archive_keys, changeset_key
from s3grid.store import MasterStore

__all__ = ["PruneItem", "PrunePlan", "plan_prune", "prune"]


@dataclass(frozen=True)
class PruneItem:
    """One save to archive: where its snapshot, changeset and audit are, and where they
    go."""

    save_id: str
    version_id: str
    timestamp: str
    snapshot_key: str
    audit_key: str
    archive_snapshot_key: str
    archive_audit_key: str
    changeset_key: str
    archive_changeset_key: str


@dataclass(frozen=True)
class PrunePlan:
    """Saves kept and saves to archive, oldest first."""

    kept: int
    archive: tuple[PruneItem, ...]
    applied: bool = False


def plan_prune(store: MasterStore, keep: int = 15) -> PrunePlan:
    """Which saves to archive so that the latest ``keep`` stay. Reads only.

    Raises:
        ValidationError: ``keep`` is below 1.
    """
    if keep < 1:
        raise ValidationError("--keep must be at least 1: the latest save always stays.")
    cfg = store.cfg
    log = store.audit_log()
    if log.empty:
        return PrunePlan(0, ())
    log = log.sort_values(["timestamp", "save_id"], kind="stable")
    log = log.drop_duplicates("save_id", keep="last")
    old = log.iloc[: max(0, len(log) - keep)]
    items = []
    for row in old.itertuples(index=False):
        saved_at = pd.Timestamp(str(row.timestamp))
        day = saved_at.strftime("%Y%m%d")  # the save's UTC date
        archive_snapshot, archive_audit, archive_changeset = archive_keys(
            cfg, day, str(row.new_version)
        )
        # audits written before changesets existed do not name one: its key derives
        changes = row.changeset_key
        if not isinstance(changes, str) or not changes:
            changes = changeset_key(cfg, saved_at.to_pydatetime(), str(row.save_id))
        items.append(
            PruneItem(
                save_id=str(row.save_id),
                version_id=str(row.new_version),
                timestamp=str(row.timestamp),
                snapshot_key=str(row.snapshot_key),
                audit_key=str(row.audit_key),
                archive_snapshot_key=archive_snapshot,
                archive_audit_key=archive_audit,
                changeset_key=changes,
                archive_changeset_key=archive_changeset,
            )
        )
    return PrunePlan(kept=len(log) - len(items), archive=tuple(items))


def _move(store: MasterStore, src: str, dst: str) -> None:
    """Copy ``src`` to ``dst``, check the copy, then delete ``src``. Safe to repeat."""
    bucket = store.bucket
    source = bucket.head(src)
    if source is None:
        return  # moved by an earlier, interrupted run
    target = bucket.head(dst)
    if target is None or target.get("ContentLength") != source.get("ContentLength"):
        bucket.copy(src, None, dst)
        target = bucket.head(dst)
    if target is None or not _same_object(source, target):
        raise S3RequestError(
            f"Archive copy {bucket.url(dst)} does not match {bucket.url(src)}; "
            "the original was kept. Run prune again."
        )
    bucket.delete(src)


def _same_object(source: dict[str, Any], target: dict[str, Any]) -> bool:
    """Whether an archive copy holds its source's bytes: same length and ETag. An
    object uploaded in parts (a streamed snapshot, a large changeset) has an ETag of
    its parts (``"...-3"``) that a copy, written whole, cannot have: there the length
    must do."""
    if target.get("ContentLength") != source.get("ContentLength"):
        return False
    tags = (str(source.get("ETag", "")), str(target.get("ETag", "")))
    return any("-" in t for t in tags) or tags[0] == tags[1]


def prune(
    store: MasterStore, keep: int = 15, apply: bool = False, *, progress: Any = None
) -> PrunePlan:
    """Archive all but the latest ``keep`` saves; without ``apply``, only plan.

    The snapshot and changeset move before the audit: the audit is what makes a save
    part of the plan, so an interrupted run is finished by the next one. A save without
    a changeset (one rebuilt by ``history`` only in memory) archives without it.
    """
    plan = plan_prune(store, keep)
    if not apply:
        return plan
    store.bucket.require_versioning(fresh=True)  # a move deletes: only where versions are kept
    for item in plan.archive:
        _move(store, item.snapshot_key, item.archive_snapshot_key)
        _move(store, item.changeset_key, item.archive_changeset_key)
        _move(store, item.audit_key, item.archive_audit_key)
        if progress is not None:
            progress(item)
    return PrunePlan(plan.kept, plan.archive, applied=True)
