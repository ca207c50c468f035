"""benches/fleet.py in smoke mode, adk-postgres only: four worker processes serving agent turns
routed at random, so every session is read by processes that did not write its last turn."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

FLEET = Path(__file__).resolve().parents[1] / "benches" / "fleet.py"


def test_fleet_quick_adk_postgres(pg_direct_url: str, tmp_path: Path) -> None:
    # pg_direct_url is the server's maintenance URL (never a pooler): the script creates and
    # drops a database of its own on it.
    out = tmp_path / "fleet.json"
    completed = subprocess.run(
        [sys.executable, str(FLEET), "--quick", "--peers", "adk-postgres",
         "--url", pg_direct_url, "--out", str(out)],
        capture_output=True, text=True, timeout=85,
    )  # fmt: skip
    assert completed.returncode == 0, completed.stderr[-4000:]
    report = json.loads(out.read_text())

    assert report["settings"]["processes"] == 4
    assert report["settings"]["quick"] is True
    assert list(report["peers"]) == ["adk-postgres"]
    peer = report["peers"]["adk-postgres"]
    assert peer["turns"] > 0 and peer["turns_per_s"] > 0
    assert peer["errors"] == 0, peer["rounds"][0]["error_samples"]
    assert peer["wrong_reads"] == 0, peer["rounds"][0]["wrong_read_samples"]
    assert peer["history_problems"] == 0, peer["rounds"][0]["history_problems"]
    (round_,) = peer["rounds"]
    assert len(round_["turns_per_worker"]) == 4
    assert all(n > 0 for n in round_["turns_per_worker"])  # every process served turns
    cache = peer["cache"]
    assert 0.0 <= cache["hit_rate"] <= 1.0
    assert cache["warm_reads"] + cache["cold_reads"] >= peer["turns"]
    assert "| adk-postgres |" in completed.stdout
