"""Events AWS sends the Lambda handler, Athena queries moto knows, staged output."""

from __future__ import annotations

import io
import os
from typing import Any

import boto3
import pyarrow as pa
import pyarrow.parquet as pq

from s3grid import MasterStore

STAGING = "staging/data/master.parquet/next/"


SCHEDULE = {"source": "aws.events", "detail-type": "Scheduled Event", "detail": {}}


def athena_event(state: str, qid: str = "q-123", group: str = "primary") -> dict[str, Any]:
    return {
        "source": "aws.athena",
        "detail-type": "Athena Query State Change",
        "detail": {"currentState": state, "queryExecutionId": qid, "workgroupName": group},
    }


def started_query(sql: str) -> str:
    """A query moto's Athena knows (GetQueryExecution gives back its SQL); its id."""
    athena = boto3.client(
        "athena", endpoint_url=os.environ["ATHENA_ENDPOINT_URL"], region_name="us-east-1"
    )
    return str(
        athena.start_query_execution(
            QueryString=sql,
            WorkGroup="primary",
            ResultConfiguration={"OutputLocation": "s3://results/athena/"},
        )["QueryExecutionId"]
    )


def unload_into(bucket: str, prefix: str = STAGING) -> str:
    return f"UNLOAD (SELECT * FROM t) TO 's3://{bucket}/{prefix}' WITH (format = 'PARQUET')"


def s3_event(key: str) -> dict[str, Any]:
    return {"Records": [{"eventSource": "aws:s3", "s3": {"object": {"key": key}}}]}


def stage(master_store: MasterStore, s3: Any, bucket: str, value: float) -> pa.Table:
    """Athena-like output: the master with one edit, as two bigint part files."""
    df = master_store.load().to_pandas()
    df.loc[0, "volume_filtered"] = value
    table = pa.Table.from_pandas(df, preserve_index=False)
    for i, part in enumerate((table.slice(0, 25), table.slice(25))):
        buf = io.BytesIO()
        pq.write_table(part, buf)
        s3.put_object(Bucket=bucket, Key=f"{STAGING}20240501_{i:05d}", Body=buf.getvalue())
    return table
