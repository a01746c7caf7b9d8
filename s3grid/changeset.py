"""Changesets: what one save changed, cell by cell, as a small Arrow table.

Every save writes its changeset beside its audit record, so the history of a row or a
cell comes from these small objects instead of from every snapshot. One row per change:

==========  ==============================================================
``change``  ``cell``, ``added``, ``deleted`` (a row), or ``column added``,
            ``column dropped``, ``column retyped`` (a deliberate schema change)
``key``     the row's key columns, as a struct of their own types; without key
            columns, ``{"row": position}``
``column``  the changed column (null for a whole row)
``old``     the value before, as text (null: the cell was empty)
``new``     the value after, as text
==========  ==============================================================

Values are text because one column holds values of every type; the text is Arrow's
(shortest round-trip for floats, ``nan`` for NaN, ISO 8601 for dates and times), and
null stays null. ``change`` and ``column`` are dictionary-encoded (:data:`LABEL`): a bulk
edit of whole columns repeats the same few labels on millions of rows. Rows are matched
by key as in :mod:`s3grid.diff`.

Pure: builds, encodes, decodes and filters tables; no I/O.
"""

from __future__ import annotations

import io
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from s3grid.diff import ChangeCounts, row_sources, same_values
from s3grid.errors import MasterFormatError, ValidationError
from s3grid.schema import to_pandas

__all__ = [
    "ADDED",
    "CELL",
    "DELETED",
    "LABEL",
    "Changeset",
    "build_changeset",
    "changeset_frame",
    "decode_changeset",
    "encode_changeset",
    "key_filter",
    "select_changes",
]

CELL, ADDED, DELETED = "cell", "added", "deleted"
COLUMN_ADDED, COLUMN_DROPPED, COLUMN_RETYPED = "column added", "column dropped", "column retyped"
ROW = "row"  # the key field of a master without key columns: the row's position

_META_KEYS = b"s3grid.changeset.key_columns"

# The type of ``change`` and ``column``: each label is stored once per chunk and a row
# holds an index, instead of a copy of the text on every row (docs/performance.md).
LABEL = pa.dictionary(pa.int32(), pa.string())


@dataclass(frozen=True)
class Changeset:
    """What one save changed (see the module's table) and the key columns it names."""

    table: pa.Table
    key_columns: tuple[str, ...]

    @property
    def counts(self) -> ChangeCounts:
        """The audit record's counts: changed cells, added and deleted rows."""
        rows: dict[str, int] = {}
        for chunk in self.table.column("change").chunks:  # one pass over the indices
            indices = chunk.indices.drop_null().to_numpy()
            per_label = np.bincount(indices, minlength=len(chunk.dictionary)).tolist()
            for label, n in zip(chunk.dictionary.to_pylist(), per_label, strict=True):
                rows[label] = rows.get(label, 0) + n
        return ChangeCounts(rows.get(CELL, 0), rows.get(ADDED, 0), rows.get(DELETED, 0))


def build_changeset(
    old: pa.Table | None, new: pa.Table, key_columns: Sequence[str] = ()
) -> Changeset:
    """The changes from ``old`` (None: a new master, every row added) to ``new``.

    Rows are matched by ``key_columns`` when both versions have them (else by position);
    cells are compared exactly (NaN is not null) in Arrow, and only changed values are
    turned into text, so a save that changes a few cells of 10M rows stays cheap.
    """
    keys = tuple(key_columns)
    if old is None:
        old = new.schema.empty_table()
    if keys and not set(keys) <= set(old.column_names) & set(new.column_names):
        keys = ()
    sources = row_sources(old, new, keys)
    new_pos = np.flatnonzero(sources >= 0)
    old_pos = sources[new_pos]
    kept = np.zeros(old.num_rows, dtype=bool)
    kept[old_pos] = True
    # the usual save: the first rows match themselves, in order (some appended or cut)
    in_place = np.array_equal(new_pos, np.arange(len(new_pos))) and np.array_equal(old_pos, new_pos)
    parts: list[pa.Table] = []
    for name in new.column_names:
        if name in keys or name not in old.column_names:
            continue
        a, b = old.column(name), new.column(name)
        if a.type != b.type:
            continue  # recorded below as a retyped column
        if in_place:
            a, b = a.slice(0, len(new_pos)), b.slice(0, len(new_pos))
        else:
            a, b = a.take(pa.array(old_pos)), b.take(pa.array(new_pos))
        changed = np.flatnonzero(~same_values(a, b))
        if len(changed):
            taken = pa.array(changed)
            parts.append(
                _rows(
                    CELL,
                    _key_struct(new, keys, new_pos[changed]),
                    name,
                    _text(a.take(taken)),
                    _text(b.take(taken)),
                )
            )
    added = np.flatnonzero(sources < 0)
    deleted = np.flatnonzero(~kept)
    if len(added):
        parts.append(_rows(ADDED, _key_struct(new, keys, added)))
    if len(deleted):
        parts.append(_rows(DELETED, _key_struct(old, keys, deleted)))
    shape = _key_struct(new, keys, np.array([], dtype=np.int64))
    was = {f.name: str(f.type) for f in old.schema}
    now = {f.name: str(f.type) for f in new.schema}
    for name, type_ in now.items():
        if name not in was:
            parts.append(_schema_row(COLUMN_ADDED, shape, name, None, type_))
        elif was[name] != type_:
            parts.append(_schema_row(COLUMN_RETYPED, shape, name, was[name], type_))
    for name, type_ in was.items():
        if name not in now:
            parts.append(_schema_row(COLUMN_DROPPED, shape, name, type_, None))
    table = pa.concat_tables(parts) if parts else _rows(CELL, shape).slice(0, 0)
    return Changeset(table, keys)


