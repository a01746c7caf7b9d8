"""The seed README's bulk-edit recipe and its expected result; part files."""

from __future__ import annotations

import io
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

# The seed README's recipe: on tow 4 the depth bins were logged one net late, so each
# net takes the previous net's bin (LAG over tow 4), and net 0 of tow 4 is dropped.
SEED_SQL = """
SELECT vessel, cruise, tow, net, lat_decimal, long_decimal, min_depth, max_depth,
       volume_filtered, time_start_gmt, time_start_local, is_day, net_size
FROM (
    SELECT vessel, cruise, tow, net, lat_decimal, long_decimal,
           CASE WHEN tow = 4 THEN LAG(min_depth) OVER (PARTITION BY tow ORDER BY net)
                ELSE min_depth END AS min_depth,
           CASE WHEN tow = 4 THEN LAG(max_depth) OVER (PARTITION BY tow ORDER BY net)
                ELSE max_depth END AS max_depth,
           volume_filtered, time_start_gmt, time_start_local, is_day, net_size
    FROM work_master_parquet
) AS t
WHERE NOT (tow = 4 AND net = 0)
ORDER BY tow, net
"""


def expected_seed_result(df: pd.DataFrame) -> pd.DataFrame:
    out = df.sort_values(["tow", "net"]).copy()
    tow4 = out["tow"] == 4
    for col in ("min_depth", "max_depth"):
        out.loc[tow4, col] = out.loc[tow4, col].shift(1)
    out = out[~(tow4 & (out["net"] == 0))]
    return out.reset_index(drop=True)


def put_part(s3: Any, bucket: str, key: str, table: pa.Table, row_group_size: int = 10) -> None:
    buf = io.BytesIO()
    pq.write_table(table, buf, row_group_size=row_group_size)
    s3.put_object(Bucket=bucket, Key=key, Body=buf.getvalue())
