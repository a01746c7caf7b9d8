"""Benchmark: MasterStore.load()/save() against the raw S3 + Parquet work they wrap.

    uv run --group bench python tests/benchmarks/bench_store.py \
        [--store moto|seaweedfs] [--commit put|copy|parts] [--rows 1000000] [--repeat 3]
    ... bench_store.py --bucket NAME [--endpoint-url URL] ...

Same run, same S3 endpoint, best of ``--repeat``, interleaved. The endpoint is a local
one the run starts (moto in its own process, or SeaweedFS, a real store: either way its
CPU and memory are not the kernel's), or with ``--bucket`` an existing versioned bucket
on AWS S3 (boto3's credentials; ``--commit put`` is then the streamed save AWS gets) or
on a lab's store (``--endpoint-url``): the run writes under ``s3grid-bench/<time>/`` and
deletes every version it wrote there when it ends.
  load():  s3grid ``store.load()`` vs raw GetObject + read_table, and vs the peers:
           s3fs and pyarrow's S3FileSystem (``pq.read_table``), polars
           (``read_parquet``), each to its own table
  save():  s3grid ``store.save(table, ...)`` (validate, commit, snapshot copy, audit)
           vs Parquet encode (pyarrow's defaults, snappy) + one PutObject; and vs the
           same with s3grid's writer options, which isolates the pipeline's overhead;
           and vs the peers writing the same table with their defaults, unlocked
  stale:   how long a save on a base that has moved on takes to be refused
  CPU:     CPU seconds each save spent in this process and in the store's, and the bytes
           it left on the store (s3grid's twice: the master and its snapshot). On one
           machine the two share the cores, so a save's wall time follows their sum.
  memory:  peak RSS of a fresh process (as a new kernel) above its start, vs the Arrow
           table's size, on two paths: ``pandas`` (load, ``to_pandas()``, edit one cell,
           ``save(df)``) and ``editor`` (open an ``Editor``, edit one cell, Save; the editor
           then reopens the saved version). A fresh process, because memory an earlier
           run freed stays mapped and would flatter the figure. ``--arrow-pool jemalloc``
           measures the same with Arrow's jemalloc allocator (README: Large masters).
  It also prints where save()'s time goes: the commit PUT, the lost-update check (one
  ListObjectVersions) and the snapshot copy, which run side by side; with ``--commit
  copy`` (``S3GridConfig.commit``), the streamed encode + upload + conditional copy and
  the check (the snapshot is written before the commit); with ``--commit parts`` (what
  a save on AWS does), the upload in parts to the master while it encodes.
"""

from __future__ import annotations

import argparse
import io
import os
import subprocess
import sys
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from _measure import PeakRss, cpu_seconds, start_store  # a sibling: run as a script


@dataclass(frozen=True)
class Area:
    """Where one part of a run writes: a bucket, and a key prefix ("" or ending in "/")
    when the run shares a bucket (``--bucket``)."""

    bucket: str
    prefix: str = ""

    def key(self, name: str) -> str:
        return self.prefix + name

    def config(self, endpoint: str | None) -> Any:
        """An s3grid config that keeps the master and its history in this area."""
        from s3grid import S3GridConfig

        p = self.prefix
        return S3GridConfig.from_env(
            bucket=self.bucket,
            endpoint_url=endpoint,
            master_key=p + "data/master.parquet",
            snapshot_prefix=p + "snapshots",
            audit_prefix=p + "audit",
            archive_prefix=p + "archive",
            changes_prefix=p + "changes",
        )


def rss_child(endpoint: str, bucket: str, prefix: str, path: str) -> None:
    """Run in a fresh process: load, edit one cell, save on ``path`` (or, for a peer
    ``peer:<name>``, its load then its save); print the peak RSS. ``endpoint`` is ""
    for boto3's own (AWS)."""
    area = Area(bucket, prefix)
    if path.startswith("peer:"):
        peer_rss(endpoint or None, area, path.removeprefix("peer:"))
        return
    from s3grid import Editor, MasterStore
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

    def arrow_path(store: MasterStore) -> None:  # what the peers do: load, save the table
        m = store.load()
        store.save(m.table, base=m, note="bench: save the loaded table")

    run = {"pandas": pandas_path, "editor": editor_path, "arrow": arrow_path}[path]
    store = MasterStore(area.config(endpoint or None))
    # Warm the same code paths on a tiny master first (imports, the S3 client, Arrow's
    # kernels): their memory does not grow with the data and is not what is measured.
    warm = MasterStore(store.cfg.with_(master_key=area.key(f"warm-{path}/master.parquet")))
    warm.create(sample_master(100), note="warm-up")
    run(warm)
    rss = PeakRss()
    run(store)
    print(rss.stop())


