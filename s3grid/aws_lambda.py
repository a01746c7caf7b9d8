"""AWS Lambda: promote staged Athena output (part files) into the master, safely.

Triggers: an EventBridge schedule (its default ``{}`` payload too), an "Athena Query
State Change" event for a CTAS or UNLOAD that wrote to the staging prefix (in the
configured work group, ``ATHENA_WORK_GROUP``, when set), or an S3 event (direct or via
EventBridge) for the marker object (default ``_SUCCESS``) written when the query is
done. The handler promotes the staging prefix with :func:`s3grid.promote.promote`
(``source="automation"``, the query id in the note when known): over the base its run
manifest names, or, for output s3grid did not start, over a master unchanged since the
output was written. Staging is emptied only after the save succeeded. A conflict, an
empty prefix, a run that did not succeed or an error is reported in the result;
nothing is overwritten and staging is left as it was.

Environment: the ``S3_*`` variables of :class:`S3GridConfig`, plus
``S3GRID_STAGING_PREFIX`` (default ``staging/<master key>/next/``) and
``S3GRID_TRIGGER_MARKER`` (default ``_SUCCESS``).
"""

from __future__ import annotations

import logging
import os
import posixpath
import re
from collections.abc import Mapping
from typing import Any
from urllib.parse import unquote_plus

from s3grid.config import S3GridConfig
from s3grid.errors import ConflictError, S3GridError, ValidationError
from s3grid.layout import staging_prefix
from s3grid.promote import athena_execution, athena_query_state, promote, read_manifest
from s3grid.store import MasterStore

__all__ = ["handler"]

log = logging.getLogger(__name__)


def _trigger(event: Mapping[str, Any], prefix: str, marker: str) -> tuple[str, str | None, str]:
    """``(kind, query_id, why_ignored)``; ``why_ignored`` is empty when the event acts."""
    detail_type = event.get("detail-type", "")
    if detail_type == "Athena Query State Change":
        detail = event.get("detail", {})
        qid = detail.get("queryExecutionId")
        state = detail.get("currentState")
        if state != "SUCCEEDED":
            return "athena", qid, f"query {qid} is {state}, not SUCCEEDED"
        group, ours = detail.get("workgroupName"), os.environ.get("ATHENA_WORK_GROUP")
        if ours and group and group != ours:
            return "athena", qid, f"query {qid} ran in work group {group}, not {ours}"
        return "athena", qid, ""
    if detail_type == "Scheduled Event" or event.get("source") == "aws.events" or not event:
        return "schedule", None, ""  # EventBridge Scheduler sends {} by default
    records = event.get("Records") or []
    key = None
    if records and "s3" in records[0]:
        # S3 notifications URL-encode the key ("+" for a space)
        key = unquote_plus(str(records[0]["s3"]["object"]["key"]))
    elif detail_type == "Object Created" and event.get("source") == "aws.s3":
        key = str(event.get("detail", {}).get("object", {}).get("key", ""))  # EventBridge: plain
    if key is not None:
        if not key.startswith(prefix):
            return "s3", None, f"{key} is not under the staging prefix {prefix}"
        if posixpath.basename(key) != marker:
            return "s3", None, f"{key} is a part, not the marker {marker}: waiting for it"
        return "s3", None, ""
    return "unknown", None, "unrecognised event"


def _writes_to(execution: Mapping[str, Any], bucket: str, prefix: str) -> str:
    """Why the query is not a CTAS or UNLOAD into the staging prefix; empty if it is."""
    qid = execution.get("QueryExecutionId")
    sql = str(execution.get("Query", ""))
    if not re.match(r"\s*(CREATE\s+TABLE|UNLOAD)\b", sql, re.IGNORECASE):
        return f"query {qid} is not a CTAS or UNLOAD"
    target = re.escape(f"s3://{bucket}/{prefix.rstrip('/')}")
    if not re.search(f"'{target}/?'", sql):
        return f"query {qid} does not write to s3://{bucket}/{prefix}"
    return ""


def handler(event: Mapping[str, Any], context: Any = None) -> dict[str, Any]:
    """Lambda entry point (``s3grid.aws_lambda.handler``); returns a JSON-able summary."""
    cfg = S3GridConfig.from_env()
    prefix = staging_prefix(cfg, os.environ.get("S3GRID_STAGING_PREFIX"))
    marker = os.environ.get("S3GRID_TRIGGER_MARKER", "_SUCCESS")
    kind, query_id, ignored = _trigger(event, prefix, marker)
    summary: dict[str, Any] = {
        "trigger": kind,
        "query_id": query_id,
        "prefix": prefix,
        "master": cfg.uri,
    }
    if ignored:
        return {**summary, "status": "ignored", "reason": ignored}
    store = MasterStore(cfg)
    try:
        if query_id:
            ignored = _writes_to(athena_execution(cfg)(query_id), cfg.bucket, prefix)
            if ignored:
                return {**summary, "status": "ignored", "reason": ignored}
        manifest = read_manifest(store, prefix)
        if query_id and manifest is not None and manifest.query_id not in (None, query_id):
            reason = f"the staged output is from query {manifest.query_id}, not {query_id}"
            return {**summary, "status": "ignored", "reason": reason}
        qid = query_id or (manifest.query_id if manifest else None)
        note = f"automation: promoted {prefix}" + (f" from Athena query {qid}" if qid else "")
        done = promote(
            store,
            prefix,
            note=note,
            source="automation",
            query_state=None if query_id else athena_query_state(cfg),
        )
    except ConflictError as exc:
        log.warning("conflict, staging kept: %s", exc)
        return {
            **summary,
            "status": "conflict",
            "reason": str(exc),
            "current_version": exc.current_version,
        }
    except ValidationError as exc:
        status = "empty" if "No part files" in str(exc) else "invalid"
        return {**summary, "status": status, "reason": str(exc)}
    except S3GridError as exc:
        log.error("promotion failed, staging kept: %s", exc)
        return {**summary, "status": "error", "reason": str(exc)}
    res = done.save
    return {
        **summary,
        "status": "promoted",
        "rows": done.flatten.rows,
        "parts": len(done.flatten.parts),
        "base_inferred": done.base_inferred,
        "prev_version": res.prev_version,
        "new_version": res.new_version,
        "snapshot_key": res.snapshot_key,
        "audit_key": res.audit_key,
        "staging_objects_removed": done.staging_objects_removed,
        "incomplete": res.incomplete,
    }