def _key_struct(table: pa.Table, keys: tuple[str, ...], positions: np.ndarray) -> pa.Array:
    """The keys of some rows as one struct array (``{"row": position}`` without keys)."""
    if not keys:
        return pa.StructArray.from_arrays([pa.array(positions, pa.int64())], names=[ROW])
    taken = pa.array(positions, pa.int64())
    arrays = [table.column(k).take(taken).combine_chunks() for k in keys]
    return pa.StructArray.from_arrays(arrays, names=list(keys))


def _rows(
    change: str,
    key: pa.Array,
    column: str | None = None,
    old: pa.Array | None = None,
    new: pa.Array | None = None,
) -> pa.Table:
    n = len(key)
    return pa.table(
        {
            "change": _label(change, n),
            "key": key,
            "column": _label(column, n),
            "old": old if old is not None else pa.nulls(n, pa.string()),
            "new": new if new is not None else pa.nulls(n, pa.string()),
        }
    )


def _label(value: str | None, n: int) -> pa.DictionaryArray:
    """``value`` (None: null) on ``n`` rows, as a :data:`LABEL` array."""
    if value is None:
        return pa.DictionaryArray.from_arrays(pa.nulls(n, pa.int32()), pa.array([], pa.string()))
    indices = pa.array(np.zeros(n, dtype=np.int32))
    return pa.DictionaryArray.from_arrays(indices, pa.array([value], pa.string()))


def _label_in(labels: pa.ChunkedArray, values: Sequence[str]) -> pa.ChunkedArray:
    """Which rows of a :data:`LABEL` column hold one of ``values`` (a null row: False),
    compared by dictionary index: decoding every row's text would cost more."""
    wanted_values = pa.array(values, pa.string())
    out = []
    for chunk in labels.chunks:
        hits = pc.is_in(chunk.dictionary, value_set=wanted_values)
        wanted = pa.array(np.flatnonzero(hits.to_numpy(zero_copy_only=False)), chunk.indices.type)
        out.append(pc.is_in(chunk.indices, value_set=wanted))
    return pa.chunked_array(out, pa.bool_())


def _schema_row(
    change: str, shape: pa.Array, column: str, old: str | None, new: str | None
) -> pa.Table:
    """One row for a column that came, went or changed type (its key is null)."""
    key = pa.nulls(1, shape.type)
    return _rows(change, key, column, pa.array([old], pa.string()), pa.array([new], pa.string()))


def _text(values: pa.ChunkedArray | pa.Array) -> pa.Array:
    """Values as text, null kept null: Arrow's own formatting where it has one, JSON for
    nested values, hex for bytes that are not UTF-8."""
    if isinstance(values, pa.ChunkedArray):
        values = values.combine_chunks()
    try:
        text = pc.cast(values, pa.string())
        if pa.types.is_timestamp(values.type) or pa.types.is_time(values.type):
            # as the grid writes them: 18:45:42, not 18:45:42.000000
            text = pc.replace_substring_regex(text, r"\.0+(Z|[+-]\d\d:?\d\d)?$", r"\1")
        return text
    except (pa.ArrowNotImplementedError, pa.ArrowInvalid, pa.ArrowTypeError):
        pass
    out: list[str | None] = []
    for value in values.to_pylist():
        if value is None:
            out.append(None)
        elif isinstance(value, bytes):
            out.append(value.hex())
        else:
            out.append(json.dumps(value, default=str, ensure_ascii=False))
    return pa.array(out, pa.string())


