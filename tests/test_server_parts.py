"""The server's parts on their own: the job registry (progress, failure, cancel), the allowed roots, the owner
record, and a cancelled ingest leaving the database as it was."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from visionlens.config import Settings
from visionlens.errors import JobCancelled, NotAllowedError, VisionLensError
from visionlens.server.jobs import JobRegistry
from visionlens.server.owner import live_owner, read_owner, record_path, write_owner
from visionlens.server.roots import allowed_roots, check_allowed

# --- jobs ----------------------------------------------------------------------------------------------------------


def _finished(reg: JobRegistry, job_id: str, timeout: float = 20):
    job = reg.wait(job_id, timeout)
    assert job is not None and not job.active, job
    return job


def test_a_job_reports_progress_and_its_result():
    reg = JobRegistry()
    seen = threading.Event()

    def work(progress):
        for i in range(5):
            progress("count", i + 1, 5)
        seen.set()
        return {"answer": 42}

    job = reg.submit("demo", "count to five", work, dataset="d", user="ann")
    job = _finished(reg, job.id)
    assert job.state == "done" and job.result == {"answer": 42}
    doc = job.to_json()
    assert doc["steps"] == {"count": {"done": 5, "total": 5}} and doc["user"] == "ann" and doc["dataset"] == "d"
    assert reg.get(job.id) is job and job in reg.list()


def test_a_failing_job_keeps_its_message_and_the_registry_goes_on():
    reg = JobRegistry()

    def ours(progress):
        raise VisionLensError("annotations.json:3: bad box")

    def bug(progress):
        return 1 / 0

    a, b = reg.submit("x", "ours", ours), reg.submit("x", "bug", bug)
    assert _finished(reg, a.id).error == "annotations.json:3: bad box"
    assert _finished(reg, b.id).error.startswith("ZeroDivisionError")
    assert _finished(reg, reg.submit("x", "fine", lambda p: 1).id).state == "done"


def test_cancel_stops_a_running_job_at_its_next_report_and_a_queued_one_before_it_starts():
    reg = JobRegistry()
    started, steps = threading.Event(), []

    def slow(progress):
        started.set()
        for i in range(10_000):
            progress("step", i, 10_000)
            steps.append(i)
            time.sleep(0.005)
        return "finished"

    job = reg.submit("slow", "slow", slow)
    assert started.wait(10)
    assert job.cancel() is True
    job = _finished(reg, job.id)
    assert job.state == "cancelled" and job.result is None and len(steps) < 10_000
    assert job.cancel() is False  # finished: nothing to cancel

    from visionlens.server.jobs import Job

    queued = Job(kind="k", title="never")
    assert queued.cancel() and queued.state == "cancelled"
    ran = []
    reg._run(queued, lambda p: ran.append(1))
    assert not ran


def test_track_records_outside_work_and_lets_errors_through():
    reg = JobRegistry()
    with reg.track("ingest", "ingest 'a'", "a", user="bob") as job:
        job.report("read", 1, 2)
        assert reg.get(job.id).state == "running"
    assert job.state == "done"
    with pytest.raises(JobCancelled):
        with reg.track("ingest", "ingest 'b'") as job:
            job.cancel()
            job.report("read", 1, 2)
    assert job.state == "cancelled"


def test_a_cancelled_ingest_leaves_the_database_as_it_was(store, tmp_path):
    from tests.factories import simple_coco
    from visionlens.server import operations as ops

    path = simple_coco(tmp_path / "c")
    reg = JobRegistry()
    before = ops.list_datasets(store)

    def work(progress):
        def report(step, done, total):
            if step == "write database":
                job.cancel()  # the user's click arrives as the write is about to start
            progress(step, done, total)

        return ops.ingest(store, str(path), "cancelled", progress=report)

    job = reg.submit("ingest", "ingest", work)
    job = _finished(reg, job.id)
    assert job.state == "cancelled"
    assert ops.list_datasets(store) == before and not store.has_dataset("cancelled")


# --- allowed roots -------------------------------------------------------------------------------------------------


def test_allowed_roots_default_to_home_and_demo(tmp_path):
    s = Settings(home=tmp_path / "vl")
    assert allowed_roots(s) == [str(Path.home().resolve()), str((tmp_path / "vl" / "demo").resolve())]


def test_allowed_roots_parse_paths_and_uris(tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    s = Settings(home=tmp_path, allowed_roots=f"{a}:{b},gs://bucket/team")
    assert allowed_roots(s) == [str(a.resolve()), str(b.resolve()), "gs://bucket/team/"]
    assert check_allowed(a / "x" / "y.json", settings=s) == str((a / "x" / "y.json").resolve())
    assert check_allowed("gs://bucket/team/coco", settings=s) == "gs://bucket/team/coco"
    for bad in [tmp_path / "c", a / ".." / "c", "gs://bucket/teammate", "gs://other/team", "/etc/passwd"]:
        with pytest.raises(NotAllowedError, match="VISIONLENS_ALLOWED_ROOTS"):
            check_allowed(bad, "dataset path", settings=s)


def test_a_link_out_of_a_root_is_refused(tmp_path):
    root, outside = tmp_path / "root", tmp_path / "outside"
    root.mkdir()
    outside.mkdir()
    (root / "escape").symlink_to(outside, target_is_directory=True)
    s = Settings(home=tmp_path, allowed_roots=str(root))
    with pytest.raises(NotAllowedError, match="escape"):
        check_allowed(root / "escape" / "annotations.json", settings=s)


# --- the owner record ----------------------------------------------------------------------------------------------


def test_owner_record_round_trip_and_mode(tmp_path):
    db = tmp_path / "visionlens.duckdb"
    owner = write_owner(db, "http://127.0.0.1:5006", "t" * 43)
    path = record_path(db)
    assert path == tmp_path / "visionlens.duckdb.owner.json"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert read_owner(db) == owner
    assert live_owner(db) is None and path.exists()  # this process's own record is not "another owner"


def test_unreadable_or_dead_records_are_removed(tmp_path):
    db = tmp_path / "visionlens.duckdb"
    record_path(db).write_text("{not json")
    assert read_owner(db) is None and live_owner(db) is None and not record_path(db).exists()
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    write_owner(db, "http://127.0.0.1:9", "t" * 43)
    text = record_path(db).read_text().replace(f'"pid": {os.getpid()}', f'"pid": {dead.pid}')
    record_path(db).write_text(text)
    assert live_owner(db) is None and not record_path(db).exists()


def test_a_live_process_that_does_not_answer_is_not_an_owner(tmp_path):
    """A reused pid (or a hung server) is not trusted: the health route must answer with the token."""
    db = tmp_path / "visionlens.duckdb"
    other = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        write_owner(db, "http://127.0.0.1:9", "t" * 43)
        text = record_path(db).read_text().replace(f'"pid": {os.getpid()}', f'"pid": {other.pid}')
        record_path(db).write_text(text)
        assert live_owner(db) is None
    finally:
        other.kill()
        other.wait()
