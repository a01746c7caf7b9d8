"""Benchmark: MasterStore.load()/save() against the raw S3 + Parquet work they wrap.

    uv run python tests/benchmarks/bench_store.py [--rows 1000000] [--repeat 3]

Same run, same local moto endpoint, best of ``--repeat``:
  load():  s3grid ``store.load().to_pandas()`` vs raw GetObject + read_table + to_pandas
  save():  s3grid ``store.save(table, ...)`` (validate, commit, snapshot copy, audit)
           vs Parquet encode + one PutObject
  memory:  the kernel's peak RSS above its start, vs the Arrow table's size
"""

from __future__ import annotations

import argparse
import io
import os
import threading
import time
from typing import Any


class PeakRss:
    """Peak resident memory of this process, sampled every 2 ms."""

    def __init__(self) -> None:
        self.page = os.sysconf("SC_PAGE_SIZE")
        self.base = self.peak = self.rss()
        self.running = True
        self.thread = threading.Thread(target=self.run, daemon=True)
        self.thread.start()

    def rss(self) -> int:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * self.page

    def run(self) -> None:
        while self.running:
            self.peak = max(self.peak, self.rss())
            time.sleep(0.002)

    def stop(self) -> float:
        self.running = False
        self.thread.join()
        return (max(self.peak, self.rss()) - self.base) / 1e6


def best(fn: Any, repeat: int) -> float:
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()

    import boto3
    import pyarrow.parquet as pq

    from s3grid import MasterStore, S3GridConfig
    from s3grid.demo import start_local_s3
    from s3grid.sample import sample_master

    server, endpoint = start_local_s3()
    s3 = boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1")
    s3.create_bucket(Bucket="bench-store")
    s3.put_bucket_versioning(Bucket="bench-store", VersioningConfiguration={"Status": "Enabled"})
    store = MasterStore(S3GridConfig(bucket="bench-store", endpoint_url=endpoint))
    table = sample_master(args.rows)
    arrow_mb = table.nbytes / 1e6
    store.create(table, note="bench")

    def raw_load() -> None:
        body = s3.get_object(Bucket="bench-store", Key="data/master.parquet")["Body"].read()
        pq.read_table(io.BytesIO(body)).to_pandas()

    def s3grid_load() -> None:
        store.load().to_pandas()

    def raw_save() -> None:
        sink = io.BytesIO()
        pq.write_table(table, sink, compression="snappy")
        s3.put_object(Bucket="bench-store", Key="raw/master.parquet", Body=sink.getvalue())

    def s3grid_save() -> None:
        m = store.load()
        # as the editor does: it knows its change counts, so no whole-table diff
        from s3grid.diff import ChangeCounts

        t0 = time.perf_counter()
        store.save(m.table, base=m, note="bench save", changes=ChangeCounts(1, 0, 0))
        timings.append(time.perf_counter() - t0)

    timings: list[float] = []
    t_raw_load = best(raw_load, args.repeat)
    t_load = best(s3grid_load, args.repeat)
    t_raw_save = best(raw_save, args.repeat)
    for _ in range(args.repeat):
        s3grid_save()
    t_save = min(timings)

    rss = PeakRss()
    m = store.load()
    df = m.to_pandas()
    df.loc[0, "volume_filtered"] = 1.0
    store.save(df, base=m, note="bench: edit one cell from pandas")
    peak = rss.stop()
    server.stop()
    print(f"{args.rows:,} rows, Arrow size {arrow_mb:.0f} MB (best of {args.repeat})")
    print(f"  load: s3grid {t_load:.2f} s vs raw {t_raw_load:.2f} s  -> {t_load / t_raw_load:.2f}x")
    print(
        f"  save: s3grid {t_save:.2f} s vs encode+PUT {t_raw_save:.2f} s  "
        f"-> {t_save / t_raw_save:.2f}x"
    )
    print(
        f"  peak RSS for load + pandas edit + save: +{peak:.0f} MB "
        f"-> {peak / arrow_mb:.2f}x the Arrow size"
    )


if __name__ == "__main__":
    main()
