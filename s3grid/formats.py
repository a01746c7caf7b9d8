"""Bytes <-> Arrow tables for the master's file formats (Parquet, CSV). Pure, no I/O."""

from __future__ import annotations

import io

import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from s3grid.errors import MasterFormatError

__all__ = ["SAVE_ID_METADATA", "decode_table", "encode_table"]

# Written into every Parquet footer so that saving equal data still changes the bytes,
# and so the ETag (the lock) changes with every save.
SAVE_ID_METADATA = b"s3grid.save_id"


def encode_table(table: pa.Table, file_format: str, *, save_id: str) -> bytes:
    """Serialise a master table (Parquet with snappy, or CSV with a header)."""
    # A BytesIO hands its buffer over in getvalue(); an Arrow buffer would need a copy to
    # become bytes (a second copy of the body in memory while it uploads).
    sink = io.BytesIO()
    if file_format == "csv":
        pacsv.write_csv(table, sink)
    else:
        metadata = dict(table.schema.metadata or {})
        metadata[SAVE_ID_METADATA] = save_id.encode()
        pq.write_table(table.replace_schema_metadata(metadata), sink, compression="snappy")
    return sink.getvalue()


def decode_table(body: bytes, file_format: str, *, where: str) -> pa.Table:
    """Parse a master object; the returned table carries no file-level metadata.

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
            table = pacsv.read_csv(pa.BufferReader(body))
        else:
            table = pq.read_table(pa.BufferReader(body))
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError, OSError) as exc:
        hint = ""
        if file_format != "csv" and body[:4] != b"PAR1":
            hint = " (Parquet magic bytes 'PAR1' not found: is it CSV, or truncated?)"
        raise MasterFormatError(
            f"{where} is not a valid {expected} file{hint}: {exc}. "
            "Check S3_FILE_FORMAT, or restore an earlier version."
        ) from exc
    return table.replace_schema_metadata(None)
