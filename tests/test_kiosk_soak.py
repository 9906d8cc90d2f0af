"""A short soak through the command line (`convscope --kiosk --soak 0.5 --report OUT.json
--headless`): attract mode and a synthetic visitor for half a minute, a report with every field,
and no shared-memory segment left behind.  The 60-minute run for the record is in docs/KIOSK.md."""

import json
import subprocess
import sys

import pytest

pytestmark = [pytest.mark.gl, pytest.mark.slow]


def test_short_soak_reports_every_field_and_leaks_nothing(tmp_path):
    report = tmp_path / "soak.json"
    proc = subprocess.run(
        [sys.executable, "-m", "convscope.scenes.cli", "--kiosk", "--soak", "0.5", "--report", str(report),
         "--headless", "--width", "800", "--height", "500"],
        capture_output=True, text=True, timeout=180,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert "soak 0.50 min" in proc.stdout
    r = json.loads(report.read_text())
    assert r["mode"] == "headless" and r["minutes"] == 0.5 and r["elapsed_s"] >= 30.0
    assert len(r["frame_ms"]) == 4 and r["bucket_s"] == 7.5
    for bucket in r["frame_ms"]:
        assert bucket["frames"] > 0 and 0 < bucket["p50"] <= bucket["p99"] <= bucket["max"], bucket
    assert r["frames"] == sum(b["frames"] for b in r["frame_ms"])
    for when in ("start", "after_warmup", "end"):
        for proc_name in ("render", "worker"):
            assert r["rss_kb"][when][proc_name] > 10_000, (when, proc_name)
    assert set(r["rss_growth_after_warmup_pct"]) == {"render", "worker"}
    assert r["worker_restarts"] == 0 and len(r["worker_pids"]) == 1
    assert r["sessions"] >= 1 and r["visitor_actions"]["digit"] >= 1, r["visitor_actions"]
    assert r["resets"] >= 1 and r["attract_digits"] >= 1
    assert "shm_segments_start" in r and "shm_segments_end" in r
    assert r["shm_leaked"] == [], r["shm_leaked"]  # other processes' segments may come and go meanwhile
