"""A real GCS emulator (``gcp-storage-emulator``) on 127.0.0.1 for tests of ``gs://`` datasets.

It runs as its own process, as a cloud bucket would: every read VisionLens makes goes over HTTP through gcsfs, and
the emulator logs one line per request, so a test can tell whether a read reached the bucket at all (a thumbnail
served from the local cache must not). Waits are short and explicit: a test that cannot reach the emulator fails
in seconds, never on gcsfs's or Google's 60 s timeouts.
"""

from __future__ import annotations

import re
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest

# The emulator logs each request as '"GET /storage/v1/b/... HTTP/1.1" 200 -'.
_REQUEST_LINE = re.compile(r'"(?:GET|POST|PUT|PATCH|DELETE) /[^"]*" \d{3}')
START_TIMEOUT_S = 15.0


@dataclass
class GcsEmulator:
    """A running emulator: its endpoint, its one bucket, and its request log."""

    endpoint: str
    bucket: str
    process: subprocess.Popen[bytes]
    log_path: Path

    def uri(self, *parts: str) -> str:
        return "gs://" + "/".join([self.bucket, *parts])

    def requests(self) -> list[str]:
        """Every request the emulator has answered so far, oldest first."""
        text = self.log_path.read_text(errors="replace") if self.log_path.exists() else ""
        return _REQUEST_LINE.findall(text)

    def upload(self, local: Path, *parts: str) -> str:
        """Copy a local folder (or file) to ``gs://bucket/parts...`` through gcsfs; returns that URI."""
        from visionlens import media

        target = self.uri(*parts)
        fs, path = media.fs_path(target)
        if local.is_dir():
            for f in sorted(p for p in local.rglob("*") if p.is_file()):
                fs.pipe_file(f"{path}/{f.relative_to(local).as_posix()}", f.read_bytes())
        else:
            fs.pipe_file(path, local.read_bytes())
        fs.invalidate_cache()
        return target


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _wait_healthy(endpoint: str, process: subprocess.Popen[bytes], log_path: Path) -> None:
    """Poll the emulator's health route (``GET /``) with a 1 s timeout per try until START_TIMEOUT_S has passed."""
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"gcp-storage-emulator exited ({process.returncode}): {log_path.read_text()[-2000:]}")
        try:
            with urllib.request.urlopen(endpoint + "/", timeout=1) as resp:
                if resp.status == 200:
                    return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(
        f"gcp-storage-emulator did not answer within {START_TIMEOUT_S} s: {log_path.read_text()[-2000:]}"
    )


def _stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=5)


@contextmanager
def gcs_emulator(workdir: Path, bucket: str = "vl-test") -> Iterator[GcsEmulator]:
    """Start an in-memory emulator with ``bucket`` on a free port, point ``gs://`` at it for this process
    (``STORAGE_EMULATOR_HOST`` and ``visionlens.media.configure_gcs``), and undo both and stop it afterwards."""
    pytest.importorskip("gcsfs")
    pytest.importorskip("gcp_storage_emulator")
    from visionlens import media

    workdir.mkdir(parents=True, exist_ok=True)
    port = _free_port()
    endpoint = f"http://127.0.0.1:{port}"
    log_path = workdir / "emulator.log"
    cmd = [sys.executable, "-m", "gcp_storage_emulator", "start", "--host", "127.0.0.1", "--port", str(port)]
    with open(log_path, "wb") as log:
        process = subprocess.Popen(
            [*cmd, "--in-memory", "--default-bucket", bucket], cwd=workdir, stdout=log, stderr=subprocess.STDOUT
        )
    try:
        _wait_healthy(endpoint, process, log_path)
        with pytest.MonkeyPatch.context() as mp:
            mp.setenv("STORAGE_EMULATOR_HOST", endpoint)
            assert media.configure_gcs() == endpoint
            try:
                yield GcsEmulator(endpoint, bucket, process, log_path)
            finally:
                mp.undo()
                media.configure_gcs()
                _clear_gcsfs_instances()
    finally:
        _stop(process)


def _clear_gcsfs_instances() -> None:
    """gcsfs caches one filesystem per set of options; drop those made for an emulator that is going away."""
    core = sys.modules.get("gcsfs.core")
    if core is not None:
        core.GCSFileSystem.clear_instance_cache()