STEPS = {
    "_commit": "commit PUT",
    "_commit_streamed": "encode + upload to the snapshot + conditional copy",
    "_commit_in_parts": "encode + upload in parts + conditional complete",
    "_confirm_commit": "commit confirmed in the version listing (the lost-update check)",
    "_write_snapshot": "snapshot copy",
}


def peer_rss(endpoint: str | None, area: Area, name: str) -> None:
    """A peer's load of the master, then its save of what it loaded (warmed on a tiny
    object first, as the s3grid paths are); print the peak RSS."""
    import pyarrow as pa

    peers = Peers(endpoint, bucket_region(endpoint, area.bucket))
    tiny = pa.table({"x": [1, 2, 3]})
    tiny_data = peers.polars.from_arrow(tiny) if name == "polars" else tiny
    peers.save(name, tiny_data, area.bucket, area.key("warm-peer.parquet"))
    peers.load(name, area.bucket, area.key("warm-peer.parquet"))
    rss = PeakRss()
    data = peers.load(name, area.bucket, area.key("data/master.parquet"))
    peers.save(name, data, area.bucket, area.key(f"peer-{name}.parquet"))
    print(rss.stop())


def bucket_region(endpoint: str | None, bucket: str) -> str:
    """The bucket's region (the peers need it on AWS); us-east-1 on a local store."""
    if endpoint:
        return "us-east-1"
    import boto3

    location: dict[str, Any] = dict(boto3.client("s3").get_bucket_location(Bucket=bucket))
    return str(location.get("LocationConstraint") or "us-east-1")  # None in us-east-1


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


class Peers:
    """The same load and save done by other libraries that read and write Parquet on S3
    without a lock: s3fs, pyarrow's S3FileSystem and polars (the ``bench`` group); any
    that is not installed is left out, and said so."""

    def __init__(self, endpoint: str | None, region: str) -> None:
        # endpoint None: AWS, with each library's own credential chain
        self.endpoint, self.region = endpoint, region
        self.key = os.environ.get("AWS_ACCESS_KEY_ID") if endpoint else None
        self.secret = os.environ.get("AWS_SECRET_ACCESS_KEY") if endpoint else None
        self.missing: list[str] = []
        self.fs: dict[str, Any] = {}
        try:
            import s3fs

            self.fs["s3fs"] = s3fs.S3FileSystem(
                key=self.key,
                secret=self.secret,
                client_kwargs={"endpoint_url": endpoint, "region_name": region},
            )
        except ImportError:
            self.missing.append("s3fs")
        from pyarrow import fs as pafs

        scheme, _, host = (endpoint or "https://").partition("://")
        self.fs["pyarrow"] = pafs.S3FileSystem(
            access_key=self.key,
            secret_key=self.secret,
            endpoint_override=host or None,
            scheme=scheme,
            region=region,
        )
        try:
            import polars

            self.polars: Any = polars
        except ImportError:
            self.polars = None
            self.missing.append("polars")

    @property
    def names(self) -> list[str]:
        return [*self.fs, *(["polars"] if self.polars is not None else [])]

    def polars_options(self) -> dict[str, str]:
        options = {"aws_region": self.region}
        if self.endpoint:
            options["aws_endpoint_url"] = self.endpoint
            options["aws_allow_http"] = "true"
        if self.key and self.secret:
            options["aws_access_key_id"] = self.key
            options["aws_secret_access_key"] = self.secret
        return options

    def load(self, name: str, bucket: str, key: str) -> Any:
        """The library's own table (Arrow, or a polars DataFrame)."""
        import pyarrow.parquet as pq

        if name == "polars":
            return self.polars.read_parquet(
                f"s3://{bucket}/{key}", storage_options=self.polars_options()
            )
        return pq.read_table(f"{bucket}/{key}", filesystem=self.fs[name])

    def save(self, name: str, table: Any, bucket: str, key: str) -> None:
        """Write ``table`` (a polars DataFrame for polars, else Arrow) with the library's
        own defaults: each uploads parts while it still encodes."""
        import pyarrow.parquet as pq

        if name == "polars":
            table.write_parquet(f"s3://{bucket}/{key}", storage_options=self.polars_options())
        else:
            pq.write_table(table, f"{bucket}/{key}", filesystem=self.fs[name])


