"""SQL bulk edits: a SELECT over the master gives the new master, saved with the locked save.

Flow: take the base (and its ETag) -> run the SELECT on an engine (DuckDB here, or
Athena: CTAS parts, flattened) -> check the result against the master's schema ->
``MasterStore.save(source="sql")``. A grid save during the query makes the save a
``ConflictError``: it is never overwritten.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import pyarrow as pa
import pyarrow.csv as pacsv

from s3grid.diff import TableDiff, diff_tables
from s3grid.errors import S3GridError, SchemaError, ValidationError
from s3grid.localsql import DuckDBEngine
from s3grid.model import Master, SaveResult
from s3grid.schema import coerce_table
from s3grid.store import MasterStore

__all__ = ["BulkPreview", "Engine", "apply_preview", "bulk_edit", "export_csv", "preview_bulk_edit"]

DEFAULT_TABLE = "work_master_parquet"


class Engine(Protocol):
    """What runs a bulk-edit SELECT: :class:`DuckDBEngine` or :class:`AthenaEngine`."""

    name: str

    def run(
        self,
        select_sql: str,
        master: pa.Table,
        table_name: str,
        *,
        store: Any,
        base: Master | None = None,
    ) -> pa.Table:
        """The SELECT's result; ``base`` is the version ``master`` was loaded as."""

    def done(self, store: Any) -> None:
        """Called once the result is no longer needed (previewed, or saved): forget the
        run, so that nothing promotes it again (Athena empties its staging)."""


@dataclass(frozen=True)
class BulkPreview:
    """The result of a bulk-edit SELECT, not yet saved: the new table and its diff."""

    base: Master
    table: pa.Table
    diff: TableDiff


def _engine(engine: str | Engine, store: MasterStore) -> Engine:
    if not isinstance(engine, str):
        return engine
    if engine == "duckdb":
        return DuckDBEngine()
    if engine == "athena":
        from s3grid.athena import AthenaEngine

        return AthenaEngine.from_env(store.cfg)
    raise ValidationError(f"Unknown engine {engine!r}: use 'duckdb' or 'athena'.")


def preview_bulk_edit(
    store: MasterStore,
    select_sql: str,
    *,
    engine: str | Engine = "duckdb",
    table_name: str = DEFAULT_TABLE,
    base: Master | None = None,
    allow_schema_change: bool = False,
) -> BulkPreview:
    """Run the SELECT and show what it would change, without writing to the master.

    Nothing the run staged is left to be promoted later (Athena's staging is emptied).

    Raises:
        SQLError / AthenaQueryError: the query failed.
        SchemaError: the result's columns or types do not fit the master.
        ValidationError: empty result, duplicate keys, or unsafe SQL/names.
    """
    runner = _engine(engine, store)
    try:
        return _preview(store, select_sql, runner, table_name, base, allow_schema_change)
    finally:
        _forget(runner, store)


def _forget(runner: Engine, store: MasterStore) -> None:
    """``runner.done``, without hiding the error that may be on its way out: the staged
    output keeps its manifest, so a later promotion of it is still over its own base."""
    try:
        runner.done(store)
    except S3GridError as exc:
        warnings.warn(
            f"Could not empty the run's staging ({exc}); a later promotion of it is still "
            "checked against the version it read.",
            RuntimeWarning,
            stacklevel=3,
        )


def _preview(
    store: MasterStore,
    select_sql: str,
    runner: Engine,
    table_name: str,
    base: Master | None,
    allow_schema_change: bool,
) -> BulkPreview:
    base = base or store.load()
    result = runner.run(select_sql, base.table, table_name, store=store, base=base)
    try:
        table = coerce_table(result, base.schema, allow_schema_change=allow_schema_change)
    except SchemaError as exc:
        raise SchemaError(
            f"The SELECT's result does not fit the master: {exc} Select the master's "
            "columns, in order, with their types (CAST if needed).",
            row=exc.row,
            column=exc.column,
            value=exc.value,
            expected=exc.expected,
        ) from exc
    if table.num_rows == 0:
        raise ValidationError(
            "The SELECT returned no rows; saving it would empty the master. Nothing was "
            "written. Check the WHERE clause."
        )
    store.validate(table)
    keys = store.key_columns_for(table.schema)
    diff = (
        diff_tables(base.table, table, keys)
        if table.schema == base.schema
        else TableDiff(keys, (), (), ())
    )
    return BulkPreview(base=base, table=table, diff=diff)


def bulk_edit(
    store: MasterStore,
    select_sql: str,
    *,
    note: str,
    engine: str | Engine = "duckdb",
    table_name: str = DEFAULT_TABLE,
    base: Master | None = None,
    allow_schema_change: bool = False,
) -> SaveResult:
    """Replace the master with the result of a SELECT over it, through the locked save.

    Args:
        store: the master.
        select_sql: one SELECT over ``table_name`` returning the new master.
        note: the audit note.
        engine: ``"duckdb"`` (local, default), ``"athena"``, or an engine instance.
        table_name: the name the master has in the SELECT.
        base: the version the edit is based on (default: load now). The save fails with
            ConflictError if the master changed since.
        allow_schema_change: accept a result with different columns, on purpose.

    Raises:
        ConflictError: the master changed while the query ran; nothing was written.
    """
    runner = _engine(engine, store)
    try:
        preview = _preview(store, select_sql, runner, table_name, base, allow_schema_change)
    except BaseException:
        _forget(runner, store)  # a run that failed leaves nothing to promote
        raise
    # Until the save succeeds, what the run staged stays (its manifest names the base).
    res = apply_preview(store, preview, note=note, allow_schema_change=allow_schema_change)
    _forget(runner, store)  # a result is promoted once
    return res


def apply_preview(
    store: MasterStore, preview: BulkPreview, *, note: str, allow_schema_change: bool = False
) -> SaveResult:
    """Save exactly what ``preview`` showed, over the version it previewed
    (``source=sql``): the query is not run again, so what is saved is what was reviewed,
    and a master that moved on since is a :class:`ConflictError` (nothing written).

    Raises:
        ConflictError: the master changed since the preview.
    """
    return store.save(
        preview.table,
        base=preview.base,
        note=note,
        source="sql",
        allow_schema_change=allow_schema_change,
    )


def export_csv(
    store: MasterStore, destination: str | Path, *, version_id: str | None = None
) -> str:
    """Write the master (or one version) as CSV to a local path or an ``s3://`` / key.

    A destination starting with ``s3://<bucket>/`` or without a path separator prefix is
    written to the master's bucket through the store; anything else is a local file.
    Returns where it was written.
    """
    master = store.read_version(version_id) if version_id else store.load()
    sink = pa.BufferOutputStream()
    pacsv.write_csv(master.table, sink)
    body = sink.getvalue().to_pybytes()
    dest = str(destination)
    if dest.startswith("s3://"):
        bucket, _, key = dest[5:].partition("/")
        if bucket != store.cfg.bucket or not key or key == store.cfg.master_key:
            raise ValidationError(
                f"Export to {dest!r}: give s3://{store.cfg.bucket}/<key> other than the master."
            )
        store.bucket.put(key, body, ContentType="text/csv")
        return dest
    path = Path(dest)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(body)
    return str(path)
