"""The editor's workflow without widgets: reload, save, conflict, lost update, merge.

:class:`EditorController` holds the editing session and any merge waiting for the
user's picks as explicit state (:class:`PendingMerge`), and each action returns an
:class:`Outcome` for a view to show. The :class:`~s3grid.editor.Editor` widget renders
that state; tests can drive the workflow without a widget.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable, Mapping, Sequence
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field
from typing import Any, Literal

import pyarrow as pa

from s3grid.commit import SaveMetadata
from s3grid.config import S3GridConfig
from s3grid.diff import MINE, MergeResult, three_way_merge
from s3grid.display import row_label, when
from s3grid.errors import ConflictError, LostUpdateError, S3GridError, StoreUnavailableError
from s3grid.model import Master
from s3grid.session import EditSession
from s3grid.store import MasterStore

__all__ = ["EditorController", "Outcome", "PendingMerge"]

Kind = Literal["info", "warn", "error"]
ConflictId = tuple[Any, str | None]


@dataclass(frozen=True)
class Outcome:
    """What an action did, in words for the user. ``saved``: a save committed and the
    session is the saved version; ``duplicates``: the view should show the rows whose
    keys repeat."""

    message: str
    kind: Kind = "info"
    saved: bool = False
    duplicates: bool = False


@dataclass(frozen=True)
class PendingMerge:
    """A three-way merge waiting for the user's picks.

    The merged result becomes pending edits on ``onto``; "mine" is the session's content
    when the merge is applied, so edits made while the conflicts are shown are part of it.

    Attributes:
        base: the version the edits started from.
        theirs: the other side: the colleague's save (``conflict``, ``reload``), or the
            version our own save overwrote (``lost-update``).
        onto: the version the result is pending on: ``theirs``, or for a lost update the
            version our save committed.
        kind: why the merge was opened.
        result: the merge as last computed, with its conflicts.
        picks: the picks shown with it (conflict id -> ``mine``/``theirs``).
    """

    base: Master
    theirs: Master
    onto: Master
    kind: Literal["conflict", "reload", "lost-update"]
    result: MergeResult
    picks: Mapping[ConflictId, str] = field(default_factory=dict)

    @property
    def lost_update(self) -> bool:
        """Our save committed over ``theirs``: their changes are what the merge restores."""
        return self.kind == "lost-update"


class EditorController:
    """The state of one editor and the actions on it, with no widgets.

    Args:
        store: the master to edit.
        key_columns: row identity (default: the store's key columns per master).
        read_only_columns: columns that cannot be edited (those the master has).
        busy: a context manager factory the view passes to say what runs (and lock its
            buttons) while the controller loads or saves.
    """

    def __init__(
        self,
        store: MasterStore,
        *,
        key_columns: Sequence[str] | None = None,
        read_only_columns: Iterable[str] = (),
        busy: Callable[[str], AbstractContextManager[Any]] | None = None,
    ) -> None:
        self.store = store
        self.key_columns_arg = tuple(key_columns) if key_columns is not None else None
        self.read_only_columns = tuple(read_only_columns)
        self.new_categories = False  # see EditSession.new_categories
        self.busy: Callable[[str], AbstractContextManager[Any]] = busy or (lambda _: nullcontext())
        self.session: EditSession | None = None
        self.merge: PendingMerge | None = None
        self.last_save = ""
        self.last_saved_at = ""  # the UTC time of this editor's last save (ISO)
        # held while a load or save talks to S3: the watch makes no request meanwhile
        self._io = threading.Lock()

    # ---------------------------------------------------------------- sessions

    def new_session(
        self,
        master: Master,
        content: pa.Table | None = None,
        store: MasterStore | None = None,
        *,
        keys_verified: bool = False,
    ) -> EditSession:
        """A session on ``master`` (with ``content`` as pending edits, if given)."""
        keys = (
            self.key_columns_arg
            if self.key_columns_arg is not None
            else (store or self.store).key_columns_for(master.schema)
        )
        # Read-only columns are per master: a re-targeted editor may not have them.
        read_only = [c for c in self.read_only_columns if c in master.schema.names]
        if content is None:
            session = EditSession(
                master, key_columns=keys, read_only_columns=read_only, keys_verified=keys_verified
            )
        else:
            session = EditSession.from_content(
                master, content, key_columns=keys, read_only_columns=read_only
            )
        session.new_categories = self.new_categories
        return session

    def continue_on(self, onto: Master, content: pa.Table | None = None) -> None:
        """Close any merge; edit ``content`` (a merge's result; default: ``onto`` as it
        is) as pending changes on ``onto``."""
        self.merge = None
        self.session = self.new_session(onto, content)

    # ------------------------------------------------------------ load / save

    def reload(self, target: S3GridConfig | None = None) -> Outcome:
        """Load the latest master; pending edits are merged onto it, never dropped.

        With ``target`` (another master's configuration), re-target the editor: only
        without pending edits.
        """
        s = self.session
        store = self.store
        if self.merge is not None and self.merge.lost_update:
            # A reload would merge onto the master (ours) instead of the version ours
            # overwrote, and their changes would be offered no more.
            return Outcome(
                "First pick mine or theirs for each conflict and Apply merge: it brings "
                "back the changes the lost update overwrote. Then Reload.",
                "warn",
            )
        if target is not None and target != store.cfg:
            if s is not None and s.pending:
                return Outcome(
                    f"You have {s.pending} pending change(s) to {store.cfg.uri}. Save or "
                    "Revert all before switching to another master.",
                    "warn",
                )
            try:
                store = store.with_config(target)
            except S3GridError as exc:
                return Outcome(str(exc), "error")
        try:
            with self._io, self.busy(f"Loading {store.cfg.uri}"):
                latest = store.load()
        except S3GridError as exc:
            return Outcome(f"Could not load: {exc}", "error")
        if s is not None and s.pending and latest.etag != s.master.etag:
            blocked = self._duplicates_block_merge(s, "The master changed, and your", "Reload")
            return blocked or self._start_merge(
                s.master, latest, s.to_table(), kind="reload", reason="Reloaded"
            )
        if s is not None and s.pending:
            return Outcome("The master has not changed since you loaded it; your edits are kept.")
        try:
            session = self.new_session(latest, store=store)
        except S3GridError as exc:  # e.g. key columns this master lacks
            return Outcome(f"Could not open {store.cfg.uri}: {exc}", "error")
        self.store = store  # re-targeted only once the new master is open
        self.merge = None
        self.session = session
        return Outcome(f"Loaded version {latest.version_id} ({latest.table.num_rows:,} rows).")

    def save(self, note: str) -> Outcome:
        """Save the pending edits with ``note`` through the locked save.

        A conflict or a lost update opens a merge (see :attr:`merge`); an unreachable
        store or a refused table keeps every pending edit.
        """
        s = self.session
        if s is None:
            return Outcome("Nothing is loaded yet: Reload first.", "warn")
        if self.merge is not None and self.merge.result.conflicts:
            return Outcome(
                "Resolve the conflicts (mine/theirs) and click Apply merge first.", "warn"
            )
        if s.pending == 0 and self.merge is None:
            return Outcome("Nothing to save: there are no pending changes. Nothing was written.")
        if not note.strip():
            return Outcome(
                "Write a note first: what did you change, and why? It goes into the audit "
                "with this save. Your edits are kept.",
                "warn",
            )
        dups = s.duplicates()
        if dups:
            listing = "; ".join(
                f"{row_label(s.key_columns, k)} ({len(ids)} rows)"
                for k, ids in list(dups.items())[:20]
            )
            return Outcome(
                f"Save blocked: duplicate keys: {listing}. Fix them, then Save.",
                "error",
                duplicates=True,
            )
        with self._io, self.busy(f"Saving {len(s.df):,} rows to {self.store.cfg.uri}"):
            return self._save(s, note)

    def colleague_notice(self) -> str | None:
        """One HEAD of the master: what a colleague's newer version is, in words, or
        None when the master is still the version being edited. No request is made
        while a load or save runs (None then too), and a failed look says nothing: the
        next Save or Reload reports what is wrong."""
        s = self.session
        if s is None or not self._io.acquire(blocking=False):
            return None
        try:
            head = self.store.bucket.head(self.store.cfg.master_key)
        except S3GridError:
            return None
        finally:
            self._io.release()
        if s is not self.session or (head is not None and head.get("ETag") == s.master.etag):
            return None
        then = "Reload merges it with your edits." if s.pending else "Reload to see it."
        if head is None:
            return f"The master {self.store.cfg.uri} was deleted since you loaded it."
        meta = SaveMetadata.from_s3(head.get("Metadata", {}))
        if meta is None:
            return f"The master was replaced outside s3grid {when(head['LastModified'])}. {then}"
        note = f": '{meta.note}'" if meta.note else ""
        return f"{meta.user} saved a new version {when(meta.saved_at)}{note}. {then}"

    def _save(self, s: EditSession, note: str) -> Outcome:
        try:
            table = s.to_table()
            res = self.store.save(table, base=s.master, note=note, source="editor")
        except ConflictError as exc:
            try:
                theirs = self.store.load()
            except S3GridError as load_exc:
                return Outcome(f"{exc}\nCould not load their version: {load_exc}", "error")
            at = f" {when(exc.saved_at)}" if exc.saved_at else ""
            note_text = f": '{exc.current_note}'" if exc.current_note else ""
            return self._start_merge(
                s.master,
                theirs,
                table,
                kind="conflict",
                reason=f"Conflict: {exc.saved_by or 'someone'} saved a new version{at}{note_text}",
            )
        except LostUpdateError as exc:
            # Ours committed over a colleague's version that the store failed to protect:
            # merge their lost changes onto ours, as pending edits to review and save.
            res = exc.result
            saved = Master(
                table=table, version_id=res.new_version, etag=res.new_etag, key=s.master.key
            )
            try:
                lost = self.store.read_version(exc.overwritten[0])
            except S3GridError as load_exc:
                return Outcome(
                    f"{exc}\nCould not load the overwritten version: {load_exc}", "error"
                )
            self.last_saved_at = res.timestamp
            self.last_save = f"{res.new_version[:12]} at {res.timestamp}"
            return self._start_merge(
                s.master, lost, table, kind="lost-update", reason=str(exc), onto=saved
            )
        except StoreUnavailableError as exc:
            return Outcome(
                f"{exc}\nEvery pending edit is kept; click Save again when S3 is back.", "error"
            )
        except S3GridError as exc:
            return Outcome(f"Not saved: {exc}\nYour edits are kept.", "error")
        saved = Master(table=table, version_id=res.new_version, etag=res.new_etag, key=s.master.key)
        self.last_saved_at = res.timestamp
        self.last_save = f"{res.new_version[:12]} at {res.timestamp}"
        # The store refused duplicate keys in exactly this table: when it checked the same
        # key columns as the editor, there is no need to look again.
        verified = s.key_columns == tuple(self.store.key_columns_for(saved.schema))
        self.merge = None
        self.session = self.new_session(saved, keys_verified=verified)
        msg = (
            f"Saved version {res.new_version}: {res.cells_changed} cell(s) changed, "
            f"{res.rows_added} added, {res.rows_deleted} deleted. Snapshot {res.snapshot_key}."
        )
        if res.incomplete:
            return Outcome(f"{msg}\n{res.incomplete}", "warn", saved=True)
        return Outcome(msg, saved=True)

    # ---------------------------------------------------------------- merging

    def _duplicates_block_merge(self, s: EditSession, lead: str, then: str) -> Outcome | None:
        """Rows are matched by key in a merge: with duplicate keys, say so and refuse."""
        if not s.duplicates():
            return None
        return Outcome(
            f"{lead} edits hold duplicate keys: fix them, then {then} to merge. "
            "Your edits are kept.",
            "warn",
        )

    def _start_merge(
        self,
        base: Master,
        theirs: Master,
        mine: pa.Table,
        *,
        kind: Literal["conflict", "reload", "lost-update"],
        reason: str,
        onto: Master | None = None,
    ) -> Outcome:
        keys = self.session.key_columns if self.session else ()
        result = three_way_merge(base.table, theirs.table, mine, keys)
        theirs_diff = result.theirs_changes
        summary = (
            f"{reason}. They changed {theirs_diff.cells_changed} cell(s), added "
            f"{theirs_diff.rows_added} and deleted {theirs_diff.rows_deleted} row(s) "
            f"(version {theirs.version_id}). {result.auto_merged} of your change(s) merged "
            f"automatically; {len(result.conflicts)} conflict(s)."
        )
        if not result.conflicts:
            self.continue_on(onto or theirs, result.table)
            return Outcome(summary + " Review and Save again to commit.", "warn")
        self.merge = PendingMerge(base, theirs, onto or theirs, kind, result)
        return Outcome(
            summary + " Pick mine or theirs for each conflict, then Apply merge.", "warn"
        )

    def apply_merge(self, picks: Mapping[ConflictId, str]) -> Outcome | None:
        """Apply the merge with ``picks`` (conflict id -> ``mine``/``theirs``; unpicked
        conflicts keep theirs); the result becomes pending edits on its ``onto``.

        The merge is made again from the session as it is now, so edits made while the
        conflicts were shown are kept. If those edits changed the conflicts, the new list
        is kept open (with these picks) and nothing is applied yet. None when no merge is
        open.
        """
        s, m = self.session, self.merge
        if m is None or s is None:
            return None
        blocked = self._duplicates_block_merge(s, "Your", "Apply merge")
        if blocked:
            return blocked
        result = three_way_merge(
            m.base.table, m.theirs.table, s.to_table(), s.key_columns, dict(picks)
        )
        shown = m.result.conflicts
        changed = len(shown) != len(result.conflicts) or not all(
            a.same_as(b) for a, b in zip(shown, result.conflicts, strict=True)
        )
        if changed and result.conflicts:
            self.merge = PendingMerge(m.base, m.theirs, m.onto, m.kind, result, dict(picks))
            return Outcome(
                f"Your edits since the conflict changed it: {len(result.conflicts)} "
                "conflict(s) now. Check mine or theirs for each, then Apply merge.",
                "warn",
            )
        self.continue_on(m.onto, result.table)
        n_mine = sum(1 for c in result.conflicts if picks.get(c.id) == MINE)
        return Outcome(
            f"Merged onto version {m.onto.version_id}: {result.auto_merged} automatic, "
            f"{n_mine} conflict(s) kept as mine. Review the changes and Save.",
            "warn",
        )

    def revert_all(self) -> Outcome | None:
        """Drop every pending edit (and any open merge). None when nothing is loaded."""
        m = self.merge
        if m is not None and m.lost_update:
            # Our save did commit: dropping the merge leaves the version we saved, not the
            # one we started from (that would show edits undone that are in the master).
            self.continue_on(m.onto)
            return Outcome(
                f"Merge dropped: the master is the version you saved, {m.onto.version_id}. "
                f"The changes it overwrote are still in version {m.theirs.version_id} "
                "(store.read_version, or restore it)."
            )
        if self.session is None:
            return None
        dropped = self.session.revert_all()
        self.merge = None
        if not dropped:
            return Outcome("Nothing to revert: there are no pending changes.")
        return Outcome(f"Reverted {dropped} pending change(s). Undo brings them back.")
