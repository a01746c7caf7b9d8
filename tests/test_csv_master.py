"""CSV masters keep text as written: columns are text unless the master declares a type,
and nothing is guessed per load."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest

from s3grid import MasterStore, S3GridConfig, SchemaError
from s3grid.cli import main
from tests.support.csvtext import HAND_WRITTEN, cell_texts
from tests.support.s3 import all_objects


@pytest.fixture
def csv_store(cfg: S3GridConfig) -> MasterStore:
    return MasterStore(cfg.with_(master_key="data/master.csv", file_format="csv"), key_columns=())


def test_a_hand_written_csv_master_keeps_every_cells_text(
    csv_store: MasterStore, s3: Any, bucket: str
) -> None:
    s3.put_object(Bucket=bucket, Key="data/master.csv", Body=HAND_WRITTEN.encode())
    m = csv_store.load()
    assert set(m.table.schema.types) == {pa.string()}  # nothing guessed
    df = m.to_pandas()
    assert df.loc[0, "station"] == "007"
    assert df.loc[0, "when"] == "2024-06-30T19:01:00-05:00"
    df.loc[1, "comment"] = "edited"
    res = csv_store.save(df, base=m, note="edit one comment")
    assert res.cells_changed == 1
    before = cell_texts(HAND_WRITTEN.encode())
    after = cell_texts(s3.get_object(Bucket=bucket, Key="data/master.csv")["Body"].read())
    before[2][3] = "edited"
    assert after == before  # every other cell's text, exactly


def test_csv_master_types_are_declared_once_and_kept(
    csv_store: MasterStore, s3: Any, bucket: str
) -> None:
    table = pa.table(
        {
            "station": ["007", "012"],
            "depth": pa.array([110.0, 95.0], pa.float64()),
            "n": pa.array([1, None], pa.int32()),
            "when": pa.array([0, 1_500_000], pa.timestamp("us", "UTC")),
            "note": ["", None],
        }
    )
    csv_store.create(table, note="typed")
    m = csv_store.load()
    assert m.table.schema == table.schema  # read with the declared types, not guessed
    assert m.table.column("note").to_pylist() == ["", None]  # "" and empty stay apart
    df = m.to_pandas()
    df.loc[0, "depth"] = 110.5  # a whole-number column still takes a fraction
    csv_store.save(df, base=m, note="fraction")
    assert csv_store.load().table.column("depth").to_pylist() == [110.5, 95.0]
    # the snapshot carries the types too: a restore reads it the same way
    snap = csv_store.audit_log().iloc[0]["snapshot_key"]
    res = csv_store.restore(snapshot_key=snap, base=csv_store.load(), note="back")
    assert res.cells_changed == 1
    assert csv_store.load().table.schema == table.schema


def test_a_csv_master_refuses_types_it_cannot_hold(csv_store: MasterStore) -> None:
    table = pa.table({"k": [1], "l": pa.array([[1, 2]])})
    with pytest.raises(SchemaError, match="use a Parquet master"):
        csv_store.create(table, note="x")


def run(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    code = main(argv)
    out, err = capsys.readouterr()
    return code, out, err


def test_init_keeps_csv_text_and_shows_the_schema(
    cfg: S3GridConfig, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "tows.csv"
    path.write_text(HAND_WRITTEN)
    flags = ["--bucket", cfg.bucket, "--endpoint-url", cfg.endpoint_url or ""]
    code, out, err = run(["init", str(path), *flags, "--master-key", "a/m.parquet"], capsys)
    assert code == 0, err
    assert "station  string" in out and "when     string" in out and "empty    string" in out
    m = MasterStore(cfg.with_(master_key="a/m.parquet"), key_columns=()).load()
    assert m.table.column("station").to_pylist() == ["007", "012", "100"]
    assert m.table.column("when")[0].as_py() == "2024-06-30T19:01:00-05:00"
    assert m.table.column("flag").to_pylist() == ["NA", "nan", "TRUE"]
    # --types and --schema say otherwise, per column
    schema = tmp_path / "types.json"
    schema.write_text(json.dumps({"depth": "float64", "flag": "string"}))
    argv = ["init", str(path), *flags, "--master-key", "b/m.parquet", "--schema", str(schema)]
    code, out, err = run([*argv, "--types", "empty=int32,when=string"], capsys)
    assert code == 0, err
    assert "depth    double" in out and "empty    int32" in out
    m = MasterStore(cfg.with_(master_key="b/m.parquet"), key_columns=()).load()
    assert m.table.column("depth").to_pylist() == [110.0, 95.0, 1000.0]
    assert m.table.schema.field("empty").type == pa.int32()


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--types", "depth=decimal"], "Unknown column type 'decimal'"),
        (["--types", "nope=int32"], "--types names ['nope']"),
        (["--types", "depth"], "is not name=type"),
        (["--types", "station=int32"], "to int32: invalid value '1x0'"),
        (["--schema", "/no/such.json"], "not a readable JSON file"),
    ],
)
def test_init_refuses_bad_types_in_one_line(
    cfg: S3GridConfig,
    tmp_path: Path,
    s3: Any,
    bucket: str,
    capsys: pytest.CaptureFixture[str],
    extra: list[str],
    message: str,
) -> None:
    path = tmp_path / "tows.csv"
    path.write_text(HAND_WRITTEN.replace("100,", "1x0,"))
    before = all_objects(s3, bucket)
    flags = ["--bucket", cfg.bucket, "--endpoint-url", cfg.endpoint_url or ""]
    code, _, err = run(["init", str(path), *flags, *extra], capsys)
    assert code == 1
    assert message in err and err.count("\n") == 1, err
    assert all_objects(s3, bucket) == before


def test_init_refuses_a_column_without_a_type(
    cfg: S3GridConfig, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import pyarrow.parquet as pq

    path = tmp_path / "t.parquet"
    pq.write_table(pa.table({"k": [1, 2], "blank": pa.array([None, None])}), path)
    flags = ["--bucket", cfg.bucket, "--endpoint-url", cfg.endpoint_url or ""]
    code, _, err = run(["init", str(path), *flags], capsys)
    assert code == 1
    assert "['blank'] have no type" in err and "--types blank=string" in err
