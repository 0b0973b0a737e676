"""Compression sections: selectors, the stage pipeline, weight conversion."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import torch

from specc.compiler import compile_graph
from specc.diagnostics import SpeccError
from specc.transforms import convert_weights
from targets import ROOT, python_module

BASE = """\
model net(d: int = 64) {
    input x: f32[B, d]
    h = relu(linear(x, 128))
    g = gelu(linear(h, 96))
    output logits = linear(g + linear(h, 96), 10)
}
"""


def spec(tmp_path: Path, stages: str) -> Path:
    path = tmp_path / "c.nnspec"
    path.write_text(BASE + "compress small = net {\n" + stages + "}\n")
    return path


def rewritten(tmp_path: Path, stages: str) -> list[str]:
    return sorted(p.layer for p in compile_graph(spec(tmp_path, stages), "small").plan if p.after != p.before)


@pytest.mark.parametrize("selector,layers", [
    ("on linear", ["g_linear", "h_linear", "logits", "logits_linear"]),
    ('on "h_linear"', ["h_linear"]),
    ('on "logits_*"', ["logits_linear"]),
    ('on "re:(h|g)_linear"', ["g_linear", "h_linear"]),
    ('on linear except "re:logits_.*"', ["g_linear", "h_linear", "logits"]),
    ("lowrank_keeps_dense", None),
    ("on linear where out_features >= 100", ["h_linear"]),
    ("on linear where in_features == 128 and out_features < 100", None),
])
def test_selectors(tmp_path, selector, layers):
    if selector == "lowrank_keeps_dense":  # rank 64 on 96->10 would not save: kept dense, and the plan says so
        plan = compile_graph(spec(tmp_path, '    lowrank(rank=64) on "logits"\n'), "small").plan
        assert [(p.layer, p.after, p.note.split(":")[0]) for p in plan] == [("logits", "linear", "kept as it is")]
        return
    if layers is None:  # `and` is not in the language: a clean syntax error, not a crash
        with pytest.raises(SpeccError):
            rewritten(tmp_path, f"    lowrank(rank=8) {selector}\n")
        return
    assert rewritten(tmp_path, f"    lowrank(rank=8) {selector}\n") == layers


@pytest.mark.parametrize("stage,code,message", [
    ('    lowrank(rank=8) on "nothing*"\n', "E0801", "this selector matches no layer"),
    ('    lowrank(rank=8) on linear except "zz"\n', "E0801", "this `except` selector matches no layer"),
    ("    lowrank(rank=8) on linear where out_features > 1000\n", "E0801", "no selected layer satisfies"),
    ('    lowrank(rank=8) on "h"\n', "E0802", "`lowrank` rewrites linear and lowrank_linear layers, but the selector matches only h (relu)"),
    ("    lowrank(rank=0) on linear\n", "E0302", "invalid `rank` for lowrank()"),
    ("    lowrnk(rank=8) on linear\n", "E0803", "unknown transform `lowrnk`"),
    ("    lowrank(rank=8) on linear where weird > 1\n", "E0202", "undefined name `weird`"),
    ('    lowrank(rank=8) on "re:(("\n', "E0804", "invalid regex"),
])
def test_selector_and_argument_errors(tmp_path, stage, code, message):
    with pytest.raises(SpeccError) as info:
        compile_graph(spec(tmp_path, stage), "small")
    assert info.value.code == code and message in info.value.message, info.value.render()
    assert info.value.span.line == 8  # the stage's line


def test_lowrank_conversion_is_the_truncated_svd(tmp_path):
    path = spec(tmp_path, '    lowrank(rank=8) on "h_linear"\n')
    base = compile_graph(path, "net")
    _, dense_model = python_module(base, "torch")
    # give h_linear an exactly rank-8 weight: the factorization must reproduce it
    with torch.no_grad():
        dense_model.h_linear.weight.copy_(torch.randn(128, 8) @ torch.randn(8, 64))
    small = compile_graph(path, "small")
    state = convert_weights(small, dense_model.state_dict())
    _, small_model = python_module(small, "torch")
    small_model.load_state_dict(state)
    x = torch.randn(5, 64)
    torch.testing.assert_close(small_model.eval()(x), dense_model.eval()(x), rtol=1e-4, atol=1e-4)


def test_lowrank_error_falls_as_rank_grows(tmp_path):
    errors = []
    for rank in (2, 8, 24):
        path = spec(tmp_path, f'    lowrank(rank={rank}) on "h_linear"\n')
        _, dense_model = python_module(compile_graph(path, "net"), "torch")
        small = compile_graph(path, "small")
        state = convert_weights(small, dense_model.state_dict())
        approx = state["h_linear.up.weight"] @ state["h_linear.down.weight"]
        errors.append(float((approx - dense_model.h_linear.weight).norm()))
    assert errors[0] > errors[1] > errors[2] > 0


def test_plan_and_compress_commands(tmp_path):
    path = ROOT / "specs" / "mlp_lowrank.nnspec"
    plan = subprocess.run([sys.executable, "-m", "specc.cli", "plan", str(path)], capture_output=True, text=True)
    assert plan.returncode == 0, plan.stderr
    assert "h_linear" in plan.stdout and "lowrank_linear" in plan.stdout and "logits" not in plan.stdout
    _, dense_model = python_module(compile_graph(ROOT / "specs" / "mlp.nnspec"), "torch")
    torch.save(dense_model.state_dict(), tmp_path / "dense.pt")
    out = tmp_path / "small.pt"
    result = subprocess.run([sys.executable, "-m", "specc.cli", "compress", str(path), "--weights",
                             str(tmp_path / "dense.pt"), "-o", str(out)], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    state = torch.load(out)
    assert state["h_linear.down.weight"].shape == (32, 784) and state["logits.weight"].shape == (10, 256)
    _, small_model = python_module(compile_graph(path), "torch")
    small_model.load_state_dict(state)  # strict: exactly the compressed model's keys


def test_plan_rejects_an_uncompressed_model():
    result = subprocess.run([sys.executable, "-m", "specc.cli", "plan", str(ROOT / "specs" / "mlp.nnspec")],
                            capture_output=True, text=True)
    assert result.returncode == 1 and "is not a compressed model" in result.stderr


def test_summary_shows_before_and_after_for_compressed_models():
    result = subprocess.run([sys.executable, "-m", "specc.cli", "summary", str(ROOT / "specs" / "mlp_int4.nnspec")],
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert "compressed from mlp: before -> after" in result.stdout
    assert "814,120 -> " in result.stdout  # the dense MLP's fp32 bytes, then the int4 model's
    ratio = float(result.stdout.split("weights: ")[1].split("x smaller")[0])
    assert ratio >= 4.0
