"""Athena (engine v3) Iceberg recipes: each builds exact SQL and runs it on an AthenaEngine.

An Iceberg table gives row-level MERGE/UPDATE/DELETE, time travel and compaction on
Athena; the single Parquet master stays the shared, audited copy. ``export_to_master``
brings the Iceberg table back through UNLOAD, flatten and the locked save. See ICEBERG.md.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from typing import Any

import pandas as pd
import pyarrow as pa

from s3grid.athena import (
    AthenaEngine,
    QueryInfo,
    _columns,
    _qualified,
    merge_sql,
    run,
    sql_literal,
    unload_sql,
)
from s3grid.errors import ValidationError
from s3grid.flatten import empty_prefix, flatten_to_table
from s3grid.sqlcheck import check_identifier, check_location, check_one_statement
from s3grid.store import MasterStore, SaveResult

__all__ = ["IcebergTable"]


def _where(predicate: str) -> str:
    text = check_one_statement(predicate)
    if not text:
        raise ValidationError("Give a WHERE predicate, e.g. tow = 4 AND net = 0.")
    return text


class IcebergTable:
    """One Iceberg table on Athena.

    Args:
        engine: the Athena engine that runs the statements.
        name: the table name.
        database: the Glue database (default: the engine's).
    """

    def __init__(self, engine: AthenaEngine, name: str, *, database: str | None = None) -> None:
        self.engine = engine
        self.name = check_identifier(name, what="table name")
        self.database = database or engine.database
        self.table = _qualified(name, self.database)

    # ------------------------------------------------------------------- SQL

    def create_sql(self, schema: pa.Schema, location: str) -> str:
        """``CREATE TABLE ... TBLPROPERTIES ('table_type'='ICEBERG')`` from a master schema."""
        check_location(location)
        return (
            f"CREATE TABLE {_qualified(self.name, self.database, quote='`')} (\n"
            f"  {_columns(schema)}\n)\nLOCATION '{location}'\n"
            "TBLPROPERTIES ('table_type'='ICEBERG', 'format'='parquet', "
            "'write_compression'='snappy')"
        )

    def load_sql(self, source_table: str) -> str:
        """``INSERT INTO <iceberg> SELECT * FROM <source>`` (e.g. the master's table)."""
        return f"INSERT INTO {self.table}\nSELECT * FROM {_qualified(source_table, self.database)}"

    def update_sql(self, assignments: Mapping[str, Any], where: str) -> str:
        """``UPDATE <t> SET col = <literal>, ... WHERE <predicate>``."""
        if not assignments:
            raise ValidationError("Nothing to update: give column=value assignments.")
        sets = ", ".join(
            f'"{check_identifier(c, what="column name")}" = {sql_literal(v)}'
            for c, v in assignments.items()
        )
        return f"UPDATE {self.table} SET {sets} WHERE {_where(where)}"

    def delete_sql(self, where: str) -> str:
        """``DELETE FROM <t> WHERE <predicate>``."""
        return f"DELETE FROM {self.table} WHERE {_where(where)}"

    def at_sql(
        self, *, timestamp: dt.datetime | str | None = None, version: int | None = None
    ) -> str:
        """Time travel: ``FOR TIMESTAMP AS OF`` or ``FOR VERSION AS OF`` (a snapshot id)."""
        if (timestamp is None) == (version is None):
            raise ValidationError("Give exactly one of timestamp or version.")
        if version is not None:
            return f"SELECT * FROM {self.table} FOR VERSION AS OF {int(version)}"
        assert timestamp is not None
        when = pd.Timestamp(timestamp)
        if when.tzinfo is None:
            when = when.tz_localize("UTC")
        stamp = when.tz_convert("UTC").strftime("%Y-%m-%d %H:%M:%S.%f")
        return f"SELECT * FROM {self.table} FOR TIMESTAMP AS OF TIMESTAMP '{stamp} UTC'"

    def snapshots_sql(self) -> str:
        """The ``$snapshots`` metadata table, oldest first."""
        # name and database are checked identifiers; "$snapshots" is Athena's suffix.
        snapshots = self.table[:-1] + '$snapshots"'
        return f"SELECT * FROM {snapshots} ORDER BY committed_at"

    def optimize_sql(self) -> str:
        """Compact small files: ``OPTIMIZE ... REWRITE DATA USING BIN_PACK``."""
        return f"OPTIMIZE {self.table} REWRITE DATA USING BIN_PACK"

    def vacuum_sql(self) -> str:
        """Expire old snapshots and remove orphan files: ``VACUUM``."""
        return f"VACUUM {self.table}"

    # --------------------------------------------------------------- running

    def create_from_master(
        self, store: MasterStore, *, location: str, master_table: str = "work_master_parquet"
    ) -> None:
        """Create the Iceberg table with the master's schema and copy the master in.

        ``master_table`` must already be registered (``external_table_ddl``).
        """
        self.engine.execute(self.create_sql(store.load().schema, location))
        self.engine.execute(self.load_sql(master_table))

    def merge(self, edits: pd.DataFrame, key_columns: Sequence[str]) -> QueryInfo:
        """MERGE INTO from a DataFrame of edited/new rows (matched on the key columns)."""
        return self.engine.execute(
            merge_sql(self.name, edits, key_columns, database=self.database)
        )[1]

    def update(self, assignments: Mapping[str, Any], where: str) -> QueryInfo:
        """UPDATE rows matching ``where``."""
        return self.engine.execute(self.update_sql(assignments, where))[1]

    def delete(self, where: str) -> QueryInfo:
        """DELETE rows matching ``where``."""
        return self.engine.execute(self.delete_sql(where))[1]

    def at(self, *, timestamp: dt.datetime | str | None = None, version: int | None = None) -> Any:
        """The table as it was (a DataFrame)."""
        return run(self.at_sql(timestamp=timestamp, version=version), engine=self.engine)

    def snapshots(self) -> Any:
        """The table's snapshots (a DataFrame)."""
        return run(self.snapshots_sql(), engine=self.engine)

    def optimize(self) -> QueryInfo:
        """Run OPTIMIZE (bin-pack)."""
        return self.engine.execute(self.optimize_sql())[1]

    def vacuum(self) -> QueryInfo:
        """Run VACUUM."""
        return self.engine.execute(self.vacuum_sql())[1]

    def export_to_master(
        self, store: MasterStore, *, note: str, prefix: str | None = None
    ) -> SaveResult:
        """UNLOAD the table to an emptied prefix, flatten, and promote with the locked save.

        Raises:
            ConflictError: the master changed since the export started.
        """
        base = store.load()
        prefix = prefix or self.engine.target_prefix(store.cfg)
        location = check_location(f"s3://{store.cfg.bucket}/{prefix}")
        empty_prefix(store.bucket, prefix)
        self.engine.execute(unload_sql(f"SELECT * FROM {self.table}", location=location))
        table, _ = flatten_to_table(store.bucket, prefix, schema=base.schema)
        return store.save(table, base=base, note=note, source="sql")
