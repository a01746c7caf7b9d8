"""Flatten part files (Athena CTAS/UNLOAD output) into one Parquet table or object.

Streams row group by row group through ranged GETs, so memory stays around one row
group per part, not the whole result. Athena writes parts without a ``.parquet``
suffix, plus ``_SUCCESS``-style markers; those, hidden files and empty objects are skipped.
"""

from __future__ import annotations

import io
import posixpath
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from s3grid.errors import MasterFormatError, SchemaError, ValidationError
from s3grid.formats import parquet_options
from s3grid.s3 import SeekableReader
from s3grid.schema import coerce_table, with_master_case

__all__ = [
    "FlattenResult",
    "empty_prefix",
    "flatten_to_bytes",
    "flatten_to_table",
    "list_parts",
]


@dataclass(frozen=True)
class FlattenResult:
    """What a flatten read: the parts used and rows, and what it skipped."""

    parts: tuple[str, ...]
    skipped: tuple[str, ...]
    rows: int


class _RangedObject(SeekableReader):
    """A seekable read-only file over one S3 object, read with ranged GETs.

    pyarrow's Parquet reader reads the footer, then one column chunk at a time; only
    those byte ranges are fetched, through the store's S3 wrapper.
    """

    def __init__(self, bucket: Any, key: str, size: int) -> None:
        super().__init__(size)
        self._bucket = bucket
        self._key = key

    def _read_range(self, start: int, n: int) -> Any:
        return self._bucket.get_range(self._key, start, n)


def list_parts(bucket: Any, prefix: str) -> tuple[list[tuple[str, int]], list[str]]:
    """``(parts, skipped)`` under ``prefix``: parts as ``(key, size)`` in key order.

    Raises:
        ValidationError: the prefix does not end with ``/``.
    """
    if not prefix.endswith("/"):
        raise ValidationError(f"Prefix {prefix!r} must end with '/' (a folder of part files).")
    parts, skipped = [], []
    for obj in bucket.list_objects(prefix):
        key, size = obj["Key"], int(obj.get("Size", 0))
        name = posixpath.basename(key)
        if not name or name.startswith(("_", ".")) or size == 0 or key.endswith("/"):
            skipped.append(key)
        else:
            parts.append((key, size))
    return sorted(parts), skipped


def _batches(
    bucket: Any,
    parts: list[tuple[str, int]],
    schema: pa.Schema | None,
    expected: list[int],
    progress: bool = False,
) -> Iterator[tuple[str, pa.RecordBatch]]:
    """Row groups of every part; appends each part's footer row count to ``expected``."""
    from tqdm.auto import tqdm

    total = sum(size for _, size in parts)
    bar = tqdm(
        total=total, unit="B", unit_scale=True, desc="flatten", disable=not progress, leave=False
    )
    for key, size in parts:
        bar.update(size)
        try:
            pf = pq.ParquetFile(_RangedObject(bucket, key, size))
        except (pa.ArrowInvalid, OSError) as exc:
            raise MasterFormatError(f"Part {bucket.url(key)} is not Parquet: {exc}") from exc
        expected.append(pf.metadata.num_rows)
        for i in range(pf.num_row_groups):
            table = pf.read_row_group(i)
            if schema is not None:  # Athena lowercases names; bigint -> int32, refusing loss
                table = coerce_table(with_master_case(table, schema), schema)
            for batch in table.to_batches():
                yield key, batch


def flatten_to_table(
    bucket: Any, prefix: str, *, schema: pa.Schema | None = None, progress: bool = False
) -> tuple[pa.Table, FlattenResult]:
    """Read all parts under ``prefix`` into one table (cast to ``schema`` if given).

    Raises:
        ValidationError: no parts (empty or missing prefix).
        SchemaError: a part does not fit ``schema``.
    """
    parts, skipped = list_parts(bucket, prefix)
    if not parts:
        raise ValidationError(
            f"No part files under {bucket.url(prefix)} (skipped {len(skipped)}); "
            "did the query write its output there?"
        )
    expected: list[int] = []
    batches = [b for _, b in _batches(bucket, parts, schema, expected, progress)]
    if not batches:
        raise ValidationError(f"The parts under {bucket.url(prefix)} hold no rows.")
    table = pa.Table.from_batches(batches)
    _check_rows(table.num_rows, sum(expected), prefix)
    return table, FlattenResult(tuple(k for k, _ in parts), tuple(skipped), table.num_rows)


def flatten_to_bytes(
    bucket: Any,
    prefix: str,
    *,
    schema: pa.Schema | None = None,
    row_group_size: int = 1 << 20,
    progress: bool = False,
) -> tuple[bytes, FlattenResult]:
    """Stream all parts under ``prefix`` into one Parquet file's bytes (snappy).

    Memory: one row group of input at a time, plus the compressed output.

    Raises:
        ValidationError: no parts, or the row count does not add up.
        SchemaError: parts with different schemas (and no ``schema`` to cast to).
    """
    parts, skipped = list_parts(bucket, prefix)
    if not parts:
        raise ValidationError(
            f"No part files under {bucket.url(prefix)} (skipped {len(skipped)}); "
            "did the query write its output there?"
        )
    sink = io.BytesIO()
    expected: list[int] = []
    writer: pq.ParquetWriter | None = None
    rows = 0
    try:
        for key, batch in _batches(bucket, parts, schema, expected, progress):
            if writer is None:
                options = parquet_options(bucket.cfg.compression)
                writer = pq.ParquetWriter(sink, batch.schema, **options)
            elif batch.schema != writer.schema:
                raise SchemaError(
                    f"Part {bucket.url(key)} has schema {batch.schema} but earlier parts have "
                    f"{writer.schema}; pass the master schema to cast them."
                )
            writer.write_batch(batch, row_group_size=row_group_size)
            rows += batch.num_rows
    finally:
        if writer is not None:
            writer.close()
    if writer is None:
        raise ValidationError(f"The parts under {bucket.url(prefix)} hold no rows.")
    _check_rows(rows, sum(expected), prefix)
    return sink.getvalue(), FlattenResult(tuple(k for k, _ in parts), tuple(skipped), rows)


def empty_prefix(bucket: Any, prefix: str) -> int:
    """Delete every object under ``prefix`` (a staging folder); returns how many.

    Callers check first that the prefix cannot hold the master.

    Raises:
        ValidationError: the prefix does not end with ``/``.
    """
    if not prefix.endswith("/"):
        raise ValidationError(f"Prefix {prefix!r} must end with '/' (a folder of part files).")
    keys = [o["Key"] for o in bucket.list_objects(prefix)]
    bucket.delete_many(keys, what=f"DELETE {bucket.url(prefix)}*")
    return len(keys)


def _check_rows(written: int, expected: int, prefix: str) -> None:
    if written != expected:
        raise ValidationError(
            f"Flatten of {prefix} wrote {written} rows but the parts hold {expected}; "
            "nothing was promoted."
        )
