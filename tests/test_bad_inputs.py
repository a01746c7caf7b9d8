"""The bad-input catalogue: each case names what is wrong, raises its own type, writes nothing."""

from __future__ import annotations

from collections.abc import Callable
from types import SimpleNamespace
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from botocore.stub import Stubber

from s3grid import (
    AccessDeniedError,
    ConfigError,
    MasterFormatError,
    MasterNotFoundError,
    MasterStore,
    NotFoundError,
    S3GridConfig,
    SchemaError,
    ValidationError,
    VersioningError,
    bulk_edit,
)
from s3grid.athena import AthenaEngine, AthenaQueryError, external_table_ddl
from s3grid.localsql import SQLError
from s3grid.promote import promote
from s3grid.session import EditSession
from s3grid.sqlcheck import check_location
from tests.support.athena import FakeAthena
from tests.support.s3 import all_objects
from tests.support.seed import SEED_SQL

Case = Callable[[MasterStore, Any, str], Any]


def put_master(s3: Any, bucket: str, body: bytes, key: str = "data/master.parquet") -> None:
    s3.put_object(Bucket=bucket, Key=key, Body=body)


def edited(store: MasterStore, change: Callable[[pd.DataFrame], Any]) -> Any:
    m = store.load()
    df = m.to_pandas()
    out = change(df)
    return store.save(df if out is None else out, base=m, note="bad input")


