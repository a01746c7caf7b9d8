"""Benchmark: streaming flatten vs naive read-all-concat-write, same run, same data.

    uv run python tests/benchmarks/bench_flatten.py [--rows 3000000] [--parts 8]

Writes the parts to a local moto S3 endpoint, then runs each variant in a fresh
subprocess (so peak RSS is its own) and prints time and peak-memory ratios
(s3grid / naive). Not a test: timings on shared machines are for reading, not asserting.
"""

from __future__ import annotations

import argparse
import io
import json
import subprocess
import sys
import time

from _measure import PeakRss  # a sibling: run as a script

BUCKET = "bench-flatten"
PREFIX = "staging/next/"


def child(mode: str, endpoint: str) -> None:
    import boto3
    import pyarrow as pa
    import pyarrow.parquet as pq

    from s3grid import MasterStore, S3GridConfig
    from s3grid.flatten import flatten_to_bytes, list_parts
    from s3grid.sample import SAMPLE_SCHEMA

    store = MasterStore(S3GridConfig(bucket=BUCKET, endpoint_url=endpoint))
    sampler = PeakRss()
    t0 = time.perf_counter()
    if mode == "s3grid":
        body, info = flatten_to_bytes(store.bucket, PREFIX, schema=SAMPLE_SCHEMA)
        rows = info.rows
    else:
        s3 = boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1")
        parts, _ = list_parts(store.bucket, PREFIX)
        tables = [
            pq.read_table(io.BytesIO(s3.get_object(Bucket=BUCKET, Key=k)["Body"].read()))
            for k, _ in parts
        ]
        table = pa.concat_tables(tables).cast(SAMPLE_SCHEMA)
        sink = io.BytesIO()
        pq.write_table(table, sink, compression="snappy")
        body, rows = sink.getvalue(), table.num_rows
    seconds = time.perf_counter() - t0
    peak_mb = sampler.stop()
    print(
        json.dumps(
            {"mode": mode, "seconds": seconds, "rows": rows, "bytes": len(body), "peak_mb": peak_mb}
        )
    )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=3_000_000)
    parser.add_argument("--parts", type=int, default=8)
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--endpoint", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child, args.endpoint)
        return

    import boto3
    import pyarrow as pa
    import pyarrow.parquet as pq

    from s3grid.demo import start_local_s3
    from s3grid.sample import sample_master

    server, endpoint = start_local_s3()
    s3 = boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1")
    s3.create_bucket(Bucket=BUCKET)
    table = sample_master(args.rows)
    wide = table.cast(
        pa.schema(
            [
                pa.field(f.name, pa.int64()) if pa.types.is_integer(f.type) else f
                for f in table.schema
            ]
        )
    )  # bigint, as Athena writes
    per = -(-table.num_rows // args.parts)
    for i in range(args.parts):
        buf = io.BytesIO()
        pq.write_table(
            wide.slice(i * per, per), buf, compression="snappy", row_group_size=128 * 1024
        )
        s3.put_object(
            Bucket=BUCKET, Key=f"{PREFIX}20240501_000000_00001_{i:05d}", Body=buf.getvalue()
        )
    s3.put_object(Bucket=BUCKET, Key=f"{PREFIX}_SUCCESS", Body=b"")
    arrow_mb = table.nbytes / 1e6
    del table, wide
    results = {}
    for mode in ("naive", "s3grid"):
        out = subprocess.run(
            [sys.executable, __file__, "--child", mode, "--endpoint", endpoint],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        results[mode] = json.loads(out.strip().splitlines()[-1])
    server.stop()
    n, s = results["naive"], results["s3grid"]
    assert n["rows"] == s["rows"] == args.rows, results
    print(f"flatten {args.rows:,} rows in {args.parts} parts (Arrow size {arrow_mb:.0f} MB)")
    for r in (n, s):
        print(
            f"  {r['mode']:>7}: {r['seconds']:6.2f} s, peak RSS +{r['peak_mb']:7.1f} MB, "
            f"output {r['bytes'] / 1e6:.1f} MB"
        )
    print(
        f"  ratio s3grid/naive: time {s['seconds'] / n['seconds']:.2f}x, "
        f"peak memory {s['peak_mb'] / n['peak_mb']:.2f}x"
    )


if __name__ == "__main__":
    main()
