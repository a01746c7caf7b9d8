"""Shared fixtures: a local S3 server, a fresh versioned bucket per test.

The store is moto (a mock with hooks for faults) unless a test module is marked
``both_stores``: its tests then run against moto *and* a real SeaweedFS S3 gateway
(``[moto]`` / ``[seaweedfs]`` in their ids). A test in such a module that needs moto's
hooks is marked ``moto_only`` with the reason.
"""

from __future__ import annotations

import itertools
import urllib.request
from collections.abc import Iterator
from typing import Any

import boto3
import pyarrow as pa
import pytest
from moto.server import ThreadedMotoServer

from s3grid import MasterStore, S3GridConfig
from s3grid.sample import sample_master

_bucket_numbers = itertools.count()

_ENV_TO_CLEAR = (
    "AWS_PROFILE",
    "AWS_ENDPOINT_URL",
    "AWS_ENDPOINT_URL_S3",
    "AWS_SESSION_TOKEN",
    "S3_BUCKET",
    "S3_MASTER_KEY",
    "S3_SNAPSHOT_PREFIX",
    "S3_AUDIT_PREFIX",
    "S3_FILE_FORMAT",
    "S3_ARCHIVE_PREFIX",
    "S3_ENDPOINT_URL",
    "S3GRID_KEY_COLUMNS",
)


def _complete_honours_if_match(monkeypatch: pytest.MonkeyPatch) -> None:
    """Make moto check ``If-Match`` on CompleteMultipartUpload, as S3 does.

    moto 5.2.5 checks only ``If-None-Match`` there and would let a stale multipart save
    overwrite the master. S3 answers 412 PreconditionFailed (404 if the key is gone);
    this adds exactly that, before moto's own handling. It emulates the service; the
    client side (that the complete carries ``IfMatch``) is asserted separately.
    """
    from moto.s3.exceptions import MissingKey, PreconditionFailed
    from moto.s3.responses import S3Response

    original = S3Response._key_response_post

    def post(
        self: Any, request: Any, body: bytes, bucket_name: str, query: Any, key_name: str
    ) -> Any:
        if_match = self.headers.get("If-Match")
        if query.get("uploadId") and if_match:
            current = self.backend.get_object(bucket_name, key_name)
            if current is None:
                raise MissingKey(key=key_name)
            if current.etag.strip('"') != if_match.strip('"'):
                raise PreconditionFailed("If-Match")
        return original(self, request, body, bucket_name, query, key_name)

    monkeypatch.setattr(S3Response, "_key_response_post", post)


def _copy_honours_conditions(monkeypatch: pytest.MonkeyPatch) -> None:
    """Make moto check ``If-Match`` / ``If-None-Match`` on CopyObject's destination, as S3
    does.

    moto 5.2.5 ignores both on a copy, so a stale streamed save (``commit="copy"``) would
    overwrite the master. S3 documents conditional copies (412 PreconditionFailed when
    the destination's ETag differs or, for ``If-None-Match: *``, when it exists; 404 when
    ``If-Match`` names a missing key); this adds exactly that, before moto's own handling.
    Like moto's conditional PUT, the check is not atomic with the copy (check-store
    reports moto unsafe either way).
    """
    from moto.s3.exceptions import MissingKey, PreconditionFailed
    from moto.s3.responses import S3Response

    original = S3Response.copy_object

    def copy_object(self: Any) -> Any:
        if_match = self.headers.get("If-Match")
        if_none_match = self.headers.get("If-None-Match")
        if if_match or if_none_match:
            current = self.backend.get_object(self.bucket_name, self.parse_key_name())
            if if_match and current is None:
                raise MissingKey(key=self.parse_key_name())
            if if_match and current.etag.strip('"') != if_match.strip('"'):
                raise PreconditionFailed("If-Match")
            if if_none_match == "*" and current is not None:
                raise PreconditionFailed("If-None-Match")
        return original(self)

    monkeypatch.setattr(S3Response, "copy_object", copy_object)


@pytest.fixture(scope="session")
def moto_url() -> Iterator[str]:
    """One moto S3 server on 127.0.0.1 for the whole session."""
    with pytest.MonkeyPatch.context() as patch:
        _complete_honours_if_match(patch)
        _copy_honours_conditions(patch)
        yield from _serve_moto()


def _serve_moto() -> Iterator[str]:
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    yield f"http://{host}:{port}"
    server.stop()


@pytest.fixture
def aws_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Any) -> None:
    """Fake credentials only: nothing in a test can reach real AWS."""
    for name in _ENV_TO_CLEAR:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "aws-config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "aws-credentials"))


STORES = ("moto", "seaweedfs")


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    both = metafunc.definition.get_closest_marker("both_stores")
    only = metafunc.definition.get_closest_marker("moto_only")
    if both and not only and "store_kind" in metafunc.fixturenames:
        # the SeaweedFS cases carry a mark, so a quick loop can leave them out
        kinds = [pytest.param(k, marks=[getattr(pytest.mark, k)]) for k in STORES]
        metafunc.parametrize("store_kind", kinds, indirect=True)


