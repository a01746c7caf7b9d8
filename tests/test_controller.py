"""The editor's workflow without a widget: the controller's state after each action."""

from __future__ import annotations

import pyarrow as pa
import pytest

from s3grid import MasterStore, S3GridConfig
from s3grid.controller import EditorController
from s3grid.diff import MINE
from tests.support.locks import without_lock

KEYS = ("tow", "net")


@pytest.fixture
def shared(cfg: S3GridConfig) -> MasterStore:
    store = MasterStore(cfg, key_columns=KEYS)
    table = pa.table(
        {
            "tow": pa.array([1, 1, 2], pa.int32()),
            "net": pa.array([0, 1, 0], pa.int32()),
            "v": [1.0, 2.0, 3.0],
        }
    )
    store.create(table, note="three rows")
    return store


def opened(cfg: S3GridConfig) -> EditorController:
    c = EditorController(MasterStore(cfg, key_columns=KEYS), key_columns=KEYS)
    assert c.reload().kind == "info"
    return c


def set_v(c: EditorController, tow: int, net: int, value: float) -> None:
    s = c.session
    assert s is not None
    (row,) = s.df.index[(s.df["tow"] == tow) & (s.df["net"] == net)]
    s.set_cell(int(row), "v", value)


def v_of(store: MasterStore) -> dict[tuple[int, int], float]:
    t = store.load().table.to_pylist()
    return {(r["tow"], r["net"]): r["v"] for r in t}


def test_a_save_over_a_colleagues_save_opens_a_conflict_that_apply_resolves(
    shared: MasterStore, cfg: S3GridConfig
) -> None:
    a, b = opened(cfg), opened(cfg)
    set_v(a, 1, 0, 10.0)
    assert a.save("A").saved
    set_v(b, 1, 0, 20.0)  # the same cell: a conflict
    set_v(b, 2, 0, 30.0)  # another cell: merged by itself
    out = b.save("B")
    assert (
        not out.saved
        and "saved a new version" in out.message
        and out.message.startswith("Conflict: ")
    )
    m = b.merge
    assert m is not None and m.kind == "conflict" and not m.lost_update
    assert m.onto is m.theirs and len(m.result.conflicts) == 1
    # Save and Reload wait for the picks
    assert "Apply merge first" in b.save("again").message
    (conflict,) = m.result.conflicts
    out = b.apply_merge({conflict.id: MINE})
    assert out is not None and "1 conflict(s) kept as mine" in out.message
    assert b.merge is None and b.session is not None
    assert b.session.master.version_id == shared.load().version_id  # pending on theirs
    assert b.save("B, merged").saved
    assert v_of(shared) == {(1, 0): 20.0, (1, 1): 2.0, (2, 0): 30.0}


def test_a_reload_carries_pending_edits_onto_the_new_master(
    shared: MasterStore, cfg: S3GridConfig
) -> None:
    a, b = opened(cfg), opened(cfg)
    set_v(a, 1, 1, 5.0)
    assert a.save("A").saved
    set_v(b, 2, 0, 7.0)
    out = b.reload()
    assert "Reloaded" in out.message and b.merge is None  # nothing in conflict
    assert b.session is not None and b.session.pending == 1
    assert b.save("B").saved
    assert v_of(shared) == {(1, 0): 1.0, (1, 1): 5.0, (2, 0): 7.0}


def test_a_lost_update_is_a_merge_onto_our_own_save(shared: MasterStore, cfg: S3GridConfig) -> None:
    a, b = opened(cfg), opened(cfg)
    without_lock(b.store)  # B's store lets a stale save through
    set_v(a, 1, 0, 10.0)
    assert a.save("A").saved
    set_v(b, 1, 0, 20.0)
    out = b.save("B over A")
    m = b.merge
    assert not out.saved and m is not None and m.kind == "lost-update" and m.lost_update
    assert m.onto.version_id == shared.load().version_id  # B's save did commit
    assert m.theirs.version_id != m.onto.version_id  # A's, overwritten
    assert b.last_save.startswith((m.onto.version_id or "")[:12])
    # a reload would merge onto ours and forget theirs: refused until the merge is applied
    assert "Apply merge" in b.reload().message and b.merge is m
    # dropping the merge leaves the version B saved, and says where A's changes are
    out_revert = b.revert_all()
    assert (out_revert is not None and m.theirs.version_id) or "" in out_revert.message
    assert b.merge is None and b.session is not None
    assert b.session.master.version_id == m.onto.version_id and b.session.pending == 0


def test_duplicate_keys_block_save_and_say_so(shared: MasterStore, cfg: S3GridConfig) -> None:
    c = opened(cfg)
    assert c.session is not None
    c.session.add_row({"tow": 1, "net": 0, "v": 9.0})
    before = shared.load().version_id
    out = c.save("dup")
    assert out.kind == "error" and out.duplicates and not out.saved
    assert "duplicate keys" in out.message
    assert shared.load().version_id == before


def test_switching_masters_waits_for_pending_edits(shared: MasterStore, cfg: S3GridConfig) -> None:
    c = opened(cfg)
    set_v(c, 1, 0, 4.0)
    other = cfg.with_(master_key="data/other.parquet")
    out = c.reload(other)
    assert out.kind == "warn" and "pending change(s)" in out.message
    assert c.store.cfg == cfg  # still on the first master
    c.revert_all()
    assert "Could not load" in c.reload(other).message  # no such master: stays put
    assert c.store.cfg == cfg


def test_the_audit_says_where_a_save_came_from(shared: MasterStore, cfg: S3GridConfig) -> None:
    c = opened(cfg)
    set_v(c, 1, 0, 10.0)
    assert c.save("from the grid").saved
    m = shared.load()
    shared.save(m.table, base=m, note="from Python")  # MasterStore.save's default
    assert list(shared.audit_log()["source"]) == ["init", "editor", "api"]
