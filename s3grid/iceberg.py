"""Athena (engine v3) Iceberg recipes: each builds exact SQL and runs it on an AthenaEngine.

An Iceberg table gives row-level MERGE/UPDATE/DELETE, time travel and compaction on
Athena; the single Parquet master stays the shared, audited copy. ``export_to_master``
brings the Iceberg table back through UNLOAD, flatten and the locked save. See ICEBERG.md.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from dataclasses import replace
from typing import Any

import pandas as pd
import pyarrow as pa

from s3grid.athena import (
    AthenaEngine,
    QueryInfo,
    check_millisecond_timestamps,
    column_list,
    drop_table_sql,
    glue_type,
    merge_statements,
    qualified_name,
    run,
    sql_literal,
    unload_sql,
)
from s3grid.errors import NotFoundError, SchemaError, ValidationError
from s3grid.flatten import empty_prefix
from s3grid.layout import iceberg_seed_key, new_run_id
from s3grid.model import SaveResult
from s3grid.promote import RunManifest, promote, write_manifest
from s3grid.sqlcheck import check_identifier, check_location, check_one_statement
from s3grid.store import MasterStore

__all__ = ["IcebergTable", "iceberg_type"]


def iceberg_type(type_: pa.DataType) -> str:
    """The Athena DDL type of an Iceberg column for an Arrow type.

    Athena's Iceberg tables have no ``tinyint``/``smallint``: 8- and 16-bit integers are
    kept as ``int`` and cast back (checked) when the table is exported to the master.

    Raises:
        SchemaError: a zone-aware timestamp (Athena creates Iceberg tables with
            ``timestamp`` without zone only), or a type with no exact Athena type.
    """
    if type_ in (pa.int8(), pa.int16(), pa.uint8(), pa.uint16()):
        return "int"
    if type_ == pa.uint32():
        return "bigint"
    if pa.types.is_timestamp(type_) and type_.tz is not None:
        raise SchemaError(
            f"A timestamp with time zone ({type_}) cannot be an Iceberg column created by "
            "Athena, which creates timestamp without zone only. Keep this master's bulk "
            "edits on the Parquet master (bulk_edit), or store the column as UTC without zone."
        )
    return glue_type(type_)


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
        self.table = qualified_name(name, self.database)

    # ------------------------------------------------------------------- SQL

    def create_sql(self, schema: pa.Schema, location: str) -> str:
        """``CREATE TABLE ... TBLPROPERTIES ('table_type'='ICEBERG')`` from a master schema."""
        check_location(location)
        return (
            f"CREATE TABLE {qualified_name(self.name, self.database, quote='`')} (\n"
            f"  {column_list(schema, iceberg_type)}\n)\nLOCATION '{location}'\n"
            "TBLPROPERTIES ('table_type'='ICEBERG', 'format'='parquet', "
            "'write_compression'='snappy')"
        )

    def load_sql(self, source_table: str, database: str | None = None) -> str:
        """``INSERT INTO <iceberg> SELECT * FROM <source>`` (e.g. the master's table, in
        ``database``, default this table's)."""
        source = qualified_name(source_table, database or self.database)
        return f"INSERT INTO {self.table}\nSELECT * FROM {source}"

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
        self, store: MasterStore, *, location: str, master_table: str | None = None
    ) -> None:
        """Create the Iceberg table with the master's schema and copy the master in.

        The master is read through a table of this run only (registered, then dropped),
        never through a table of another name that may point elsewhere; pass
        ``master_table`` to read one you registered yourself instead. The version copied
        in is recorded (a run manifest in the master's bucket): an export saves over
        exactly that version, so a grid save made meanwhile is a conflict.
        """
        base = store.load()
        check_millisecond_timestamps(base.table)  # the Hive source table reads milliseconds
        create = self.create_sql(base.schema, location)  # refuses types first
        source = master_table or self.engine.register_master(store, base.table, new_run_id())
        try:
            self.engine.execute(create)
            # the engine registered the master in its own database
            where = self.database if master_table else self.engine.database
            _, info = self.engine.execute(self.load_sql(source, where))
        finally:
            if master_table is None:
                self.engine.execute(drop_table_sql(source, self.engine.database))
                self.engine.done(store)  # a CSV master's copy, if one was made
        self._record_seed(store, RunManifest.for_base(base, query_id=info.query_id))

    def seed_key(self, store: MasterStore) -> str:
        """Where the version this table was seeded from (or last exported as) is kept."""
        return iceberg_seed_key(store.cfg, self.name)

    def _record_seed(self, store: MasterStore, manifest: RunManifest) -> None:
        store.bucket.put(self.seed_key(store), manifest.to_json(), ContentType="application/json")

    def seed(self, store: MasterStore) -> RunManifest:
        """The master version this table holds the edits of.

        Raises:
            ValidationError: no record: the table was not created by create_from_master.
        """
        key = self.seed_key(store)
        try:
            body, _ = store.bucket.get(key)
        except NotFoundError as exc:
            raise ValidationError(
                f"No record of the master version {self.table} was seeded from "
                f"({store.bucket.url(key)}): exporting could overwrite saves made since. "
                "Create it with create_from_master, or pass base_version= to export."
            ) from exc
        return RunManifest.from_json(bytes(body), where=store.bucket.url(key))

    def merge(self, edits: pd.DataFrame, key_columns: Sequence[str]) -> list[QueryInfo]:
        """MERGE INTO from a DataFrame of edited/new rows (matched on the key columns),
        in as many statements as Athena's query size needs (one for most edits).

        Each statement commits on its own: if one fails, the earlier ones are in the
        Iceberg table (not the master); run the merge again, it is idempotent.
        """
        statements = merge_statements(self.name, edits, key_columns, database=self.database)
        return [self.engine.execute(sql)[1] for sql in statements]

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
        self,
        store: MasterStore,
        *,
        note: str,
        prefix: str | None = None,
        base_version: str | None = None,
    ) -> SaveResult:
        """UNLOAD the table to an emptied prefix and promote it over the master version
        the table was seeded from (or ``base_version``), with the locked save.

        Raises:
            ConflictError: the master changed since the table was seeded; nothing written.
            ValidationError: no record of the seed version, and no ``base_version``.
        """
        base = store.read_version(base_version) if base_version else None
        seed = RunManifest.for_base(base) if base is not None else self.seed(store)
        prefix = prefix or self.engine.target_prefix(store.cfg)
        location = check_location(f"s3://{store.cfg.bucket}/{prefix}")
        empty_prefix(store.bucket, prefix)
        _, info = self.engine.execute(unload_sql(f"SELECT * FROM {self.table}", location=location))
        write_manifest(store, prefix, replace(seed, query_id=info.query_id))
        done = promote(store, prefix, note=note, source="sql")
        # the table now holds what the master holds: the next export is based on it
        self._record_seed(
            store,
            replace(seed, base_version=done.save.new_version, base_etag=done.save.new_etag),
        )
        return done.save
