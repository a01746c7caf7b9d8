"""The DuckDB engine: run a bulk-edit SELECT on this machine, against the master's Arrow table.

No httpfs (it cannot be installed offline): the master is already in memory as Arrow,
so DuckDB reads it zero-copy and returns Arrow. The SELECT reads the master and nothing
else: external access (local files, URLs, extensions) is off while it runs.
"""

from __future__ import annotations

from typing import Any

import pyarrow as pa

from s3grid.errors import SQLError
from s3grid.sqlcheck import check_identifier, check_single_select

__all__ = ["DuckDBEngine", "SQLError"]


class DuckDBEngine:
    """Runs SELECTs in-process with DuckDB, with Athena-like (Trino) semantics.

    ``integer_division`` makes ``7 / 2`` give 3, as on Athena, so one SELECT gives the
    same rows on both engines.
    """

    name = "duckdb"

    def run(
        self,
        select_sql: str,
        master: pa.Table,
        table_name: str,
        *,
        store: Any = None,
        base: Any = None,
    ) -> pa.Table:
        """Run ``select_sql`` with ``master`` available as ``table_name``; return Arrow.

        Raises:
            SQLError: the statement is not one SELECT, or DuckDB refused or failed it.
        """
        import duckdb  # imported here: only bulk edits need it

        check_identifier(table_name, what="table name")
        sql = check_single_select(select_sql)
        con = duckdb.connect(":memory:")
        try:
            con.execute("SET integer_division = true")
            con.register(table_name, master)
            # The master is registered; nothing else may be read into it (read_text,
            # read_csv, ATTACH, extensions). Locked so the SELECT cannot turn it back on.
            con.execute("SET enable_external_access = false")
            con.execute("SET lock_configuration = true")
            result = con.sql(sql).to_arrow_table()
        except duckdb.Error as exc:
            raise SQLError(f"The SELECT failed on DuckDB: {exc}") from exc
        finally:
            con.close()
        return result

    def done(self, store: Any) -> None:
        """Nothing to forget: the SELECT ran in memory."""
