"""Snapshot tests of what `specc check` prints for bad specs.

Each `tests/diagnostics/NAME.nnspec` is a small mistake; `NAME.expected` holds
the exact stderr of `specc check NAME.nnspec` run inside that folder (so paths
in messages are bare file names). To rewrite the snapshots after a deliberate
change to a message, run

    SPECC_UPDATE_SNAPSHOTS=1 pytest tests/test_diagnostics.py

and review the diff of the `.expected` files like code.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent / "diagnostics"
CASES = sorted(HERE.glob("*.nnspec"))
UPDATE = os.environ.get("SPECC_UPDATE_SNAPSHOTS") == "1"


def check(spec: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "specc.cli", "check", spec.name], cwd=spec.parent,
                          capture_output=True, text=True)


def test_there_are_enough_cases():
    assert len(CASES) >= 18


@pytest.mark.parametrize("spec", CASES, ids=[c.stem for c in CASES])
def test_diagnostic_snapshot(spec: Path):
    result = check(spec)
    assert "Traceback" not in result.stderr
    assert "internal compiler error" not in result.stderr
    assert result.returncode == 1, result.stderr
    assert result.stdout == ""
    expected = spec.with_suffix(".expected")
    if UPDATE:
        expected.write_text(result.stderr)
        return
    assert expected.is_file(), f"no snapshot {expected.name}; run with SPECC_UPDATE_SNAPSHOTS=1 to create it"
    assert result.stderr == expected.read_text()


def test_every_snapshot_has_a_spec():
    orphans = sorted(p.name for p in HERE.glob("*.expected") if not p.with_suffix(".nnspec").is_file())
    assert orphans == []
