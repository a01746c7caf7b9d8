"""Benchmark of the editor's tools and the history, in the kernel.

    uv run python tests/benchmarks/bench_tools.py [--rows 10000000] [--history-rows 1000000]
        [--saves 200]

- paste: 1,000 rows x 5 columns of text into an EditSession of ``--rows`` rows (every
  value checked against the schema, one undo step), against the baseline of the same
  5,000 values applied as 5,000 one-cell edits (``set_cell``), measured in the same run;
- find: one search over every column of ``--rows`` rows (a text match and a number);
- history: ``store.history(key=..., column=...)`` over ``--saves`` saves of a
  ``--history-rows``-row master on a local moto server, from a fresh store (every
  changeset read) and again (kept), against the baseline of ``audit_log()`` alone.

Prints seconds and ratios; asserts nothing (timings belong here, not in the tests).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import boto3

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from s3grid import MasterStore, S3GridConfig  # noqa: E402
from s3grid.find import find_cells  # noqa: E402
from s3grid.model import Master  # noqa: E402
from s3grid.sample import sample_master  # noqa: E402
from s3grid.session import EditSession  # noqa: E402

COLUMNS = ("lat_decimal", "long_decimal", "volume_filtered", "net_size", "max_depth")


def session_of(rows: int) -> EditSession:
    table = sample_master(rows)
    master = Master(table=table, version_id="v", etag="e", key="k", last_modified=None, save=None)
    return EditSession(master, key_columns=("tow", "net"))


def bench_paste(rows: int) -> None:
    s = session_of(rows)
    cells = [(r, c, str(r % 97 + 1)) for r in range(0, 1000) for c in COLUMNS]
    start = time.perf_counter()
    result = s.set_cells(cells)
    paste = time.perf_counter() - start
    assert result.changed > 0 and not result.refused
    start = time.perf_counter()
    s.undo()
    undo = time.perf_counter() - start
    start = time.perf_counter()
    for r, c, v in cells:
        s.set_cell(r, c, v)
    one_by_one = time.perf_counter() - start
    print(
        f"paste 1,000 × 5 into {rows:,} rows: {paste:.2f} s (undo {undo:.2f} s); "
        f"5,000 single edits: {one_by_one:.2f} s; ratio paste/single = {paste / one_by_one:.2f}"
    )


def bench_find(rows: int) -> None:
    s = session_of(rows)
    order = s.window_ids()
    for query in ("sikuliaq", "400"):
        start = time.perf_counter()
        found = find_cells(s.df, s.schema, query, order)
        took = time.perf_counter() - start
        print(f"find {query!r} over {rows:,} rows × 13 columns: {took:.2f} s, {len(found):,} cells")


def bench_history(rows: int, saves: int) -> None:
    from s3grid.seaweed import SeaweedServer

    os.environ["AWS_ACCESS_KEY_ID"] = os.environ["AWS_SECRET_ACCESS_KEY"] = "testing"
    with tempfile.TemporaryDirectory() as data:
        server = SeaweedServer(Path(data), remove_data=True)
        endpoint = server.start()
        try:
            _history_on(endpoint, rows, saves)
        finally:
            server.stop(grace=0)


def _history_on(endpoint: str, rows: int, saves: int) -> None:
    s3 = boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1")
    s3.create_bucket(Bucket="bench")
    s3.put_bucket_versioning(Bucket="bench", VersioningConfiguration={"Status": "Enabled"})
    cfg = S3GridConfig(bucket="bench", endpoint_url=endpoint)
    store = MasterStore(cfg)
    store.create(sample_master(rows), note="upload")
    m = store.load()
    start = time.perf_counter()
    for i in range(saves):
        df = m.to_pandas()
        df.loc[i % 10, "volume_filtered"] = float(i)
        store.save(df, base=m, note=f"save {i}")
        m = store.load()
    print(f"{saves} saves of {rows:,} rows on SeaweedFS: {time.perf_counter() - start:.0f} s")
    fresh = MasterStore(cfg)
    start = time.perf_counter()
    log = fresh.audit_log()
    audit = time.perf_counter() - start
    fresh = MasterStore(cfg)
    start = time.perf_counter()
    cell = fresh.history(key=(1, 3), column="volume_filtered")
    first = time.perf_counter() - start
    start = time.perf_counter()
    fresh.history(key=(1, 3), column="volume_filtered")
    again = time.perf_counter() - start
    print(
        f"history of one cell over {len(log)} saves of {rows:,} rows: {first:.2f} s "
        f"({len(cell)} changes), again {again:.2f} s; audit_log alone {audit:.2f} s; "
        f"ratio history/audit_log = {first / audit:.2f}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rows", type=int, default=10_000_000)
    parser.add_argument("--history-rows", type=int, default=1_000_000)
    parser.add_argument("--saves", type=int, default=200)
    args = parser.parse_args()
    bench_paste(args.rows)
    bench_find(args.rows)
    bench_history(args.history_rows, args.saves)


if __name__ == "__main__":
    main()
