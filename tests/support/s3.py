"""Inspect the local S3: every object version, the keys under a prefix."""

from __future__ import annotations

from typing import Any


def all_objects(s3: Any, bucket: str) -> list[tuple[str, str]]:
    """Every (key, version id) in the bucket, delete markers included."""
    out = []
    for page in s3.get_paginator("list_object_versions").paginate(Bucket=bucket):
        for v in page.get("Versions", []) + page.get("DeleteMarkers", []):
            out.append((v["Key"], v["VersionId"]))
    return sorted(out)


def keys_under(s3: Any, bucket: str, prefix: str) -> list[str]:
    resp = s3.list_objects_v2(Bucket=bucket, Prefix=prefix)
    return sorted(o["Key"] for o in resp.get("Contents", []))
