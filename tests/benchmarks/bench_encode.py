"""Benchmark: which Parquet compression makes encode + transfer of a master cheapest?

    uv run python tests/benchmarks/bench_encode.py [--rows 1000000 10000000] [--repeat 3]

For the sample master (13 plankton-tow columns) at each size, and each codec s3grid
could write (``none``, ``snappy``, ``lz4``, ``zstd`` at levels 1, 3 and 9, all with
s3grid's other writer options): the encode time, the body's size, the decode time (the
next load pays it), and encode + upload at a few link speeds (the upload time is the
size over the speed), two ways: one after the other (``then``: a ``put`` save on a
store other than AWS encodes, then PUTs) and overlapped (``while``: a save streamed in
parts, on AWS or with ``S3GRID_COMMIT=copy``, takes about the longer of the two).
Ratios are against snappy, measured in the same run.
"""

from __future__ import annotations

import argparse
import io
import operator
import time
from typing import Any

CODECS: dict[str, dict[str, Any]] = {
    "none": {"compression": "none"},
    "snappy": {"compression": "snappy"},
    "lz4": {"compression": "lz4"},
    "zstd-1": {"compression": "zstd", "compression_level": 1},
    "zstd-3": {"compression": "zstd", "compression_level": 3},
    "zstd-9": {"compression": "zstd", "compression_level": 9},
}
LINKS_MB_S = (25, 100, 500, 2000)  # a laptop uplink, an office link, EC2, loopback-ish


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, nargs="+", default=[1_000_000])
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()

    import pyarrow as pa
    import pyarrow.parquet as pq

    from s3grid.formats import PARQUET_WRITE_OPTIONS
    from s3grid.sample import sample_master

    for rows in args.rows:
        table = sample_master(rows)
        print(f"{rows:,} rows, Arrow size {table.nbytes / 1e6:.0f} MB (best of {args.repeat})")
        results = {}
        for name, codec in CODECS.items():
            options = {**PARQUET_WRITE_OPTIONS, **codec}
            encodes, decodes = [], []
            body = b""
            for _ in range(args.repeat):
                sink = io.BytesIO()
                t0 = time.perf_counter()
                pq.write_table(table, sink, **options)
                encodes.append(time.perf_counter() - t0)
                body = sink.getvalue()
                t0 = time.perf_counter()
                pq.ParquetFile(pa.BufferReader(body)).read()  # as s3grid decodes
                decodes.append(time.perf_counter() - t0)
            results[name] = (min(encodes), len(body) / 1e6, min(decodes))
        base_encode, base_size, _ = results["snappy"]
        for how, combine in (("then", operator.add), ("while", max)):
            header = "  codec    encode     size    decode  " + "  ".join(
                f"{how}@{link} MB/s".rjust(15) for link in LINKS_MB_S
            )
            print(header)
            for name, (encode, size, decode) in results.items():
                cells = []
                for link in LINKS_MB_S:
                    total = combine(encode, size / link)
                    base = combine(base_encode, base_size / link)
                    cells.append(f"{total:6.2f} s {total / base:4.2f}x")
                print(
                    f"  {name:<7} {encode:5.2f} s {size:7.1f} MB {decode:5.2f} s  "
                    + "  ".join(cells)
                )


if __name__ == "__main__":
    main()
