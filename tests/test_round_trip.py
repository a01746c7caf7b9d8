"""Property: for any master of the editable types, load -> save unchanged -> load gives
every cell back identical (NaN-aware), on Parquet and on CSV masters, through pandas and
through Arrow."""

from __future__ import annotations

import datetime as dt
import itertools
import math
from typing import Any

import pyarrow as pa
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from s3grid import MasterStore, S3GridConfig
from tests.support.cells import assert_same_table

pytestmark = pytest.mark.slow

_masters = itertools.count()

_FLOATS = st.one_of(
    st.just(math.nan),  # often: NaN next to null is what pandas cannot tell apart
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from([math.nan, 0.0, -0.0, 5e-324, 1.7976931348623157e308, 0.1]),
)
_TEXT = st.text(st.characters(exclude_categories=("Cs",)), max_size=12)
_TIMES = st.datetimes(min_value=dt.datetime(1, 1, 1), max_value=dt.datetime(9999, 12, 31))

# (Arrow type, values): what a column of that type may hold.
_COLUMNS: dict[str, tuple[pa.DataType, st.SearchStrategy[Any]]] = {
    "i32": (pa.int32(), st.integers(-(2**31), 2**31 - 1)),
    "i64": (pa.int64(), st.integers(-(2**63), 2**63 - 1)),
    "u8": (pa.uint8(), st.integers(0, 255)),
    "f64": (pa.float64(), _FLOATS),
    "f32": (pa.float32(), st.one_of(st.just(math.nan), st.floats(width=32))),
    "b": (pa.bool_(), st.booleans()),
    "s": (pa.string(), _TEXT),
    "ts": (pa.timestamp("us"), _TIMES),
    "tz": (pa.timestamp("us", "UTC"), _TIMES.map(lambda t: t.replace(tzinfo=dt.UTC))),
    "tz_local": (
        pa.timestamp("ms", "America/Chicago"),
        st.integers(-(10**12), 10**13).map(
            lambda ms: dt.datetime(1970, 1, 1, tzinfo=dt.UTC) + dt.timedelta(milliseconds=ms)
        ),
    ),
    "d": (pa.date32(), st.dates()),
}


@st.composite
def masters(draw: st.DrawFn) -> pa.Table:
    names = draw(st.lists(st.sampled_from(sorted(_COLUMNS)), min_size=1, max_size=6, unique=True))
    rows = draw(st.integers(1, 6))
    columns = {}
    for name in names:
        type_, values = _COLUMNS[name]
        cells = draw(st.lists(st.one_of(st.none(), values), min_size=rows, max_size=rows))
        columns[name] = pa.array(cells, type_)
    return pa.table(columns)


@pytest.mark.parametrize("file_format", ["parquet", "csv"])
def test_load_save_unchanged_load_is_identical(cfg: S3GridConfig, file_format: str) -> None:
    @settings(
        max_examples=40,
        deadline=None,
        derandomize=True,
        suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
    )
    @given(table=masters(), through_pandas=st.booleans())
    def round_trip(table: pa.Table, through_pandas: bool) -> None:
        key = f"m{next(_masters)}/master.{file_format}"
        store = MasterStore(cfg.with_(master_key=key, file_format=file_format), key_columns=())
        store.create(table, note="random master")
        m = store.load()
        assert_same_table(m.table, table)  # the first load already gives it back
        res = store.save(m.to_pandas() if through_pandas else m.table, base=m, note="same")
        assert res.cells_changed == 0
        assert_same_table(store.load().table, table)

    round_trip()
