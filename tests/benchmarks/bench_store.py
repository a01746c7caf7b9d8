"""Benchmark: MasterStore.load()/save() against the raw S3 + Parquet work they wrap.

    uv run python tests/benchmarks/bench_store.py [--rows 1000000] [--repeat 3]

Same run, same local moto endpoint (its own process, as S3 is a remote service: its CPU
and memory are not the kernel's), best of ``--repeat``:
  load():  s3grid ``store.load().to_pandas()`` vs raw GetObject + read_table + to_pandas
  save():  s3grid ``store.save(table, ...)`` (validate, commit, snapshot copy, audit)
           vs Parquet encode (pyarrow's defaults, snappy) + one PutObject; and vs the
           same with s3grid's writer options, which isolates the pipeline's overhead
  memory:  peak RSS of a fresh process (as a new kernel) above its start, vs the Arrow
           table's size, on two paths: ``pandas`` (load, ``to_pandas()``, edit one cell,
           ``save(df)``) and ``editor`` (open an ``Editor``, edit one cell, Save; the editor
           then reopens the saved version). A fresh process, because memory an earlier
           run freed stays mapped and would flatter the figure. ``--arrow-pool jemalloc``
           measures the same with Arrow's jemalloc allocator (README: Large masters).
  It also prints where save()'s time goes: the commit PUT, the lost-update check (one
  ListObjectVersions) and the snapshot copy, which run side by side.
"""

from __future__ import annotations

import argparse
import io
import os
import subprocess
import sys
import time
from typing import Any

from _measure import PeakRss, start_moto_process  # a sibling: run as a script


def best(fn: Any, repeat: int) -> float:
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def rss_child(endpoint: str, path: str) -> None:
    """Run in a fresh process: load, edit one cell, save on ``path``; print the peak RSS."""
    from s3grid import Editor, MasterStore, S3GridConfig
    from s3grid.sample import sample_master

    def pandas_path(store: MasterStore) -> None:
        m = store.load()
        df = m.to_pandas()
        df.loc[0, "volume_filtered"] = 1.0
        store.save(df, base=m, note="bench: edit one cell from pandas")

    def editor_path(store: MasterStore) -> None:
        editor = Editor(store)
        assert editor.edit_cell(0, "volume_filtered", "1.5"), "the edit was refused"
        editor.note.value = "bench: edit one cell in the editor"
        assert editor.save(), editor.message.value

    run = {"pandas": pandas_path, "editor": editor_path}[path]
    store = MasterStore(S3GridConfig(bucket="bench-rss", endpoint_url=endpoint))
    # Warm the same code paths on a tiny master first (imports, the S3 client, Arrow's
    # kernels): their memory does not grow with the data and is not what is measured.
    warm = MasterStore(store.cfg.with_(master_key=f"warm-{path}/master.parquet"))
    warm.create(sample_master(100), note="warm-up")
    run(warm)
    rss = PeakRss()
    run(store)
    print(rss.stop())


