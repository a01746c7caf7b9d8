"""s3grid: edit a shared Parquet master in a versioned S3 bucket, safely, from JupyterLab.

Every change goes through one locked save: an atomic conditional PUT on the master, an
immutable snapshot of exactly the committed version, and a one-line JSON audit record.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from s3grid.bulk import BulkPreview, apply_preview, bulk_edit, export_csv, preview_bulk_edit
from s3grid.config import S3GridConfig
from s3grid.diff import CellChange, ChangeCounts, TableDiff, diff_tables
from s3grid.errors import (
    AccessDeniedError,
    AthenaQueryError,
    ConfigError,
    ConflictError,
    LostUpdateError,
    MasterFormatError,
    MasterNotFoundError,
    NotFoundError,
    QueryError,
    S3GridError,
    S3RequestError,
    SchemaError,
    SQLError,
    StoreUnavailableError,
    ValidationError,
    VersioningError,
)
from s3grid.model import Master, Repair, SaveResult, StraySnapshot, VersionInfo
from s3grid.store import MasterStore

if TYPE_CHECKING:
    from s3grid.editor import Editor

__version__ = "0.1.0"


def __getattr__(name: str) -> Any:
    # The widget pulls in ipywidgets/ipydatagrid; import it only when asked, so
    # `import s3grid` stays light for the CLI and for AWS Lambda.
    if name == "Editor":
        from s3grid.editor import Editor

        return Editor
    raise AttributeError(f"module 's3grid' has no attribute {name!r}")


__all__ = [
    "AccessDeniedError",
    "AthenaQueryError",
    "BulkPreview",
    "CellChange",
    "ChangeCounts",
    "ConfigError",
    "ConflictError",
    "Editor",
    "LostUpdateError",
    "Master",
    "MasterFormatError",
    "MasterNotFoundError",
    "MasterStore",
    "NotFoundError",
    "QueryError",
    "Repair",
    "S3GridConfig",
    "S3GridError",
    "S3RequestError",
    "SQLError",
    "SaveResult",
    "SchemaError",
    "StoreUnavailableError",
    "StraySnapshot",
    "TableDiff",
    "ValidationError",
    "VersionInfo",
    "VersioningError",
    "apply_preview",
    "bulk_edit",
    "diff_tables",
    "export_csv",
    "preview_bulk_edit",
]
