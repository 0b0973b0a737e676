"""The example scripts run (a few steps each), so they cannot rot."""

from __future__ import annotations

import ast
import subprocess
import sys

from targets import ROOT


def run_example(name: str, *args: str) -> str:
    result = subprocess.run([sys.executable, str(ROOT / "examples" / name), *args], capture_output=True, text=True,
                            timeout=600)
    assert result.returncode == 0, result.stderr
    return result.stdout


def test_train_cdgm_reports_zero_violations_with_the_layer():
    out = run_example("train_cdgm.py", "--steps", "4")
    lines = [line for line in out.splitlines() if "rows violating" in line]
    assert len(lines) == 2
    assert all("with it   0.0%" in line for line in lines), out


def test_train_mdbm_runs_and_learns():
    out = run_example("train_mdbm.py", "--steps", "3")
    before, after = (ast.literal_eval(line.split(":", 1)[1].strip()) for line in out.splitlines()
                     if line.startswith(("before training:", "after training:")))
    assert set(before) == set(after) >= {"accuracy (whole image)", "completion (bottom half pixels right)"}
    assert after["accuracy (whole image)"] > before["accuracy (whole image)"]
