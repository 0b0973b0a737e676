"""The README's examples stay true."""

from __future__ import annotations

import re
import subprocess
import sys

from targets import ROOT

README = (ROOT / "README.md").read_text()


def _block_after(heading: str) -> str:
    section = README.split(heading, 1)[1]
    return re.search(r"```\n(.*?)```", section, re.S).group(1)


def test_language_example_compiles(tmp_path):
    spec = tmp_path / "example.nnspec"
    spec.write_text(_block_after("## The language by example"))
    result = subprocess.run([sys.executable, "-m", "specc.cli", "check", str(spec)], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert "-> (y: f32[B, T, 64], h: f32[B, T, 6]): ok" in result.stdout


def test_blocks_example_compiles(tmp_path):
    section = README.split("### Blocks, repetition, imports", 1)[1]
    blocks, encoder = re.findall(r"```\n(.*?)```", section, re.S)[:2]
    (tmp_path / "blocks.nnspec").write_text(blocks)
    (tmp_path / "encoder.nnspec").write_text(encoder)
    result = subprocess.run([sys.executable, "-m", "specc.cli", "check", str(tmp_path / "encoder.nnspec")],
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert "-> (y: f32[B, T, 64], u: f32[B, T, 4], v: f32[B, T, 64]): ok" in result.stdout


def test_error_example_is_what_specc_prints(tmp_path):
    shown = _block_after("A mistake is reported")
    spec = tmp_path / "bad.nnspec"
    spec.write_text("model bad() {\n    input x: f32[B, 784]\n    h = relu(linear(x, 256))\n"
                    "    y = linear(h, 10)\n    output z = h + y\n}\n")
    result = subprocess.run([sys.executable, "-m", "specc.cli", "check", "bad.nnspec"], capture_output=True,
                            text=True, cwd=tmp_path)
    assert result.returncode == 1
    assert result.stderr.strip() == shown.split("\n", 1)[1].strip()


def test_readme_test_command_is_what_ci_runs():
    ci = (ROOT / ".ci" / "run").read_text().strip().splitlines()[-1]
    assert ci in README