def encode_changeset(changeset: Changeset) -> bytes:
    """The changeset as a Parquet object (its key columns in the file metadata)."""
    meta = {_META_KEYS: json.dumps(list(changeset.key_columns)).encode()}
    table = changeset.table.replace_schema_metadata(meta)
    sink = io.BytesIO()
    pq.write_table(table, sink, compression="zstd")
    return sink.getvalue()


def decode_changeset(body: bytes | bytearray, *, where: str) -> Changeset:
    """Read a changeset written by :func:`encode_changeset`.

    Raises:
        MasterFormatError: the object is not an s3grid changeset.
    """
    try:
        table = pq.read_table(io.BytesIO(body))
        keys = json.loads((table.schema.metadata or {})[_META_KEYS])
    except (pa.ArrowException, KeyError, ValueError, OSError) as exc:
        raise MasterFormatError(f"{where} is not an s3grid changeset ({exc}).") from exc
    missing = {"change", "key", "column", "old", "new"} - set(table.column_names)
    if missing:
        raise MasterFormatError(f"{where} is not an s3grid changeset (no {sorted(missing)}).")
    for name in ("change", "column"):  # plain text in changesets written before LABEL
        i = table.schema.get_field_index(name)
        type_ = table.schema.field(i).type
        if type_ == LABEL:
            continue
        if not (pa.types.is_string(type_) or pa.types.is_large_string(type_)):
            raise MasterFormatError(f"{where} is not an s3grid changeset ({name!r} is {type_}).")
        table = table.set_column(i, name, table.column(i).cast(LABEL))
    return Changeset(table.replace_schema_metadata(None), tuple(keys))


def key_filter(key: Any, key_columns: Sequence[str]) -> dict[str, Any]:
    """A row's key as ``{column: value}``, from a value (one key column), a tuple (in
    key-column order) or a mapping.

    Raises:
        ValidationError: the key does not name every key column.
    """
    names = list(key_columns) or [ROW]
    if isinstance(key, Mapping):
        wanted = dict(key)
    elif isinstance(key, tuple | list):
        if len(key) != len(names):
            raise ValidationError(
                f"The key {tuple(key)!r} has {len(key)} value(s); this master's key is "
                f"{tuple(names)}. Give one value per key column, or a dict."
            )
        wanted = dict(zip(names, key, strict=True))
    elif len(names) == 1:
        wanted = {names[0]: key}
    else:
        raise ValidationError(
            f"This master's key has {len(names)} columns {tuple(names)}; give the key as a "
            "tuple or a dict, for example key=(3, 1)."
        )
    unknown = sorted(set(wanted) - set(names))
    if unknown or len(wanted) != len(names):
        raise ValidationError(
            f"The key {wanted!r} does not match this master's key columns {tuple(names)}."
        )
    return wanted


def select_changes(
    changeset: Changeset, *, key: Mapping[str, Any] | None = None, column: str | None = None
) -> pa.Table:
    """The rows of a changeset about one row (``key``, from :func:`key_filter`) and/or
    one column; a row's addition and deletion count as changes of each of its cells."""
    table = changeset.table
    mask = pa.array(np.ones(table.num_rows, dtype=bool))
    if key is not None:
        field_names = [f.name for f in table.schema.field("key").type]
        if set(key) != set(field_names):
            return table.slice(0, 0)  # written with other key columns: not this row
        keys = table.column("key").combine_chunks()
        for name, value in key.items():
            values = keys.field(name)
            try:
                wanted = pa.scalar(value).cast(values.type)
            except (pa.ArrowInvalid, pa.ArrowNotImplementedError, pa.ArrowTypeError):
                return table.slice(0, 0)  # not a value this column can hold
            mask = pc.and_(mask, pc.fill_null(pc.equal(values, wanted), False))
    if column is not None:
        whole_row = _label_in(table.column("change"), [ADDED, DELETED])
        names_it = _label_in(table.column("column"), [column])
        mask = pc.and_(mask, pc.or_(names_it, whole_row) if key is not None else names_it)
    return table.filter(mask)


def changeset_frame(table: pa.Table) -> pd.DataFrame:
    """Changeset rows as a DataFrame: ``change``, the key columns (from the struct),
    ``column``, ``old``, ``new``. Key values keep their types (nullable in pandas)."""
    keys = table.column("key").combine_chunks()
    # the labels as text, as the frame's other text columns (not pandas categoricals)
    columns: dict[str, Any] = {"change": table.column("change").cast(pa.string())}
    for field in keys.type:
        columns[field.name] = keys.field(field.name)
    columns["column"] = table.column("column").cast(pa.string())
    for name in ("old", "new"):
        columns[name] = table.column(name)
    return to_pandas(pa.table(columns))