def truncate_master(s3: Any, bucket: str) -> None:
    body = s3.get_object(Bucket=bucket, Key="data/master.parquet")["Body"].read()
    put_master(s3, bucket, body[: len(body) // 2])


def access_denied(store: MasterStore, s3: Any, bucket: str) -> Any:
    # moto's server does not enforce bucket policies; S3 answers a denied GET like this.
    def deny(**_: Any) -> Any:
        return SimpleNamespace(status_code=403, headers={}), {
            "Error": {"Code": "AccessDenied", "Message": "Access Denied"},
            "ResponseMetadata": {"HTTPStatusCode": 403},
        }

    store.bucket.client.meta.events.register("before-call.s3.GetObject", deny)
    return store.load()


def unload_target_not_empty(store: MasterStore, s3: Any, bucket: str) -> Any:
    engine = AthenaEngine(
        output_prefix="staging/fixed/",
        work_group="primary",
        s3_staging_dir=f"s3://{bucket}/results/",
        database="lab",
        region="us-east-1",
        progress=False,
        poll_interval=0.01,
        endpoint_url=store.cfg.endpoint_url,
    )
    FakeAthena(engine, store, s3)
    import s3grid.athena

    real = s3grid.athena.empty_prefix
    s3grid.athena.empty_prefix = lambda *_: 0  # as if emptying had been skipped
    try:
        return bulk_edit(store, SEED_SQL, engine=engine, note="x")
    finally:
        s3grid.athena.empty_prefix = real


def failed_athena_query(store: MasterStore, s3: Any, bucket: str) -> Any:
    engine = AthenaEngine(
        work_group="primary",
        database="lab",
        region="us-east-1",
        progress=False,
        poll_interval=0.01,
        endpoint_url=store.cfg.endpoint_url,
    )
    with Stubber(engine.connection.client) as stub:
        stub.add_response("start_query_execution", {"QueryExecutionId": "q-9"})
        stub.add_response(
            "get_query_execution",
            {
                "QueryExecution": {
                    "QueryExecutionId": "q-9",
                    "Query": "CREATE TABLE ...",
                    "Status": {"State": "FAILED", "StateChangeReason": "HIVE_BAD_DATA: oops"},
                }
            },
        )
        return bulk_edit(store, SEED_SQL, engine=engine, note="x")


def unicode_column_for_athena(store: MasterStore, s3: Any, bucket: str) -> Any:
    schema = pa.schema([("tow", pa.int32()), ("température", pa.float64())])
    return external_table_ddl(schema, "work_master_parquet", location=f"s3://{bucket}/data/")


CASES: dict[str, tuple[Case, type[Exception], str]] = {
    # the object
    "non-parquet master": (lambda st, s3, b: st.load(), MasterFormatError, "magic bytes"),
    "truncated parquet": (lambda st, s3, b: st.load(), MasterFormatError, "not a valid Parquet"),
    "empty object": (lambda st, s3, b: st.load(), MasterFormatError, "is empty"),
    "csv ragged rows": (
        lambda st, s3, b: MasterStore(
            st.cfg.with_(master_key="data/m.csv", file_format="csv")
        ).load(),
        MasterFormatError,
        "CSV",
    ),
    "missing bucket": (
        lambda st, s3, b: MasterStore(st.cfg.with_(bucket="no-such-bkt")).load(),
        MasterNotFoundError,
        "no-such-bkt",
    ),
    "missing key": (
        lambda st, s3, b: MasterStore(st.cfg.with_(master_key="data/x.parquet")).load(),
        MasterNotFoundError,
        "data/x.parquet",
    ),
    "access denied": (access_denied, AccessDeniedError, "access denied"),
    # the values
    "wrong type in a cell": (
        lambda st, s3, b: edited(
            st, lambda df: df.astype(object).assign(min_depth=["deep"] * len(df))
        ),
        SchemaError,
        "'deep'",
    ),
    "int32 overflow": (
        lambda st, s3, b: edited(st, lambda df: df.astype(object).assign(tow=[2**31] * len(df))),
        SchemaError,
        "out of range",
    ),
    "nan in a key": (
        lambda st, s3, b: edited(
            st, lambda df: df.assign(net=df["net"].astype("float").where(df.index != 3, np.nan))
        ),
        ValidationError,
        "must not be empty",
    ),
    "inf in an int column": (
        lambda st, s3, b: edited(
            st,
            lambda df: df.assign(
                max_depth=df["max_depth"].astype(float).where(df.index != 2, np.inf)
            ),
        ),
        SchemaError,
        "infinity",
    ),
    "huge note": (
        lambda st, s3, b: st.save(st.load().table, base=st.load(), note="x" * 5000),
        ValidationError,
        "5000 characters",
    ),
    "control characters in note": (
        lambda st, s3, b: st.save(st.load().table, base=st.load(), note="ok\x1b[31m"),
        ValidationError,
        "U+001B",
    ),
    "duplicate keys": (
        lambda st, s3, b: edited(st, lambda df: df.assign(net=df["net"].where(df.index != 1, 0))),
        ValidationError,
        "Duplicate key",
    ),
    "unicode column name for athena": (unicode_column_for_athena, ValidationError, "température"),
    "not a table": (
        lambda st, s3, b: st.save([1, 2], base=st.load(), note="x"),  # type: ignore
        SchemaError,
        "DataFrame or a pyarrow Table",
    ),
    "empty table": (
        lambda st, s3, b: st.save(st.load().table.slice(0, 0), base=st.load(), note="x"),
        ValidationError,
        "0 rows",
    ),
    # schema changes
    "added column": (
        lambda st, s3, b: edited(st, lambda df: df.assign(extra=1)),
        SchemaError,
        "Columns added: ['extra']",
    ),
    "dropped column": (
        lambda st, s3, b: edited(st, lambda df: df.drop(columns="is_day")),
        SchemaError,
        "Columns dropped: ['is_day']",
    ),
    "renamed column": (
        lambda st, s3, b: edited(st, lambda df: df.rename(columns={"net": "net_no"})),
        SchemaError,
        "missing ['net']",
    ),
    "reordered columns": (
        lambda st, s3, b: edited(st, lambda df: df[df.columns[::-1]]),
        SchemaError,
        "reordered",
    ),
    # the SQL
    "sql syntax error": (
        lambda st, s3, b: bulk_edit(st, "SELECT FROM WHERE", note="x"),
        ValidationError,
        "does not parse",
    ),
    "schema-breaking select": (
        lambda st, s3, b: bulk_edit(st, "SELECT tow, net FROM work_master_parquet", note="x"),
        SchemaError,
        "does not fit the master",
    ),
    "empty result": (
        lambda st, s3, b: bulk_edit(st, "SELECT * FROM work_master_parquet WHERE 1 = 0", note="x"),
        ValidationError,
        "no rows",
    ),
    "non-empty unload target": (unload_target_not_empty, AthenaQueryError, "HIVE_PATH_ALREADY"),
    "target is the master's prefix": (
        lambda st, s3, b: bulk_edit(
            st, SEED_SQL, note="x", engine=AthenaEngine(output_prefix="data/", progress=False)
        ),
        ValidationError,
        "contains the master",
    ),
    "failed athena query": (failed_athena_query, AthenaQueryError, "HIVE_BAD_DATA"),
    # values never narrowed silently (issue 16)
    "float64 beyond float32 via sql": (
        lambda st, s3, b: bulk_edit(
            st,
            "SELECT * REPLACE (CAST(1e300 AS DOUBLE) AS volume_filtered) FROM work_master_parquet",
            note="x",
        ),
        SchemaError,
        "out of range",
    ),
    "2 into a bool column via sql": (
        lambda st, s3, b: bulk_edit(
            st, "SELECT * REPLACE (2 AS is_day) FROM work_master_parquet", note="x"
        ),
        SchemaError,
        "cannot store 2 as bool",
    ),
    "0.5 into a bool column": (
        lambda st, s3, b: edited(st, lambda df: df.assign(is_day=0.5)),
        SchemaError,
        "expected true/false",
    ),
    # the master and the bucket (issue 16)
    "unversioned bucket": (
        lambda st, s3, b: edited(st, lambda df: None),
        VersioningError,
        "versioning suspended",
    ),
    "duplicate column names": (lambda st, s3, b: st.load(), SchemaError, "more than one column"),
    "column without a type": (lambda st, s3, b: st.load(), SchemaError, "have no type"),
    "csv value unlike its declared type": (
        lambda st, s3, b: _csv_store(st).load(),
        MasterFormatError,
        "does not fit the type declared",
    ),
    # arguments (issue 16)
    "lone surrogate in note": (
        lambda st, s3, b: st.save(st.load().table, base=st.load(), note="a\udcff"),
        ValidationError,
        "U+DCFF",
    ),
    "empty version id to restore": (
        lambda st, s3, b: st.restore(version_id="", base=st.load(), note="x"),
        ValidationError,
        "is empty",
    ),
    "not a date for since": (
        lambda st, s3, b: st.audit_log(since="the day before"),
        ValidationError,
        "not a date",
    ),
    "endpoint that is not a url": (
        lambda st, s3, b: S3GridConfig(bucket=b, endpoint_url="localhost:9000"),
        ConfigError,
        "is not a URL",
    ),
    "local sql reads a file": (
        lambda st, s3, b: bulk_edit(st, "SELECT * FROM read_csv('/etc/hostname')", note="x"),
        SQLError,
        "disabled by configuration",
    ),
    # injection
    "quote in table name": (
        lambda st, s3, b: bulk_edit(st, "SELECT 1", note="x", table_name="t'; DROP TABLE x; --"),
        ValidationError,
        "Invalid table name",
    ),
    "semicolon in location": (
        lambda st, s3, b: check_location(f"s3://{b}/a;b/"),
        ValidationError,
        "Invalid S3 location",
    ),
    "second statement in sql": (
        lambda st, s3, b: bulk_edit(
            st, "SELECT * FROM work_master_parquet; DELETE FROM x", note="x"
        ),
        ValidationError,
        "one statement",
    ),
}


def _csv_store(store: MasterStore) -> MasterStore:
    return MasterStore(store.cfg.with_(master_key="data/typed.csv", file_format="csv"))


def _typed_csv(s3: Any, bucket: str) -> None:
    # a CSV master that declares tow an int32 (as s3grid records it), holding "x"
    s3.put_object(
        Bucket=bucket,
        Key="data/typed.csv",
        Body=b"tow,net\n1,0\nx,1\n",
        Metadata={
            "s3grid-save-id": "ab",
            "s3grid-saved-at": "2024-01-01T00:00:00Z",
            "s3grid-types": "tow=int32",
        },
    )


def _float32_master(s3: Any, bucket: str) -> None:
    body = s3.get_object(Bucket=bucket, Key="data/master.parquet")["Body"].read()
    table = pq.read_table(pa.BufferReader(body))
    i = table.schema.get_field_index("volume_filtered")
    table = table.set_column(i, "volume_filtered", table.column(i).cast(pa.float32()))
    put_master(s3, bucket, _parquet(table))


def _parquet(table: pa.Table) -> bytes:
    sink = pa.BufferOutputStream()
    pq.write_table(table, sink)
    return bytes(sink.getvalue().to_pybytes())


# Cases that need a bad object in the bucket first; that write is the setup, not the case.
SETUP: dict[str, Callable[[Any, str], Any]] = {
    "float64 beyond float32 via sql": _float32_master,
    "unversioned bucket": lambda s3, b: s3.put_bucket_versioning(
        Bucket=b, VersioningConfiguration={"Status": "Suspended"}
    ),
    "duplicate column names": lambda s3, b: put_master(
        s3, b, _parquet(pa.Table.from_arrays([pa.array([1]), pa.array([2])], names=["a", "a"]))
    ),
    "column without a type": lambda s3, b: put_master(
        s3, b, _parquet(pa.table({"tow": [1], "net": [0], "blank": pa.array([None])}))
    ),
    "csv value unlike its declared type": _typed_csv,
    "non-parquet master": lambda s3, b: put_master(s3, b, b"tow,net\n1,0\n"),
    "truncated parquet": truncate_master,
    "empty object": lambda s3, b: put_master(s3, b, b""),
    "csv ragged rows": lambda s3, b: put_master(s3, b, b"tow,net\n1,0\n2\n", "data/m.csv"),
    "non-empty unload target": lambda s3, b: s3.put_object(
        Bucket=b, Key="staging/fixed/left-over", Body=b"x"
    ),
}


@pytest.mark.parametrize("name", list(CASES))
def test_bad_input_is_refused_cleanly(
    name: str, master_store: MasterStore, s3: Any, bucket: str
) -> None:
    case, error, message = CASES[name]
    if name in SETUP:
        SETUP[name](s3, bucket)
    before = all_objects(s3, bucket)
    with pytest.raises(error) as info:
        case(master_store, s3, bucket)
    assert message.lower() in str(info.value).lower(), str(info.value)
    assert all_objects(s3, bucket) == before  # zero objects written


def test_catalogue_has_at_least_25_cases() -> None:
    assert len(CASES) >= 25


def _parquet_part(s3: Any, bucket: str, prefix: str, table: pa.Table) -> str:
    s3.put_object(Bucket=bucket, Key=f"{prefix}part-0.parquet", Body=_parquet(table))
    return prefix


def _with_column(table: pa.Table, name: str, values: pa.Array) -> pa.Table:
    return table.set_column(table.schema.get_field_index(name), name, values)


def _dup(table: pa.Table) -> pa.Table:
    return _with_column(table, "net", pa.array([0] * len(table), table.schema.field("net").type))


def _deep(table: pa.Table) -> pa.Table:
    return _with_column(table, "min_depth", pa.array(["deep"] * len(table)))


def _into_the_master(
    change: Callable[[pa.Table], pa.Table], replace: str
) -> dict[str, Callable[[MasterStore, Any, str], Any]]:
    """The three ways a whole table reaches the master: saved from Python, made by a
    bulk edit (``SELECT * REPLACE (<replace>)``), and promoted from staged output."""
    return {
        "save": lambda st, s3, b: st.save(change(st.load().table), base=st.load(), note="x"),
        "bulk edit": lambda st, s3, b: bulk_edit(
            st, f"SELECT * REPLACE ({replace}) FROM work_master_parquet", note="x"
        ),
        "promote": lambda st, s3, b: promote(
            st,
            _parquet_part(s3, b, "stage/run/", change(st.load().table)),
            note="x",
            base_version=st.load().version_id,
        ),
    }


# One bad input, every way into the master: each path raises the same type.
PATHS: dict[str, dict[str, Callable[[MasterStore, Any, str], Any]]] = {
    "duplicate keys": _into_the_master(_dup, "0 AS net"),
    "text in an int column": {
        **_into_the_master(_deep, "'deep' AS min_depth"),
        "cell edit": lambda st, s3, b: EditSession(st.load()).set_cell(0, "min_depth", "deep"),
    },
    "a version that does not exist": {
        "read": lambda st, s3, b: st.read_version("no-such-version"),
        "restore": lambda st, s3, b: st.restore(
            version_id="no-such-version", base=st.load(), note="x"
        ),
        "promote": lambda st, s3, b: promote(
            st,
            _parquet_part(s3, b, "stage/gone/", st.load().table),
            note="x",
            base_version="no-such-version",
        ),
    },
}
PATH_ERRORS = {
    "duplicate keys": ValidationError,
    "text in an int column": SchemaError,
    "a version that does not exist": NotFoundError,
}


@pytest.mark.parametrize(
    ("problem", "path"), [(p, path) for p, paths in PATHS.items() for path in paths]
)
def test_the_same_bad_input_raises_the_same_type_on_every_path(
    problem: str, path: str, master_store: MasterStore, s3: Any, bucket: str
) -> None:
    def written() -> list[tuple[str, str]]:  # all but the staged output the case puts
        return [o for o in all_objects(s3, bucket) if not o[0].startswith("stage/")]

    before = written()
    with pytest.raises(PATH_ERRORS[problem]):
        PATHS[problem][path](master_store, s3, bucket)
    assert written() == before
