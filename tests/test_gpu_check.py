"""bench/gpu_check.py cannot rot while no GPU is lent: its plan builds and validates on the CPU, and `--smoke` runs
both of its code paths (plain TRL + PEFT, the engine on Unsloth) on a tiny model here."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def run(*args: str, timeout: int = 600) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(ROOT / "bench" / "gpu_check.py"), *args], capture_output=True,
                          text=True, timeout=timeout, cwd=str(ROOT))


def test_dry_run_builds_the_half_billion_parameter_config_and_valid_engine_specs():
    proc = run("--dry-run")
    assert proc.returncode == 0, proc.stderr[-2000:]
    out = proc.stdout
    params = float(out.split("random Llama, ")[1].split(" B")[0])
    assert 0.4 <= params <= 0.6
    assert "engine: backend unsloth, load_in_4bit False, valid" in out
    assert "engine-4bit: backend unsloth, load_in_4bit True, valid" in out
    assert "dry run: nothing run" in out


def test_unknown_variant_is_refused():
    proc = run("--dry-run", "--variants", "plain,fast")
    assert proc.returncode != 0 and "unknown variant 'fast'" in proc.stderr


def test_smoke_runs_plain_and_engine_and_prints_their_ratio(tmp_path):
    proc = run("--smoke", "--steps", "2", "--warmup", "1", "--completion-tokens", "4", "--variants", "plain,engine",
               "--model-dir", str(tmp_path / "model"))
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    rows = {line.split()[0]: line.split() for line in proc.stdout.splitlines()
            if line.startswith(("plain ", "engine "))}
    assert set(rows) == {"plain", "engine"}, proc.stdout
    assert rows["plain"][2] == "1.00" and float(rows["engine"][2]) > 0  # the engine's ratio to plain
    assert "failed" not in proc.stdout
