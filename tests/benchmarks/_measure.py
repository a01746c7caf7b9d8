"""Measuring helpers shared by the benchmark scripts (imported as a sibling module)."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import threading
import time
from typing import Any


class PeakRss:
    """Peak resident memory of this process, sampled every 2 ms."""

    def __init__(self) -> None:
        self.page = os.sysconf("SC_PAGE_SIZE")
        self.base = self.peak = self.rss()
        self.running = True
        self.thread = threading.Thread(target=self.run, daemon=True)
        self.thread.start()

    def rss(self) -> int:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * self.page

    def run(self) -> None:
        while self.running:
            self.peak = max(self.peak, self.rss())
            time.sleep(0.002)

    def stop(self) -> float:
        self.running = False
        self.thread.join()
        return (max(self.peak, self.rss()) - self.base) / 1e6


def cpu_seconds(pid: int) -> float:
    """User + system CPU time process ``pid`` has used so far, all its threads (Linux)."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def start_moto_process() -> tuple[subprocess.Popen[bytes], str]:
    """moto's S3 server in a child process on 127.0.0.1; returns it and its endpoint."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    for _ in range(200):
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            break
        except OSError:
            time.sleep(0.05)
    return proc, f"http://127.0.0.1:{port}"


def start_store(kind: str) -> tuple[Any, str]:
    """A local S3 endpoint of ``kind`` (``moto`` in a child process, or ``seaweedfs``):
    something with ``.terminate()``/``.wait()`` and the server's ``.pid``, and its URL.
    Sets the credentials it takes in this process's environment (inherited by child
    processes)."""
    os.environ["AWS_ACCESS_KEY_ID"] = os.environ["AWS_SECRET_ACCESS_KEY"] = "testing"
    os.environ["AWS_DEFAULT_REGION"] = "us-east-1"
    if kind == "moto":
        return start_moto_process()
    import tempfile
    from pathlib import Path

    from s3grid.seaweed import SeaweedServer

    home = Path(tempfile.mkdtemp(prefix="bench-weed-"))
    server = SeaweedServer(home / "weed", remove_data=True)
    url = server.start()
    assert server.proc is not None

    class Stop:
        pid = server.proc.pid  # weed runs as one process

        def terminate(self) -> None:
            server.stop(grace=0)
            shutil.rmtree(home, ignore_errors=True)  # what stop() left: its empty home

        def wait(self) -> None:
            pass

    return Stop(), url