def timed(obj: Any, name: str, into: dict[str, float]) -> None:
    """Wrap ``obj.name`` so that its last duration lands in ``into[name]``."""
    fn = getattr(obj, name)

    def run(*a: Any, **k: Any) -> Any:
        t0 = time.perf_counter()
        try:
            return fn(*a, **k)
        finally:
            into[name] = time.perf_counter() - t0

    setattr(obj, name, run)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument(
        "--arrow-pool",
        choices=("mimalloc", "jemalloc", "system"),
        help="run everything on this Arrow allocator (ARROW_DEFAULT_MEMORY_POOL); "
        "default: pyarrow's own choice",
    )
    parser.add_argument(
        "--rss-child", nargs=2, metavar=("ENDPOINT", "PATH"), help=argparse.SUPPRESS
    )
    args = parser.parse_args()
    if args.rss_child:
        rss_child(*args.rss_child)
        return
    if args.arrow_pool:
        # Read once, when Arrow first allocates: set before pyarrow is imported here,
        # and inherited by the memory runs' fresh processes.
        os.environ["ARROW_DEFAULT_MEMORY_POOL"] = args.arrow_pool

    import boto3
    import pyarrow as pa
    import pyarrow.parquet as pq

    from s3grid import MasterStore, S3GridConfig
    from s3grid.formats import PARQUET_WRITE_OPTIONS
    from s3grid.sample import sample_master

    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        os.environ[name] = "bench"  # a local endpoint: never real AWS
    os.environ["AWS_DEFAULT_REGION"] = "us-east-1"
    server, endpoint = start_moto_process()
    s3 = boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1")
    # The raw baseline and the memory run write to buckets of their own: moto's
    # ListObjectVersions (the save's lost-update check) deep-copies every object in the
    # bucket, so their bytes would slow s3grid's save here (not on S3).
    for bucket in ("bench-store", "bench-raw", "bench-rss"):
        s3.create_bucket(Bucket=bucket)
        s3.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Enabled"})
    store = MasterStore(S3GridConfig(bucket="bench-store", endpoint_url=endpoint))
    table = sample_master(args.rows)
    arrow_mb = table.nbytes / 1e6
    store.create(table, note="bench")
    MasterStore(S3GridConfig(bucket="bench-rss", endpoint_url=endpoint)).create(table, note="rss")

    def raw_load() -> None:
        body = s3.get_object(Bucket="bench-store", Key="data/master.parquet")["Body"].read()
        pq.read_table(io.BytesIO(body)).to_pandas()

    def s3grid_load() -> None:
        store.load().to_pandas()

    def raw_save(**options: Any) -> None:
        sink = io.BytesIO()
        pq.write_table(table, sink, **options)
        s3.put_object(Bucket="bench-raw", Key="data/master.parquet", Body=sink.getvalue())

    steps: dict[str, float] = {}
    for step in ("_commit", "_confirm_commit", "_write_snapshot"):
        timed(store, step, steps)

    def s3grid_save() -> None:
        m = store.load()
        # as the editor does: it knows its change counts, so no whole-table diff
        from s3grid.diff import ChangeCounts

        t0 = time.perf_counter()
        store.save(m.table, base=m, note="bench save", changes=ChangeCounts(1, 0, 0))
        elapsed = time.perf_counter() - t0
        if not timings or elapsed < min(t for t, _ in timings):
            timings.append((elapsed, dict(steps)))

    timings: list[tuple[float, dict[str, float]]] = []
    env = dict(os.environ)
    peaks = {}
    for path in ("pandas", "editor"):
        child = [sys.executable, __file__, "--rss-child", endpoint, path]
        done = subprocess.run(child, env=env, capture_output=True, text=True)
        if done.returncode:
            raise SystemExit(f"the {path} memory run failed:\n{done.stderr}")
        peaks[path] = float(done.stdout.strip().splitlines()[-1])
    t_raw_load = best(raw_load, args.repeat)
    t_load = best(s3grid_load, args.repeat)
    t_raw_save = best(lambda: raw_save(compression="snappy"), args.repeat)
    # the same encode as s3grid's (a smaller dictionary limit): the pipeline's own overhead
    t_raw_same = best(lambda: raw_save(**PARQUET_WRITE_OPTIONS), args.repeat)
    for _ in range(args.repeat):
        s3grid_save()
    t_save, t_steps = timings[-1]
    server.terminate()
    server.wait()
    pool = pa.default_memory_pool().backend_name
    print(
        f"{args.rows:,} rows, Arrow size {arrow_mb:.0f} MB (best of {args.repeat}), "
        f"Arrow allocator {pool}"
    )
    print(f"  load: s3grid {t_load:.2f} s vs raw {t_raw_load:.2f} s  -> {t_load / t_raw_load:.2f}x")
    print(
        f"  save: s3grid {t_save:.2f} s vs encode+PUT {t_raw_save:.2f} s  "
        f"-> {t_save / t_raw_save:.2f}x"
    )
    print(
        f"        vs encode+PUT with s3grid's writer options {t_raw_same:.2f} s  "
        f"-> {t_save / t_raw_same:.2f}x"
    )
    print(
        "        of which: commit PUT {_commit:.2f} s, commit confirmed in the version "
        "listing (the lost-update check) {_confirm_commit:.2f} s, snapshot copy "
        "{_write_snapshot:.2f} s".format(**t_steps)
    )
    for path, what in (("pandas", "load + pandas edit + save"), ("editor", "Editor + edit + Save")):
        print(
            f"  peak RSS (fresh process) for {what}: +{peaks[path]:.0f} MB "
            f"-> {peaks[path] / arrow_mb:.2f}x the Arrow size"
        )


if __name__ == "__main__":
    main()
