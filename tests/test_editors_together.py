"""A Hypothesis state machine: two editors on one master, as two colleagues would use them.

Each editor edits cells, adds and deletes rows, saves, reloads, reverts all, and
resolves conflicts (every one "mine" or every one "theirs"), in any order, against the
local S3. Edits and reloads may come while a conflict is on show. In a second run, one
editor's store ignores IfMatch (as a store without conditional writes would): its stale
saves commit, and it must offer back what they overwrote.

A model keeps, per editor, the version its session started from and the content it
should hold, and the master's content. A stale save, a reload onto a newer master and
a lost update are checked against the merge rules written out on plain dicts
(``tests.test_diff.reference_merge``), not against s3grid's merge.

After every step:

- the master in S3 holds the model's rows;
- each editor holds its model's rows, and shows a conflict exactly when one is open.

So no edit is lost and no colleague's save is overwritten without a choice, whatever
the order of events.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import Any

import boto3
import pandas as pd
import pyarrow as pa
import pytest
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)

from s3grid import MasterStore, S3GridConfig
from s3grid.diff import MINE, THEIRS
from s3grid.editor import Editor
from tests.support.frontend import save
from tests.support.locks import without_lock
from tests.support.machines import machine_settings
from tests.support.merge import reference_merge

KEYS = ("tow", "net")
SCHEMA = pa.schema(
    [("tow", pa.int32()), ("net", pa.int32()), ("v", pa.float64()), ("s", pa.string())]
)
KEY_SPACE = st.tuples(st.integers(1, 2), st.integers(0, 2))  # 6 keys, 3 taken at first
VALUES_OF: dict[str, list[Any]] = {"v": [None, 1.0, 2.5], "s": [None, "a", "b"]}
EDITORS = 2
LOCKLESS = 1  # the editor whose store may ignore IfMatch (a lost update)
REVERT = "revert all"  # instead of resolving a conflict
_buckets = itertools.count()

Key = tuple[int, int]
Rows = dict[Key, tuple[Any, ...]]


@dataclass(frozen=True)
class Merge:
    """A merge the editor owes: of ``theirs`` into my edits, pending on ``onto`` (the
    master at ``version``). ``lost``: theirs is a version my save overwrote."""

    theirs: Rows
    onto: Rows
    version: int
    lost: bool = False


def _plain(value: Any) -> Any:
    return None if pd.isna(value) else value


def _rows(records: list[dict[str, Any]]) -> Rows:
    return {(int(r["tow"]), int(r["net"])): (_plain(r["v"]), _plain(r["s"])) for r in records}


def make_machine(endpoint: str, lockless: bool) -> type[RuleBasedStateMachine]:
    class TwoEditors(RuleBasedStateMachine):
        @initialize()
        def open(self) -> None:
            bucket = f"s3grid-together-{next(_buckets)}"
            s3 = boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1")
            s3.create_bucket(Bucket=bucket)
            s3.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Enabled"})
            cfg = S3GridConfig(bucket=bucket, endpoint_url=endpoint, max_attempts=2)
            self.store = MasterStore(cfg, key_columns=KEYS)
            first = [(1, 0, 0.5, "x"), (1, 1, None, "y"), (2, 0, 1.5, None)]
            self.store.create(
                pa.Table.from_pylist(
                    [dict(zip(SCHEMA.names, r, strict=True)) for r in first], SCHEMA
                ),
                note="init",
            )
            self.master: Rows = {(t, n): (v, s) for t, n, v, s in first}
            self.version = 0  # how many saves the master has had
            self.editors = [
                Editor(MasterStore(cfg, key_columns=KEYS), key_columns=KEYS) for _ in range(EDITORS)
            ]
            if lockless:  # this editor's store lets a stale save through
                without_lock(self.editors[LOCKLESS].store)
            self.base: list[Rows] = [dict(self.master) for _ in range(EDITORS)]
            self.based_on = [0] * EDITORS  # the master version each session started from
            self.mine: list[Rows] = [dict(self.master) for _ in range(EDITORS)]
            self.conflict: list[Merge | None] = [None] * EDITORS  # a conflict on show

        def _row_id(self, i: int, key: Key) -> int:
            df = self.editors[i].session.df  # type: ignore[union-attr]
            return int(df.index[(df["tow"] == key[0]) & (df["net"] == key[1])][0])

        def _in_conflict(self) -> int:
            """The first editor with a conflict on show."""
            return next(i for i, c in enumerate(self.conflict) if c is not None)

        def _pick(self, i: int, data: st.DataObject) -> Key:
            return data.draw(st.sampled_from(sorted(self.mine[i])))

        @rule(i=st.integers(0, EDITORS - 1), data=st.data(), column=st.sampled_from(["v", "s"]))
        def edit(self, i: int, data: st.DataObject, column: str) -> None:
            if self.mine[i]:  # a merge may have deleted every row
                value = data.draw(st.sampled_from(VALUES_OF[column]))
                self._set(i, self._pick(i, data), column, value)

        def _set(self, i: int, key: Key, column: str, value: Any) -> None:
            assert self.editors[i].edit_cell(self._row_id(i, key), column, value)
            v, s = self.mine[i][key]
            self.mine[i][key] = (value, s) if column == "v" else (v, value)

        @precondition(lambda self: any(c is not None for c in self.conflict))
        @rule(data=st.data(), column=st.sampled_from(["v", "s"]))
        def edit_while_a_conflict_shows(self, data: st.DataObject, column: str) -> None:
            i = self._in_conflict()
            self.edit(i, data, column)

        @rule(data=st.data(), column=st.sampled_from(["v", "s"]))
        def both_edit_one_cell(self, data: st.DataObject, column: str) -> None:
            """Colleagues change the same cell differently: the second save conflicts."""
            shared = sorted(set(self.mine[0]) & set(self.mine[1]))
            if not shared:
                return
            key = data.draw(st.sampled_from(shared))
            values = data.draw(st.permutations(VALUES_OF[column]))
            for i in range(EDITORS):
                self._set(i, key, column, values[i])

        @rule(i=st.integers(0, EDITORS - 1), key=KEY_SPACE)
        def add(self, i: int, key: Key) -> None:
            if key in self.mine[i]:
                return  # a duplicate key: the window state machine covers those
            assert self.editors[i].add_row({"tow": key[0], "net": key[1]}) is not None
            self.mine[i][key] = (None, None)

        @rule(i=st.integers(0, EDITORS - 1), data=st.data())
        def delete(self, i: int, data: st.DataObject) -> None:
            if len(self.mine[i]) < 2:
                return  # keep a row: an empty table is never saved (see save)
            key = self._pick(i, data)
            assert self.editors[i].delete_rows([self._row_id(i, key)]) == 1
            del self.mine[i][key]

        def _merge(self, i: int, merge: Merge) -> None:
            """What a stale save, a reload onto a newer master or a lost update must do."""
            _, conflicts, _ = reference_merge(self.base[i], merge.theirs, self.mine[i], THEIRS)
            if conflicts:
                self.conflict[i] = merge
                shown = self.editors[i].merge
                assert shown is not None and len(shown.conflicts) == conflicts
            else:  # merged at once, pending on the version it goes onto
                self._merged(i, merge, THEIRS)

        def _merged(self, i: int, merge: Merge, choice: str) -> None:
            self.mine[i] = reference_merge(self.base[i], merge.theirs, self.mine[i], choice)[0]
            self.base[i], self.based_on[i] = dict(merge.onto), merge.version
            self.conflict[i] = None

        def _onto_master(self) -> Merge:
            return Merge(dict(self.master), dict(self.master), self.version)

        @rule(i=st.integers(0, EDITORS - 1))
        def save(self, i: int) -> None:
            editor = self.editors[i]
            nothing = editor.session is not None and editor.session.pending == 0
            saved = save(editor)
            if self.conflict[i] is not None:
                assert not saved  # resolve first
            elif nothing:  # nothing pending: nothing written (nothing changed either)
                assert self.mine[i] == self.base[i]
                assert not saved and "Nothing to save" in editor.message.value
            elif not self.mine[i]:  # a merge can delete every row: never saved empty
                assert not saved and "empty table" in self.editors[i].message.value
            elif self.based_on[i] == self.version:
                assert saved, self.editors[i].message.value
                self.version += 1
                self.master = dict(self.mine[i])
                self.base[i], self.based_on[i] = dict(self.master), self.version
            elif i == LOCKLESS and lockless:
                # the store let it through: ours overwrote their version, whose changes
                # come back as a merge onto ours
                assert not saved and "LOST UPDATE" in self.editors[i].message.value
                lost, self.master = self.master, dict(self.mine[i])
                self.version += 1
                self._merge(i, Merge(lost, dict(self.master), self.version, lost=True))
            else:
                assert not saved  # a colleague saved since: never overwritten
                self._merge(i, self._onto_master())

        @rule(
            i=st.integers(0, EDITORS - 1),
            data=st.data(),
            edits=st.lists(st.sampled_from(["v", "s"]), max_size=2),
            reload=st.booleans(),
            choice=st.sampled_from([MINE, THEIRS, REVERT]),
        )
        def save_and_resolve(
            self, i: int, data: st.DataObject, edits: list[str], reload: bool, choice: str
        ) -> None:
            """Save; on a conflict, edit a little more and maybe Reload while it shows,
            then resolve it (or Revert all)."""
            self.save(i)
            if self.conflict[i] is None:
                return
            for column in edits:
                self.edit(i, data, column)
            if reload:
                self.reload(i)
            if self.conflict[i] is not None:  # a reload can merge without conflicts
                if choice == REVERT:
                    self.revert_all(i)
                else:
                    self._resolve_all(i, choice)

        @rule(
            data=st.data(),
            column=st.sampled_from(["v", "s"]),
            reload=st.booleans(),
            choice=st.sampled_from([MINE, THEIRS, REVERT]),
        )
        def race(self, data: st.DataObject, column: str, reload: bool, choice: str) -> None:
            """Both change one cell; editor 0 saves first, then editor 1 (whose store may
            let it through: a lost update) saves and resolves (or reverts)."""
            self.both_edit_one_cell(data, column)
            self.save(0)
            self.save_and_resolve(LOCKLESS, data, [], reload, choice)

        @rule(i=st.integers(0, EDITORS - 1))
        def reload(self, i: int) -> None:
            self.editors[i].reload()
            open_merge = self.conflict[i]
            if open_merge is not None and open_merge.lost:
                return  # Apply merge first: a reload would drop their overwritten changes
            if self.based_on[i] == self.version:
                return  # nothing new; pending edits stay as they are
            if self.conflict[i] is None and self.mine[i] == self.base[i]:
                self.mine[i], self.base[i] = dict(self.master), dict(self.master)
                self.based_on[i] = self.version
                return
            self._merge(i, self._onto_master())

        @rule(i=st.integers(0, EDITORS - 1))
        def revert_all(self, i: int) -> None:
            self.editors[i].revert_all()
            merge = self.conflict[i]
            if merge is not None and merge.lost:  # our save stands: back to what we saved
                self.base[i], self.based_on[i] = dict(merge.onto), merge.version
            self.mine[i] = dict(self.base[i])
            self.conflict[i] = None

        @precondition(lambda self: any(c is not None for c in self.conflict))
        @rule(choice=st.sampled_from([MINE, THEIRS]))
        def resolve_all_and_apply(self, choice: str) -> None:
            self._resolve_all(self._in_conflict(), choice)

        def _resolve_all(self, i: int, choice: str) -> None:
            """Pick ``choice`` for every conflict of editor ``i``, and Apply merge."""
            merge = self.conflict[i]
            assert merge is not None
            editor = self.editors[i]
            for _ in range(2):  # again if edits made meanwhile changed the conflicts
                assert editor.merge is not None
                editor.resolve({c.id: choice for c in editor.merge.conflicts})
                editor.apply_merge()
                if editor.merge is None:
                    break
            assert editor.merge is None, editor.message.value
            self._merged(i, merge, choice)

        @invariant()
        def master_is_the_model(self) -> None:
            assert _rows(self.store.load().table.to_pylist()) == self.master

        @invariant()
        def editors_hold_their_model(self) -> None:
            for i, editor in enumerate(self.editors):
                assert editor.session is not None
                held = _rows(editor.session.df.to_dict("records"))
                assert held == self.mine[i], f"editor {i}: {editor.message.value}"
                assert (editor.merge is not None) == (self.conflict[i] is not None)

    return TwoEditors


@pytest.mark.parametrize("lockless", [False, True], ids=["locked", "lost-updates"])
def test_two_editors_never_lose_an_edit(endpoint: str, lockless: bool) -> None:
    # lost-updates: editor 1's store ignores IfMatch, as a store without conditional
    # writes would; its stale saves commit, and the editor must merge back what they
    # overwrote
    machine = make_machine(endpoint, lockless)
    run_state_machine_as_test(machine, settings=machine_settings(25, 25))
