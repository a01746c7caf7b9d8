"""A Hypothesis state machine over MasterStore: clients interleave loads, saves, stale
saves, restores, crashes after the commit, reconciles and prunes against the local S3.

After every step: the master equals the model, and a stale save never changed it. After
every reconcile: each committed s3grid version has exactly one snapshot (same bytes, in
snapshots/ or the archive) and one audit, and the audit chain prev -> new is unbroken.
"""

from __future__ import annotations

import itertools
from typing import Any

import boto3
import pytest
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule

from s3grid import ConflictError, MasterStore, S3GridConfig
from s3grid.prune import prune
from s3grid.sample import sample_master
from tests.support.machines import machine_settings

pytestmark = pytest.mark.slow

CLIENTS = 3
_numbers = itertools.count()


class Crash(BaseException):
    """A process dying mid-save (not an Exception: nothing in s3grid catches it)."""


def make_machine(endpoint: str) -> type[RuleBasedStateMachine]:
    class MasterMachine(RuleBasedStateMachine):
        @initialize()
        def setup(self) -> None:
            bucket = f"s3grid-state-{next(_numbers)}"
            self.s3 = boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1")
            self.s3.create_bucket(Bucket=bucket)
            self.s3.put_bucket_versioning(
                Bucket=bucket, VersioningConfiguration={"Status": "Enabled"}
            )
            cfg = S3GridConfig(bucket=bucket, endpoint_url=endpoint, max_attempts=2)
            self.stores = [MasterStore(cfg) for _ in range(CLIENTS)]
            self.stores[0].create(sample_master(10), note="init")
            self.bases = [s.load() for s in self.stores]
            self.model = self.bases[0].table
            self.first_snapshot = self.stores[0].audit_log().iloc[0]["snapshot_key"]

        def _expect(self, i: int, new_table: Any, action: Any) -> None:
            """Run a save-like action; success iff the client's base is current."""
            current = self.stores[0].load()
            fresh = self.bases[i].etag == current.etag
            try:
                action()
            except ConflictError:
                assert not fresh, "a save from the current version was refused"
                assert self.stores[0].load().etag == current.etag  # stale: nothing changed
                return
            assert fresh, "a stale save went through"
            self.model = new_table

        @rule(i=st.integers(0, CLIENTS - 1))
        def load(self, i: int) -> None:
            self.bases[i] = self.stores[i].load()

        @rule(
            i=st.integers(0, CLIENTS - 1),
            row=st.integers(0, 9),
            value=st.floats(0, 1000, allow_nan=False).map(lambda v: round(v, 2)),
        )
        def save(self, i: int, row: int, value: float) -> None:
            df = self.bases[i].to_pandas()
            df.loc[row, "volume_filtered"] = value
            table = self.bases[i].table.from_pandas(
                df, schema=self.bases[i].schema, preserve_index=False
            )
            self._expect(
                i, table, lambda: self.stores[i].save(df, base=self.bases[i], note=f"c{i} r{row}")
            )

        @rule(i=st.integers(0, CLIENTS - 1))
        def restore_first(self, i: int) -> None:
            first = self.stores[i].read_version(self.stores[i].versions()[-1].version_id)
            self._expect(
                i,
                first.table,
                lambda: self.stores[i].restore(
                    version_id=first.version_id, base=self.bases[i], note="restore"
                ),
            )

        @rule(
            i=st.integers(0, CLIENTS - 1),
            where=st.sampled_from(["_write_snapshot", "_write_audit"]),
        )
        def crash_after_commit(self, i: int, where: str) -> None:
            df = self.bases[i].to_pandas()
            df.loc[0, "volume_filtered"] = -1.0 - len(df)
            table = self.bases[i].table.from_pandas(
                df, schema=self.bases[i].schema, preserve_index=False
            )
            original = getattr(MasterStore, where)

            def die(*_: Any, **__: Any) -> None:
                raise Crash

            def action() -> None:
                setattr(MasterStore, where, die)
                try:
                    self.stores[i].save(df, base=self.bases[i], note="crash")
                except Crash:
                    pass
                finally:
                    setattr(MasterStore, where, original)

            self._expect(i, table, action)

        @rule()
        def reconcile(self) -> None:
            store = self.stores[0]
            store.reconcile()
            log = store.audit_log()
            versions = store.versions()
            assert sorted(log["new_version"]) == sorted(v.version_id for v in versions)
            assert log["save_id"].is_unique
            chain = list(zip(log["prev_version"][1:], log["new_version"][:-1], strict=True))
            assert all(prev == new for prev, new in chain), chain
            archived = {o["Key"] for o in store.bucket.list_objects("archive/")}
            for row in log.itertuples():
                body = store.bucket.get(store.cfg.master_key, row.new_version)[0]
                if row.snapshot_key in {o["Key"] for o in store.bucket.list_objects("snapshots/")}:
                    assert store.bucket.get(row.snapshot_key)[0] == body
                else:  # pruned: archived under its version id
                    assert any(k.endswith(f"snapshot_{row.new_version}.parquet") for k in archived)

        @rule()
        def prune_to_four(self) -> None:
            self.stores[0].reconcile()  # prune orders saves by their audits
            prune(self.stores[0], keep=4, apply=True)

        @invariant()
        def master_equals_model(self) -> None:
            if hasattr(self, "model"):
                assert self.stores[0].load().table.equals(self.model)

    return MasterMachine


def test_master_store_state_machine(endpoint: str) -> None:
    machine = make_machine(endpoint)
    machine.TestCase.settings = machine_settings(12, 12)
    machine.TestCase().runTest()
