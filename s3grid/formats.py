"""Bytes <-> Arrow tables for the master's file formats (Parquet, CSV). Pure, no I/O."""

from __future__ import annotations

import io
from typing import Any
from urllib.parse import quote, unquote

import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from s3grid.errors import MasterFormatError, SchemaError
from s3grid.schema import describe_type, editable, parse_type

__all__ = [
    "PARQUET_WRITE_OPTIONS",
    "SAVE_ID_METADATA",
    "content_type",
    "csv_types_text",
    "decode_table",
    "encode_table",
    "parquet_options",
    "parse_csv_types",
    "write_table",
]

# How s3grid writes Parquet (the master and a flattened query result alike). A column
# whose dictionary outgrows 64 KiB (Arrow's default: 1 MiB) switches to plain encoding
# early: dictionaries that large rarely shrink the file, and building them costs much
# of the encode time and memory of a large master (docs/performance.md).
PARQUET_WRITE_OPTIONS: dict[str, object] = {
    "compression": "snappy",
    "dictionary_pagesize_limit": 64 * 1024,
}

# Written into every Parquet footer so that saving equal data still changes the bytes,
# and so the ETag (the lock) changes with every save.
SAVE_ID_METADATA = b"s3grid.save_id"


def content_type(file_format: str) -> str:
    """The Content-Type a master body of ``file_format`` is stored with."""
    return "text/csv" if file_format == "csv" else "application/octet-stream"


def parquet_options(compression: str = "snappy") -> dict[str, object]:
    """s3grid's Parquet writer options with ``compression`` (``codec`` or
    ``codec:level``, as :class:`~s3grid.config.S3GridConfig` checked it)."""
    codec, _, level = compression.partition(":")
    options = {**PARQUET_WRITE_OPTIONS, "compression": codec}
    if level:
        options["compression_level"] = int(level)
    return options


def encode_table(
    table: pa.Table, file_format: str, *, save_id: str, compression: str = "snappy"
) -> bytes:
    """Serialise a master table (Parquet, compressed with ``compression``; or CSV with a
    header)."""
    # A BytesIO hands its buffer over in getvalue(); an Arrow buffer would need a copy to
    # become bytes (a second copy of the body in memory while it uploads).
    sink = io.BytesIO()
    write_table(table, sink, file_format, save_id=save_id, compression=compression)
    return sink.getvalue()


def write_table(
    table: pa.Table,
    sink: Any,
    file_format: str,
    *,
    save_id: str,
    compression: str = "snappy",
) -> None:
    """Write a master table's bytes to ``sink`` (a writable file), as :func:`encode_table`
    returns them."""
    if file_format == "csv":
        pacsv.write_csv(table, sink)
    else:
        metadata = dict(table.schema.metadata or {})
        metadata[SAVE_ID_METADATA] = save_id.encode()
        table = table.replace_schema_metadata(metadata)
        pq.write_table(table, sink, **parquet_options(compression))
    _release_scratch()


def _release_scratch() -> None:
    """Hand the encoder's/decoder's freed scratch memory back to the OS.

    Arrow's allocator keeps freed pages for reuse by the thread that freed them; after a
    large read or write those pages would stay resident for the kernel's lifetime.
    """
    pa.default_memory_pool().release_unused()


def csv_types_text(schema: pa.Schema) -> str:
    """The types a CSV master declares, as S3 metadata text: ``name=type`` pairs,
    percent-encoded, comma-separated; text columns (the default) are left out.

    Raises:
        SchemaError: a column type a CSV master cannot hold exactly (use Parquet).
    """
    pairs = []
    for field in schema:
        if pa.types.is_string(field.type):
            continue
        as_text = pa.types.is_decimal(field.type) or pa.types.is_dictionary(field.type)
        if not editable(field.type) or as_text:  # no CSV type declaration says these
            raise SchemaError(
                f"Column {field.name!r} is {describe_type(field.type)}, which a CSV master "
                "cannot hold as text exactly; use a Parquet master (S3_FILE_FORMAT=parquet).",
                column=field.name,
                expected="a CSV-compatible type",
            )
        pairs.append(f"{quote(field.name, safe='')}={quote(str(field.type), safe='')}")
    return ",".join(pairs)


def parse_csv_types(text: str) -> dict[str, pa.DataType]:
    """Inverse of :func:`csv_types_text`; an unreadable entry is skipped (text then)."""
    types: dict[str, pa.DataType] = {}
    for pair in filter(None, text.split(",")):
        name, _, type_text = pair.partition("=")
        try:
            types[unquote(name)] = parse_type(unquote(type_text))
        except SchemaError:
            continue
    return types


def _read_csv(body: bytes | bytearray, declared: dict[str, pa.DataType] | None) -> pa.Table:
    """A CSV master with the types it declares, text for every other column: nothing is
    guessed ("007" stays "007"). An empty field is null; a quoted empty one is ""."""
    names = pacsv.open_csv(pa.BufferReader(body)).schema.names  # the header's names
    types = {name: (declared or {}).get(name, pa.string()) for name in names}
    options = pacsv.ConvertOptions(
        column_types=types,
        null_values=[""],
        strings_can_be_null=True,
        quoted_strings_can_be_null=False,
    )
    # With one column, an empty line is a row whose one cell is empty (null), not filler.
    parse = pacsv.ParseOptions(ignore_empty_lines=len(names) > 1)
    return pacsv.read_csv(pa.BufferReader(body), parse_options=parse, convert_options=options)


def decode_table(
    body: bytes | bytearray,
    file_format: str,
    *,
    where: str,
    csv_types: dict[str, pa.DataType] | None = None,
) -> pa.Table:
    """Parse a master object; the returned table carries no file-level metadata.

    ``csv_types`` are the column types a CSV master declares (other columns are text).

    Raises:
        MasterFormatError: the bytes are not valid for ``file_format``; names ``where``.
    """
    expected = "CSV" if file_format == "csv" else "Parquet"
    if not body:
        raise MasterFormatError(
            f"{where} is empty (0 bytes); expected a {expected} file. "
            "Restore an earlier version (s3grid restore) or upload a valid file."
        )
    try:
        if file_format == "csv":
            table = _read_csv(body, csv_types)
        else:
            # Whole row groups as chunks (pq.read_table cuts 128k-row batches): a master
            # s3grid wrote (1Mi-row groups) arrives in few chunks, and a one-chunk column
            # can be shared with pandas instead of copied (see EditSession).
            table = pq.ParquetFile(pa.BufferReader(body)).read()
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError, OSError) as exc:
        hint = ""
        if file_format != "csv" and body[:4] != b"PAR1":
            hint = " (Parquet magic bytes 'PAR1' not found: is it CSV, or truncated?)"
        if file_format == "csv" and "conversion error" in str(exc):
            raise MasterFormatError(
                f"{where}: a value does not fit the type declared for its column ({exc}). "
                "Fix the value, or declare the column as text (string)."
            ) from exc
        raise MasterFormatError(
            f"{where} is not a valid {expected} file{hint}: {exc}. "
            "Check S3_FILE_FORMAT, or restore an earlier version."
        ) from exc
    _release_scratch()
    return table.replace_schema_metadata(None)
