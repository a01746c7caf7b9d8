from __future__ import annotations

import re
from typing import Any

import pytest

from s3grid import ConfigError, S3GridConfig


def test_from_env_reads_seed_variables() -> None:
    env = {
        "S3_BUCKET": "lab-bucket",
        "S3_MASTER_KEY": "tables/tows.parquet",
        "S3_SNAPSHOT_PREFIX": "snaps/",
        "S3_AUDIT_PREFIX": "logs",
        "S3_FILE_FORMAT": "CSV",
        "S3_ARCHIVE_PREFIX": "old",
        "S3_ENDPOINT_URL": "http://127.0.0.1:9000",
        "AWS_PROFILE": "lab",
        "S3GRID_KEY_COLUMNS": "tow, net",
        "ATHENA_WORK_GROUP": "wg",
    }
    cfg = S3GridConfig.from_env(env)
    assert cfg.bucket == "lab-bucket"
    assert cfg.master_key == "tables/tows.parquet"
    assert cfg.snapshot_prefix == "snaps"
    assert cfg.audit_prefix == "logs"
    assert cfg.file_format == "csv"
    assert cfg.archive_prefix == "old"
    assert cfg.endpoint_url == "http://127.0.0.1:9000"
    assert cfg.profile == "lab"
    assert cfg.key_columns == ("tow", "net")
    assert cfg.athena_work_group == "wg"
    assert cfg.stem == "tows"
    assert cfg.ext == "parquet"


def test_defaults_and_boto_endpoint_variable() -> None:
    cfg = S3GridConfig.from_env({"S3_BUCKET": "b", "AWS_ENDPOINT_URL_S3": "http://x:1"})
    assert cfg.master_key == "data/master.parquet"
    assert cfg.snapshot_prefix == "snapshots"
    assert cfg.audit_prefix == "audit"
    assert cfg.archive_prefix == "archive/streamlit"
    assert cfg.file_format == "parquet"
    assert cfg.endpoint_url == "http://x:1"


def test_overrides_win_and_none_is_ignored() -> None:
    cfg = S3GridConfig.from_env({"S3_BUCKET": "b"}, bucket="c", master_key=None)
    assert cfg.bucket == "c"
    assert cfg.master_key == "data/master.parquet"


def test_missing_bucket_names_variable() -> None:
    with pytest.raises(ConfigError, match="S3_BUCKET"):
        S3GridConfig.from_env({})


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"file_format": "xlsx"}, "S3_FILE_FORMAT"),
        ({"master_key": "data/"}, "S3_MASTER_KEY"),
        ({"audit_prefix": "/"}, "audit_prefix"),
    ],
)
def test_invalid_values(kwargs: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        S3GridConfig(bucket="b", **kwargs)  # type: ignore[arg-type]


def test_frozen() -> None:
    cfg = S3GridConfig(bucket="b")
    with pytest.raises(AttributeError):
        cfg.bucket = "other"  # type: ignore[misc]


def test_import_reads_no_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    import importlib

    import s3grid.config

    monkeypatch.delenv("S3_BUCKET", raising=False)
    importlib.reload(s3grid.config)  # must not raise without S3_BUCKET


@pytest.mark.parametrize("value", [0, 5 * 1024**3 + 1])
def test_multipart_threshold_outside_what_s3_takes_is_refused(value: int) -> None:
    with pytest.raises(ConfigError, match="multipart_bytes"):
        S3GridConfig(bucket="b", multipart_bytes=value)
    with pytest.raises(ConfigError, match="multipart_bytes"):
        S3GridConfig.from_env({"S3_BUCKET": "b", "S3GRID_MULTIPART_BYTES": str(value)})


def test_the_multipart_threshold_comes_from_the_environment_too() -> None:
    env = {"S3_BUCKET": "b", "S3GRID_MULTIPART_BYTES": " 33554432 "}
    assert S3GridConfig.from_env(env).multipart_bytes == 32 * 1024**2
    assert S3GridConfig.from_env({"S3_BUCKET": "b"}).multipart_bytes is None
    with pytest.raises(ConfigError, match="S3GRID_MULTIPART_BYTES='32MB' is not a number"):
        S3GridConfig.from_env({"S3_BUCKET": "b", "S3GRID_MULTIPART_BYTES": "32MB"})


def test_multipart_by_default_only_on_aws(
    monkeypatch: pytest.MonkeyPatch, aws_env: None, moto_url: str
) -> None:
    from s3grid.s3 import S3Bucket

    monkeypatch.delenv("AWS_ENDPOINT_URL_S3", raising=False)
    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)
    aws = S3Bucket(S3GridConfig(bucket="b", region="us-east-1"))
    assert aws.on_aws and aws.multipart_threshold == 32 * 1024**2
    local = S3Bucket(S3GridConfig(bucket="b", endpoint_url="http://127.0.0.1:9000"))
    assert not local.on_aws
    assert local.multipart_threshold == 5 * 1024**3  # one conditional PUT up to S3's limit
    tuned = S3Bucket(local.cfg.with_(multipart_bytes=1024))
    assert tuned.multipart_threshold == 1024
    # A store reached through boto3's own variable, with no endpoint_url given, is no
    # AWS either: one PUT, no STS lookup, path-style requests (and it works)
    monkeypatch.setenv("AWS_ENDPOINT_URL_S3", moto_url)
    env_only = S3Bucket(S3GridConfig(bucket="b"))
    assert not env_only.on_aws and env_only.multipart_threshold == 5 * 1024**3
    assert env_only.client.meta.config.s3 == {"addressing_style": "path"}