# a run's three areas: s3grid's master, the raw baseline and the peers' writes, and the
# memory runs' master
NAMES = ("store", "raw", "rss")


def delete_run(s3: Any, bucket: str, prefix: str) -> None:
    """Delete every version (and delete marker) a ``--bucket`` run left under ``prefix``."""
    pages = s3.get_paginator("list_object_versions").paginate(Bucket=bucket, Prefix=prefix)
    for page in pages:
        found = [*page.get("Versions", []), *page.get("DeleteMarkers", [])]
        if found:
            s3.delete_objects(
                Bucket=bucket,
                Delete={
                    "Objects": [{"Key": v["Key"], "VersionId": v["VersionId"]} for v in found],
                    "Quiet": True,
                },
            )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument(
        "--store",
        choices=("moto", "seaweedfs"),
        help="the local S3 started for the run: moto (a mock, in its own process; the "
        "default) or SeaweedFS (a real store)",
    )
    parser.add_argument(
        "--bucket",
        help="run on this existing versioned bucket instead (AWS S3, or --endpoint-url): "
        "under s3grid-bench/<time>/, deleted afterwards; the store's CPU is not measured",
    )
    parser.add_argument("--endpoint-url", help="the store --bucket is on (default: AWS)")
    parser.add_argument(
        "--commit",
        choices=("put", "copy", "parts"),
        default="put",
        help="how s3grid's save commits (S3GridConfig.commit): encode, then one PUT; "
        "stream to the snapshot while encoding, then a conditional copy; or (parts: "
        "commit=put with the AWS multipart threshold) stream to the master in parts "
        "while encoding, then a conditional complete. Only measure parts on a store whose "
        "conditional complete is atomic (s3grid check-store): SeaweedFS's is not",
    )
    parser.add_argument(
        "--arrow-pool",
        choices=("mimalloc", "jemalloc", "system"),
        help="run everything on this Arrow allocator (ARROW_DEFAULT_MEMORY_POOL); "
        "default: pyarrow's own choice",
    )
    parser.add_argument(
        "--rss-child",
        nargs=4,
        metavar=("ENDPOINT", "BUCKET", "PREFIX", "PATH"),
        help=argparse.SUPPRESS,
    )
    args = parser.parse_args()
    if args.bucket and args.store:
        parser.error("--store starts a local store; --bucket runs on an existing one: pick one")
    if args.endpoint_url and not args.bucket:
        parser.error("--endpoint-url names the store of --bucket: pass --bucket too")
    if args.rss_child:
        rss_child(*args.rss_child)
        return
    if args.arrow_pool:
        # Read once, when Arrow first allocates: set before pyarrow is imported here,
        # and inherited by the memory runs' fresh processes.
        os.environ["ARROW_DEFAULT_MEMORY_POOL"] = args.arrow_pool
    # here and in the memory runs
    os.environ["S3GRID_COMMIT"] = "put" if args.commit == "parts" else args.commit
    if args.commit == "parts":
        from s3grid.s3 import AWS_MULTIPART_BYTES

        os.environ["S3GRID_MULTIPART_BYTES"] = str(AWS_MULTIPART_BYTES)

    import boto3
    import pyarrow as pa
    import pyarrow.parquet as pq

    from s3grid import ConflictError, MasterStore
    from s3grid.formats import PARQUET_WRITE_OPTIONS
    from s3grid.sample import sample_master

    if args.bucket:
        server, endpoint = None, args.endpoint_url
        where = f"s3://{args.bucket} ({endpoint or 'AWS'})"
        run = f"s3grid-bench/{datetime.now(UTC):%Y%m%dT%H%M%S}/"
        store_area, raw_area, rss_area = (Area(args.bucket, f"{run}{n}/") for n in NAMES)
    else:
        server, endpoint = start_store(args.store or "moto")
        where = args.store or "moto"
        # The raw baseline, the peers and the memory run write to buckets of their own:
        # moto's ListObjectVersions (the save's lost-update check) deep-copies every
        # object in the bucket, so their bytes would slow s3grid's save there (not on S3).
        store_area, raw_area, rss_area = (Area(f"bench-{n}") for n in NAMES)
    region = bucket_region(endpoint, args.bucket) if args.bucket else "us-east-1"
    s3 = boto3.client("s3", endpoint_url=endpoint, region_name=region)
    try:
        if server is not None:
            for area in (store_area, raw_area, rss_area):
                s3.create_bucket(Bucket=area.bucket)
                s3.put_bucket_versioning(
                    Bucket=area.bucket, VersioningConfiguration={"Status": "Enabled"}
                )
        store = MasterStore(store_area.config(endpoint))
        table = sample_master(args.rows)
        arrow_mb = table.nbytes / 1e6
        store.create(table, note="bench")
        MasterStore(rss_area.config(endpoint)).create(table, note="rss")
        peers = Peers(endpoint, region)
        polars_frame = peers.polars.from_arrow(table) if peers.polars is not None else None
        master = store_area.key("data/master.parquet")

        def raw_load() -> None:
            body = s3.get_object(Bucket=store_area.bucket, Key=master)["Body"]
            pq.read_table(io.BytesIO(body.read()))

        def raw_save(name: str = "data/master.parquet", **options: Any) -> None:
            sink = io.BytesIO()
            pq.write_table(table, sink, **options)
            s3.put_object(Bucket=raw_area.bucket, Key=raw_area.key(name), Body=sink.getvalue())

        steps: dict[str, float] = {}
        for step in STEPS:
            timed(store, step, steps)
        timings: list[tuple[float, dict[str, float]]] = []

        def stale_save() -> float:
            stale = store.load()
            fresh = store.load()
            store.save(fresh.table, base=fresh, note="bench: moves the master on")
            t0 = time.perf_counter()
            try:
                store.save(stale.table, base=stale, note="bench: a stale save")
            except ConflictError:
                return time.perf_counter() - t0
            raise SystemExit("a stale save was not refused")

        env = dict(os.environ)
        peaks = {}
        for path in ("arrow", "pandas", "editor", *(f"peer:{n}" for n in peers.names)):
            child = [
                sys.executable,
                __file__,
                "--rss-child",
                endpoint or "",
                rss_area.bucket,
                rss_area.prefix,
                path,
            ]
            done = subprocess.run(child, env=env, capture_output=True, text=True)
            if done.returncode:
                raise SystemExit(f"the {path} memory run failed:\n{done.stderr}")
            peaks[path] = float(done.stdout.strip().splitlines()[-1])
        # interleaved: each library in turn, so drift on a shared machine spreads evenly
        loads: dict[str, list[float]] = {"raw": [], "s3grid": [], **{n: [] for n in peers.names}}
        saves: dict[str, list[float]] = {
            "raw": [],
            "raw, s3grid's options": [],
            "s3grid": [],
            **{n: [] for n in peers.names},
        }

        # CPU seconds of this process (all its threads) and of the store's, per call:
        # on one machine the two share the cores, so the wall time of a save follows the
        # CPU both sides spend on it (the store's grows with the bytes it writes).
        cpu: dict[str, list[tuple[float, float, float]]] = {}

        def store_cpu() -> float:
            return cpu_seconds(server.pid) if server is not None else float("nan")

        def clock(fn: Any, name: str = "") -> float:
            c0, s0, t0 = time.process_time(), store_cpu(), time.perf_counter()
            fn()
            elapsed = time.perf_counter() - t0
            if name:
                spent = (time.process_time() - c0, store_cpu() - s0)
                cpu.setdefault(name, []).append((elapsed, *spent))
            return elapsed

        def s3grid_save() -> None:
            m = store.load()
            elapsed = clock(lambda: store.save(m.table, base=m, note="bench save"), "s3grid")
            if not timings or elapsed < min(t for t, _ in timings):
                timings.append((elapsed, dict(steps)))

        for _ in range(args.repeat):
            loads["raw"].append(clock(raw_load))
            loads["s3grid"].append(clock(store.load))
            for name in peers.names:
                loads[name].append(clock(lambda n=name: peers.load(n, store_area.bucket, master)))
            saves["raw"].append(clock(lambda: raw_save(compression="snappy"), "raw"))
            saves["raw, s3grid's options"].append(
                clock(lambda: raw_save("options.parquet", **PARQUET_WRITE_OPTIONS))
            )
            s3grid_save()
            saves["s3grid"].append(timings[-1][0])
            for name in peers.names:
                data = polars_frame if name == "polars" else table
                saves[name].append(
                    clock(
                        lambda n=name, d=data: peers.save(
                            n, d, raw_area.bucket, raw_area.key(f"peer-{n}.parquet")
                        ),
                        name,
                    )
                )
        stale = min(stale_save() for _ in range(args.repeat))

        # what each save left on the store: s3grid's body twice (the master and its
        # snapshot), each peer's once
        def size(area: Area, name: str) -> int:
            return int(s3.head_object(Bucket=area.bucket, Key=area.key(name))["ContentLength"])

        sizes = {
            "raw": size(raw_area, "data/master.parquet"),
            "s3grid": 2 * size(store_area, "data/master.parquet"),
            **{n: size(raw_area, f"peer-{n}.parquet") for n in peers.names},
        }
        t_save, t_steps = timings[-1]
        saves["s3grid"] = [t_save]
    finally:
        if server is not None:
            server.terminate()
            server.wait()
        else:
            delete_run(s3, args.bucket, run)
    pool = pa.default_memory_pool().backend_name
    print(
        f"{args.rows:,} rows on {where}, Arrow size {arrow_mb:.0f} MB "
        f"(best of {args.repeat}, interleaved), Arrow allocator {pool}"
    )
    if peers.missing:
        print(f"  not installed, left out: {', '.join(peers.missing)} (uv run --group bench)")
    for what, results, floor in (("load", loads, "raw"), ("save", saves, "raw")):
        best_of = {name: min(times) for name, times in results.items()}
        others = {n: t for n, t in best_of.items() if n not in ("s3grid", floor) and "raw" not in n}
        line = ", ".join(f"{n} {t:.2f} s" for n, t in best_of.items())
        print(f"  {what}: {line}")
        ratio = f"  -> s3grid / {floor} {best_of['s3grid'] / best_of[floor]:.2f}x"
        if others:
            peer, t_peer = min(others.items(), key=lambda item: item[1])
            ratio += f", s3grid / best peer ({peer}) {best_of['s3grid'] / t_peer:.2f}x"
        print(f"  {ratio.strip()}")
    ran = ", ".join(
        f"{what} {t_steps[step]:.2f} s" for step, what in STEPS.items() if step in t_steps
    )
    print(f"  save's steps (commit={args.commit}): {ran}")
    print(f"  a stale save refused in {stale * 1000:.0f} ms")
    spent = []
    for name, runs in cpu.items():
        _, client, on_store = min(runs)  # the fastest run's
        both = f"{client:.2f} + {on_store:.2f} s" if server is not None else f"{client:.2f} s"
        spent.append(f"{name} {both} ({sizes[name] / 1e6:.0f} MB written)")
    whose = "this process + the store's" if server is not None else "this process's"
    print(f"  save's CPU, {whose}, fastest run: {', '.join(spent)}")
    for path, what in (
        ("arrow", "load + save of the loaded table, as the peers below"),
        ("pandas", "load + pandas edit + save"),
        ("editor", "Editor + edit + Save"),
    ):
        print(
            f"  peak RSS (fresh process) for {what}: +{peaks[path]:.0f} MB "
            f"-> {peaks[path] / arrow_mb:.2f}x the Arrow size"
        )
    peer_peaks = ", ".join(
        f"{p.removeprefix('peer:')} +{mb:.0f} MB ({mb / arrow_mb:.2f}x)"
        for p, mb in peaks.items()
        if p.startswith("peer:")
    )
    if peer_peaks:
        print(f"  peak RSS (fresh process) for a peer's load + save: {peer_peaks}")


if __name__ == "__main__":
    main()
