"""s3grid: edit a shared Parquet master in a versioned S3 bucket, safely, from JupyterLab.

Every change goes through one locked save: an atomic conditional PUT on the master, an
immutable snapshot of exactly the committed version, and a one-line JSON audit record.
"""

from __future__ import annotations

from s3grid.config import S3GridConfig
from s3grid.diff import CellChange, ChangeCounts, TableDiff, diff_tables
from s3grid.errors import (
    AccessDeniedError,
    ConfigError,
    ConflictError,
    MasterFormatError,
    MasterNotFoundError,
    S3GridError,
    SchemaError,
    StoreUnavailableError,
    ValidationError,
)
from s3grid.store import Master, MasterStore, Repair, SaveResult, VersionInfo

__version__ = "0.1.0"

__all__ = [
    "AccessDeniedError",
    "CellChange",
    "ChangeCounts",
    "ConfigError",
    "ConflictError",
    "Master",
    "MasterFormatError",
    "MasterNotFoundError",
    "MasterStore",
    "Repair",
    "S3GridConfig",
    "S3GridError",
    "SaveResult",
    "SchemaError",
    "StoreUnavailableError",
    "TableDiff",
    "ValidationError",
    "VersionInfo",
    "diff_tables",
]
