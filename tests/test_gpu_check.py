"""benchmarks/gpu_check.sh: it lists its checks, and where no CUDA device is visible it runs none, says so and
exits 0, leaving RESULTS.md as it was."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "benchmarks" / "gpu_check.sh"


def test_list_names_every_check_and_its_command():
    listed = subprocess.run(["bash", str(SCRIPT), "--list"], capture_output=True, text=True, check=True, timeout=60)
    lines = listed.stdout.splitlines()
    assert len(lines) == 8
    assert lines[0].startswith("CUDA tests") and "python3 -m pytest" in lines[0]
    assert any("trainer_overhead.py --device cuda --fast" in line for line in lines)
    assert any(line.startswith("2 GPUs against 1") and "multi_gpu.py" in line for line in lines)


def test_without_cuda_it_runs_nothing_and_exits_0():
    results = ROOT / "benchmarks" / "RESULTS.md"
    before = results.read_bytes()
    ran = subprocess.run(["bash", str(SCRIPT)], capture_output=True, text=True, timeout=120,
                         env={**os.environ, "CUDA_VISIBLE_DEVICES": ""})
    assert ran.returncode == 0, ran.stderr
    assert "no CUDA device is visible" in ran.stdout and "none of the 8 checks could run" in ran.stdout
    assert results.read_bytes() == before


def test_a_bad_option_is_refused():
    ran = subprocess.run(["bash", str(SCRIPT), "--lsit"], capture_output=True, text=True, timeout=60)
    assert ran.returncode == 2 and ran.stderr.startswith("usage:")