@pytest.fixture
def store_kind(request: pytest.FixtureRequest) -> str:
    """Which S3 the test runs against: moto unless parametrized (``both_stores``)."""
    return str(getattr(request, "param", "moto"))


@pytest.fixture(scope="session")
def seaweed_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """One SeaweedFS S3 gateway on 127.0.0.1 for the whole session, started on first use,
    stopped by its PID with its data and sockets removed."""
    from s3grid.seaweed import SeaweedServer

    # its one identity is aws_env's fake credentials ("testing"), which the tests sign with
    server = SeaweedServer(tmp_path_factory.mktemp("seaweedfs"), remove_data=True)
    yield server.start()
    server.stop(grace=0)  # its data goes with it: no need to wait for a clean shutdown


@pytest.fixture
def endpoint(store_kind: str, request: pytest.FixtureRequest, aws_env: None) -> str:
    """The S3 endpoint, with nothing in it from an earlier test (moto is reset; on
    SeaweedFS each test has buckets of its own)."""
    if store_kind == "seaweedfs":
        return str(request.getfixturevalue("seaweed_url"))
    moto_url = str(request.getfixturevalue("moto_url"))
    req = urllib.request.Request(f"{moto_url}/moto-api/reset", method="POST")
    with urllib.request.urlopen(req, timeout=10):
        pass
    return moto_url


@pytest.fixture
def s3(endpoint: str) -> Any:
    """A raw boto3 client on the local endpoint, for setting up and inspecting."""
    return boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1")


@pytest.fixture
def bucket(s3: Any, store_kind: str) -> Iterator[str]:
    """A new versioned bucket."""
    name = f"s3grid-test-{next(_bucket_numbers)}"
    s3.create_bucket(Bucket=name)
    s3.put_bucket_versioning(Bucket=name, VersioningConfiguration={"Status": "Enabled"})
    yield name
    if store_kind == "seaweedfs":  # SeaweedFS keeps a volume per bucket: free it
        s3.delete_bucket(Bucket=name)  # with its objects (weed's allowDeleteBucketNotEmpty)


@pytest.fixture
def cfg(endpoint: str, bucket: str) -> S3GridConfig:
    return S3GridConfig(bucket=bucket, endpoint_url=endpoint, max_attempts=2)


@pytest.fixture
def store(cfg: S3GridConfig) -> MasterStore:
    return MasterStore(cfg)


@pytest.fixture
def table() -> pa.Table:
    return sample_master(50)


@pytest.fixture
def master_store(store: MasterStore, table: pa.Table) -> MasterStore:
    """A store whose master exists (created with source=init)."""
    store.create(table, note="initial upload")
    return store


@pytest.fixture
def cut_proxy(endpoint: str) -> Iterator[Any]:
    """A proxy in front of moto that can cut chosen answers short (tests/support/cutproxy)."""
    from tests.support.cutproxy import CutProxy

    proxy = CutProxy(endpoint)
    yield proxy
    proxy.close()


@pytest.fixture
def athena_url(endpoint: str, request: pytest.FixtureRequest) -> str:
    """Where Athena answers: moto's Athena (played by tests/support/athena.py) on either
    store; the S3 the queries read and write is ``endpoint``'s."""
    return str(request.getfixturevalue("moto_url"))


@pytest.fixture
def engine(athena_url: str, bucket: str) -> Any:
    """An AthenaEngine on moto's Athena (tests/test_athena.py's FakeAthena runs its CTAS)."""
    from s3grid.athena import AthenaEngine

    return AthenaEngine(
        work_group="primary",
        s3_staging_dir=f"s3://{bucket}/athena-results/",
        database="lab",
        region="us-east-1",
        endpoint_url=athena_url,
        progress=False,
        poll_interval=0.01,
    )


@pytest.fixture(autouse=True)
def _editors_do_not_watch(monkeypatch: pytest.MonkeyPatch) -> None:
    """Editors made by tests look at the master only when a test asks (``watch=``):
    a test makes many, and widgets outlive it, each with a 30 s watch of a bucket that
    is gone."""
    monkeypatch.setattr("s3grid.editor.WATCH_SECONDS", 0.0)


@pytest.fixture
def editor(master_store: MasterStore) -> Any:
    """An editor of the 50-row sample master: 20-row pages, ``vessel`` read-only."""
    from s3grid.editor import Editor

    return Editor(master_store, read_only_columns=["vessel"], page_size=20)


@pytest.fixture
def fe(editor: Any) -> Any:
    """The browser's side of ``editor``'s grid (tests/support/frontend.py)."""
    from tests.support.frontend import FrontEnd

    return FrontEnd(editor)