def test_the_aws_identity_is_asked_of_sts_only_on_aws(
    monkeypatch: pytest.MonkeyPatch, master_store: Any, moto_url: str
) -> None:
    import boto3

    from s3grid import MasterStore

    asked: list[str] = []
    real = boto3.session.Session.client

    def client(self: Any, name: str, *args: Any, **kwargs: Any) -> Any:
        asked.append(name)
        return real(self, name, *args, **kwargs)

    monkeypatch.setattr(boto3.session.Session, "client", client)
    monkeypatch.setenv("AWS_ENDPOINT_URL_S3", moto_url)
    store = MasterStore(master_store.cfg.with_(endpoint_url=None))
    assert store.load().table.num_rows == 50  # reached through the variable
    assert store.aws_identity() is None
    assert "sts" not in asked


@pytest.mark.parametrize(
    "url", ["localhost:9000", "ftp://host", "http://", "http://127.0.0.1:port", "s3.amazonaws"]
)
def test_an_endpoint_that_is_not_a_url_is_a_config_error(url: str) -> None:
    with pytest.raises(ConfigError, match="S3_ENDPOINT_URL"):
        S3GridConfig(bucket="b", endpoint_url=url)
    with pytest.raises(ConfigError, match=re.escape(url)):
        S3GridConfig.from_env({"S3_BUCKET": "b", "S3_ENDPOINT_URL": url})


def test_a_blank_endpoint_means_none() -> None:
    assert S3GridConfig(bucket="b", endpoint_url="  ").endpoint_url is None
    assert S3GridConfig(bucket="b", endpoint_url=" http://h:9 ").endpoint_url == "http://h:9"


@pytest.mark.parametrize(
    ("given", "kept"),
    [("snappy", "snappy"), (" ZSTD ", "zstd"), ("zstd:3", "zstd:3"), ("gzip:09", "gzip:9")],
)
def test_a_compression_is_checked_and_kept(given: str, kept: str) -> None:
    assert S3GridConfig(bucket="b", compression=given).compression == kept
    env = {"S3_BUCKET": "b", "S3GRID_COMPRESSION": given}
    assert S3GridConfig.from_env(env).compression == kept


@pytest.mark.parametrize("bad", ["zip", "zstd:99", "snappy:1", "zstd:", "zstd:x", ""])
def test_a_compression_s3grid_does_not_write_is_refused(bad: str) -> None:
    with pytest.raises(ConfigError, match="S3GRID_COMPRESSION=.*use one of snappy"):
        S3GridConfig(bucket="b", compression=bad)


def test_the_commit_is_put_unless_copy_is_asked_for() -> None:
    assert S3GridConfig(bucket="b").commit == "put"
    assert S3GridConfig.from_env({"S3_BUCKET": "b", "S3GRID_COMMIT": " Copy "}).commit == "copy"
    with pytest.raises(ConfigError, match="S3GRID_COMMIT='stream'.*use put .* or copy"):
        S3GridConfig(bucket="b", commit="stream")
