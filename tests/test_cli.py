"""The s3grid CLI, run in-process against the local endpoint."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from s3grid import MasterStore, S3GridConfig
from s3grid.cli import main
from tests.support.s3 import all_objects, keys_under

pytestmark = pytest.mark.both_stores


@pytest.fixture
def flags(cfg: S3GridConfig) -> list[str]:
    return ["--bucket", cfg.bucket, "--endpoint-url", cfg.endpoint_url or ""]


def run(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    code = main(argv)
    out, err = capsys.readouterr()
    return code, out, err


def test_init_then_audit_json(
    flags: list[str], table: pa.Table, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "tows.parquet"
    pq.write_table(table, path)
    code, out, _ = run(["init", str(path), "--note", "from cli", *flags], capsys)
    assert code == 0
    assert "50 rows x 13 columns" in out
    code, out, _ = run(["audit", "--json", *flags], capsys)
    assert code == 0
    records = json.loads(out)
    assert [r["note"] for r in records] == ["from cli"]
    assert records[0]["source"] == "init"


def test_init_from_env_and_csv(
    cfg: S3GridConfig,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("S3_BUCKET", cfg.bucket)
    monkeypatch.setenv("S3_ENDPOINT_URL", cfg.endpoint_url or "")
    path = tmp_path / "t.csv"
    path.write_text("tow,net,v\n1,0,1.5\n1,1,2.5\n")
    code, _, err = run(["init", str(path)], capsys)
    assert code == 0, err
    assert MasterStore(cfg).load().table.num_rows == 2
    code, _, err = run(["init", str(path)], capsys)
    assert code == 2
    assert "already exists" in err
    assert err.count("\n") == 1


def test_restore_and_reconcile(
    master_store: MasterStore,
    flags: list[str],
    s3: Any,
    bucket: str,
    capsys: pytest.CaptureFixture[str],
) -> None:
    m0 = master_store.load()
    df = m0.to_pandas()
    df.loc[0, "volume_filtered"] = 5.0
    master_store.save(df, base=m0, note="edit")
    code, out, err = run(
        ["restore", "--version-id", m0.version_id or "", "--note", "undo", "--json", *flags], capsys
    )
    assert code == 0, err
    res = json.loads(out)
    assert res["prev_version"] != m0.version_id
    assert master_store.load().table.equals(m0.table)

    s3.delete_object(Bucket=bucket, Key=res["audit_key"])
    code, out, _ = run(["reconcile", *flags], capsys)
    assert code == 0
    assert "wrote audit" in out
    code, out, _ = run(["reconcile", *flags], capsys)
    assert "Nothing to repair" in out
    assert "snapshot(s)" not in out


def test_reconcile_reports_snapshots_no_save_committed(
    master_store: MasterStore,
    flags: list[str],
    s3: Any,
    bucket: str,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from datetime import timedelta

    cfg = master_store.cfg
    stray = f"{cfg.snapshot_prefix}/{cfg.stem}_20240101T000000_0abc.parquet"
    s3.put_object(Bucket=bucket, Key=stray, Body=b"x" * 2_000_000)
    code, out, _ = run(["reconcile", *flags], capsys)
    assert code == 0 and "snapshot(s)" not in out  # a day's grace
    monkeypatch.setattr("s3grid.history.STRAY_AFTER", timedelta(0))
    before = all_objects(s3, bucket)
    code, out, _ = run(["reconcile", *flags], capsys)
    assert code == 0
    assert out.startswith("Nothing to repair")
    assert "\n1 snapshot(s) that no master version or audit names" in out
    assert f"s3://{bucket}/{stray}  2.0 MB, written " in out
    assert f"aws s3 rm s3://{bucket}/KEY --endpoint-url {master_store.cfg.endpoint_url}" in out
    code, out, err = run(["reconcile", "--json", *flags], capsys)
    assert code == 0 and json.loads(out) == []  # stdout stays the list of repairs
    assert stray in err
    assert all_objects(s3, bucket) == before  # reported, not deleted


def test_errors_are_one_line_and_nonzero(
    flags: list[str],
    s3: Any,
    bucket: str,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    before = all_objects(s3, bucket)
    code, _, err = run(["restore", "--version-id", "nope", "--note", "x", *flags], capsys)
    assert code == 1
    assert err.startswith("s3grid restore: error: No master at")
    assert err.count("\n") == 1
    code, _, err = run(["init", "/no/such/file.parquet", *flags], capsys)
    assert code == 1
    assert "no such file" in err
    monkeypatch.delenv("S3_BUCKET", raising=False)
    code, _, err = run(["audit"], capsys)
    assert code == 1
    # in the command line's terms, not the Python API's
    assert err == "s3grid audit: error: No bucket given: pass --bucket NAME, or set S3_BUCKET.\n"
    monkeypatch.setenv("S3_BUCKET", " ")
    code, _, err = run(["reconcile", "--bucket", " "], capsys)
    assert code == 1 and "No bucket given: pass --bucket NAME" in err
    assert all_objects(s3, bucket) == before


BAD_ARGUMENTS = {
    "unknown command": (["frobnicate"], "invalid choice"),
    "missing note": (["restore", "--version-id", "v1"], "--note"),
    "bad --since": (["audit", "--since", "last tuesday"], "not a date"),
    "bad --until": (["audit", "--until", "2024-13-45"], "not a date"),
    "zero --limit": (["audit", "--limit", "0"], "at least 1"),
    "text --keep": (["prune", "--keep", "many"], "invalid int"),
    "iceberg data without --athena": (
        ["iam-policy", "--iceberg-location", "s3://b/ice/"],
        "--iceberg-location add to the Athena statements: add --athena",
    ),
    "a bad iceberg location": (
        ["iam-policy", "--athena", "--iceberg-location", "nope"],
        "Invalid S3 location 'nope'",
    ),
    "negative --keep": (["prune", "--keep", "-1", "--apply"], "at least 1"),
    "endpoint not a url": (["audit", "--endpoint-url", "localhost"], "is not a URL"),
    "endpoint bad port": (["audit", "--endpoint-url", "http://127.0.0.1:port"], "not a valid"),
    "empty --version-id": (["restore", "--version-id", "", "--note", "x"], "is empty"),
    "blank --snapshot-key": (["restore", "--snapshot-key", " ", "--note", "x"], "is empty"),
    "lone surrogate in note": (
        ["restore", "--version-id", "v1", "--note", "bad \udc80 note"],
        "U+DC80",
    ),
}


@pytest.mark.parametrize("name", list(BAD_ARGUMENTS))
def test_bad_arguments_exit_1_with_one_line_and_write_nothing(
    name: str,
    master_store: MasterStore,
    flags: list[str],
    s3: Any,
    bucket: str,
    capsys: pytest.CaptureFixture[str],
) -> None:
    argv, message = BAD_ARGUMENTS[name]
    # flags first where the case sets --endpoint-url itself: the last one given wins
    argv = [argv[0], *flags, *argv[1:]]
    before = all_objects(s3, bucket)
    code, _, err = run(argv, capsys)
    assert code == 1, err  # 2 is for conflicts only
    assert "Traceback" not in err
    last = err.strip().splitlines()[-1]
    assert last.startswith("s3grid"), err
    assert message in last, err
    assert all_objects(s3, bucket) == before


def test_python_dash_m_help() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "s3grid", "audit", "--help"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert "--endpoint-url" in out
    assert "example:" in out


def test_flatten_promotes_over_master_and_refuses_empty(
    master_store: MasterStore,
    flags: list[str],
    s3: Any,
    bucket: str,
    capsys: pytest.CaptureFixture[str],
) -> None:
    import io

    base = master_store.load()
    before = all_objects(s3, bucket)
    code, _, err = run(["flatten", "--prefix", "staging/none/", *flags], capsys)
    assert code == 1
    assert "No part files" in err
    assert all_objects(s3, bucket) == before

    edited = base.to_pandas()
    edited.loc[0, "volume_filtered"] = 77.0

    def stage() -> None:
        for i, part in enumerate((edited.iloc[:25], edited.iloc[25:])):
            buf = io.BytesIO()
            pq.write_table(pa.Table.from_pandas(part, preserve_index=False), buf)
            s3.put_object(Bucket=bucket, Key=f"staging/next/part-{i}", Body=buf.getvalue())
        s3.put_object(Bucket=bucket, Key="staging/next/_SUCCESS", Body=b"")

    stage()
    code, out, err = run(
        [
            "flatten",
            "--prefix",
            "staging/next/",
            "--output-key",
            "data/master.parquet",
            "--json",
            *flags,
        ],
        capsys,
    )
    assert code == 0, err
    summary = json.loads(out)
    assert summary["promoted"] is True
    assert summary["rows"] == 50
    after = master_store.load()
    assert after.version_id == summary["new_version"]
    assert after.to_pandas().loc[0, "volume_filtered"] == 77.0
    assert after.schema == base.schema
    assert master_store.audit_log().iloc[-1]["snapshot_key"] == summary["snapshot_key"]
    assert "base inferred" in master_store.audit_log().iloc[-1]["note"]
    assert keys_under(s3, bucket, "staging/next/") == []  # promoted once: staging emptied
    code, _, err = run(["flatten", "--prefix", "staging/next/", *flags], capsys)
    assert code == 1 and "No part files" in err

    stage()
    code, out, _ = run(
        ["flatten", "--prefix", "staging/next/", "--output-key", "exports/flat.parquet", *flags],
        capsys,
    )
    assert code == 0
    assert "Wrote 50 rows from 2 parts" in out
    flat = pq.read_table(
        io.BytesIO(s3.get_object(Bucket=bucket, Key="exports/flat.parquet")["Body"].read())
    )
    assert flat.num_rows == 50


@pytest.mark.parametrize(
    "command", ["demo", "init", "audit", "restore", "reconcile", "flatten", "prune", "iam-policy"]
)
def test_every_subcommand_has_config_flags_and_an_example(command: str) -> None:
    out = subprocess.run(
        [sys.executable, "-m", "s3grid", command, "--help"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    for flag in (
        "--bucket",
        "--master-key",
        "--snapshot-prefix",
        "--audit-prefix",
        "--endpoint-url",
        "--profile",
    ):
        assert flag in out
    assert f"example:\n  s3grid {command}" in out
