"""A realistic sample master in the seed's schema, for the demo, notebooks and tests."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow as pa

__all__ = ["SAMPLE_SCHEMA", "sample_master"]

SAMPLE_SCHEMA = pa.schema(
    [
        ("vessel", pa.string()),
        ("cruise", pa.string()),
        ("tow", pa.int32()),
        ("net", pa.int32()),
        ("lat_decimal", pa.float64()),
        ("long_decimal", pa.float64()),
        ("min_depth", pa.int32()),
        ("max_depth", pa.int32()),
        ("volume_filtered", pa.float64()),
        ("time_start_gmt", pa.timestamp("us")),
        ("time_start_local", pa.timestamp("us")),
        ("is_day", pa.bool_()),
        ("net_size", pa.float64()),
    ]
)

NETS_PER_TOW = 5  # a MOCNESS-style multi-net tow: net 0 is the oblique, 1-4 are depth bins


def sample_master(rows: int = 3000, *, seed: int = 7) -> pa.Table:
    """A plankton-tow table with unique (tow, net), plausible values and a few nulls.

    Args:
        rows: number of rows (rounded to whole tows of five nets).
        seed: random seed, so the same call gives the same table.
    """
    rng = np.random.default_rng(seed)
    tows = max(1, -(-rows // NETS_PER_TOW))
    tow = np.repeat(np.arange(1, tows + 1, dtype=np.int32), NETS_PER_TOW)[:rows]
    net = np.tile(np.arange(NETS_PER_TOW, dtype=np.int32), tows)[:rows]
    n = len(tow)
    cruise_no = (tow - 1) // 40
    vessel = np.where(cruise_no % 2 == 0, "R/V Point Sur", "R/V Sikuliaq")
    cruise = np.array([f"PS{2200 + c:04d}" if c % 2 == 0 else f"SKQ{2023 + c}" for c in cruise_no])
    tow_lat = rng.uniform(34.0, 37.5, tows)
    tow_lon = rng.uniform(-124.5, -120.5, tows)
    lat = np.round(tow_lat[tow - 1] + rng.normal(0, 0.002, n), 5)
    lon = np.round(tow_lon[tow - 1] + rng.normal(0, 0.002, n), 5)
    bins = np.array([0, 0, 50, 100, 200, 400])
    min_depth = np.where(net == 0, 0, bins[net]).astype(np.int32)
    max_depth = np.where(net == 0, 400, bins[np.minimum(net + 1, 5)]).astype(np.int32)
    volume = np.round(rng.uniform(80.0, 650.0, n), 2)
    start = pd.Timestamp("2023-03-01T00:00:00")
    tow_start = start + pd.to_timedelta(
        np.sort(rng.uniform(0, 400 * 24 * 3600, tows)).astype(np.int64), unit="s"
    )
    gmt = tow_start[tow - 1] + pd.to_timedelta(net.astype(np.int64) * 12, unit="min")
    local = gmt - pd.Timedelta(hours=8)
    is_day = (local.hour >= 6) & (local.hour < 19)
    net_size = np.where(net == 0, 0.505, 0.333)
    frame = pd.DataFrame(
        {
            "vessel": vessel,
            "cruise": cruise,
            "tow": tow,
            "net": net,
            "lat_decimal": lat,
            "long_decimal": lon,
            "min_depth": min_depth,
            "max_depth": max_depth,
            "volume_filtered": volume,
            "time_start_gmt": gmt,
            "time_start_local": local,
            "is_day": is_day,
            "net_size": net_size,
        }
    )
    table = pa.Table.from_pandas(frame, schema=SAMPLE_SCHEMA, preserve_index=False)
    # A few missing measurements, as real field sheets have.
    mask = np.zeros(n, dtype=bool)
    mask[rng.choice(n, size=max(1, n // 200), replace=False)] = True
    volume_col = pa.array(np.where(mask, np.nan, volume), type=pa.float64(), from_pandas=True)
    table = table.set_column(
        table.schema.get_field_index("volume_filtered"), "volume_filtered", volume_col
    )
    return table.replace_schema_metadata(None)
