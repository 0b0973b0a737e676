"""The command line, end to end in subprocesses: outputs, exit codes, determinism."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from targets import ROOT, spec_models

MLP = ROOT / "specs" / "mlp.nnspec"


def specc(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "specc.cli", *args], capture_output=True, text=True, cwd=cwd)


_HASH_ALL = """
import hashlib, sys
sys.path.insert(0, sys.argv[1])
from specc.codegen import backends
from targets import compile_spec, spec_models
for spec, model in spec_models():
    for target in ("torch", "triton", "onnx"):
        data = backends()[target].emit(compile_spec(spec, model)).data
        print(spec.name, model, target, hashlib.sha256(data).hexdigest())
"""


def test_compile_is_byte_identical_across_runs():
    """Every model on every target, compiled in two processes with different hash seeds."""
    runs = []
    for seed in ("1", "2"):
        env = dict(os.environ, PYTHONHASHSEED=seed)
        result = subprocess.run([sys.executable, "-c", _HASH_ALL, str(ROOT / "tests")], capture_output=True,
                                text=True, env=env)
        assert result.returncode == 0, result.stderr
        runs.append(result.stdout.splitlines())
    assert len(runs[0]) == 3 * len(spec_models())
    assert runs[0] == runs[1]


def test_default_output_names(tmp_path):
    for target, name in [("torch", "mlp.py"), ("triton", "mlp_triton.py"), ("onnx", "mlp.onnx")]:
        assert specc("compile", str(MLP), "--target", target, cwd=tmp_path).returncode == 0
        assert (tmp_path / name).is_file()


def test_generated_torch_file_is_importable_without_specc(tmp_path):
    out = tmp_path / "mlp_model.py"
    assert specc("compile", str(MLP), "-o", str(out)).returncode == 0
    assert "specc" not in "".join(line for line in out.read_text().splitlines(True) if "import" in line)
    code = "import torch, mlp_model; m = mlp_model.Mlp(); print(tuple(m(torch.zeros(2, 784)).shape))"
    result = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True)
    assert result.stdout.strip() == "(2, 10)", result.stderr


def test_param_override_changes_the_model(tmp_path):
    out = tmp_path / "wide.py"
    assert specc("compile", str(MLP), "-p", "hidden=512", "-o", str(out)).returncode == 0
    assert "nn.Linear(784, 512)" in out.read_text()
    bad = specc("compile", str(MLP), "-p", "hiden=512", "-o", str(out))
    assert bad.returncode == 1 and "has no parameter `hiden`" in bad.stderr and "did you mean `hidden`" in bad.stderr


def test_onnx_weights_from_state_dict(tmp_path):
    import onnx
    from onnx import numpy_helper

    state = {"h_linear.weight": torch.full((256, 784), 0.5), "h_linear.bias": torch.zeros(256),
             "logits.weight": torch.ones(10, 256), "logits.bias": torch.arange(10.0)}
    torch.save(state, tmp_path / "w.pt")
    out = tmp_path / "mlp.onnx"
    result = specc("compile", str(MLP), "--target", "onnx", "--weights", str(tmp_path / "w.pt"), "-o", str(out))
    assert result.returncode == 0, result.stderr
    inits = {i.name: numpy_helper.to_array(i) for i in onnx.load(out).graph.initializer}
    assert (inits["logits__bias"] == torch.arange(10.0).numpy()).all()
    assert (inits["h_linear__weight"] == 0.5).all()


def test_onnx_weights_that_do_not_fit_are_rejected_and_nothing_is_written(tmp_path):
    torch.save({"h_linear.weight": torch.zeros(3, 3)}, tmp_path / "w.pt")
    out = tmp_path / "mlp.onnx"
    result = specc("compile", str(MLP), "--target", "onnx", "--weights", str(tmp_path / "w.pt"), "-o", str(out))
    assert result.returncode == 1
    assert "missing h_linear.bias, logits.bias, logits.weight" in result.stderr
    assert not out.exists() and list(tmp_path.iterdir()) == [tmp_path / "w.pt"]


def test_a_spec_error_writes_no_output(tmp_path):
    spec = tmp_path / "bad.nnspec"
    spec.write_text("model bad() {\n    input x: f32[B, 4]\n    output y = linear(x, 0)\n}\n")
    result = specc("compile", str(spec), "-o", str(tmp_path / "bad.py"))
    assert result.returncode == 1
    assert "bad.nnspec:3:26: error[E0302]" in result.stderr
    assert not (tmp_path / "bad.py").exists()


def test_usage_errors_exit_2(tmp_path):
    assert specc("compile", str(tmp_path / "missing.nnspec")).returncode == 2
    assert specc("compile", str(MLP), "--target", "tpu").returncode == 2
    assert specc("compile", str(MLP), "--weights", "w.pt").returncode == 2


def test_dump_ir_prints_after_every_pass():
    result = specc("ir", str(MLP), "--dump-ir")
    assert result.returncode == 0
    passes = [line.split("after ")[1].split(" ")[0] for line in result.stdout.splitlines() if "IR after" in line]
    assert passes == ["lower", "infer_shapes", "eliminate_common_subexpressions", "eliminate_dead_code",
                      "fuse_elementwise", "fuse_epilogues"]
    assert "%logits = linear(%h_1, out_features=10) : f32[B, 10]" in result.stdout


def test_check_reports_every_model():
    result = specc("check", str(ROOT / "specs" / "gated_mixer.nnspec"))
    assert result.returncode == 0
    assert "model gated_mixer(x: f32[B, 32], mix: f32[16, 16]) -> (y: f32[B, 32], probs: f32[B, 16]): ok" in result.stdout


def test_installed_console_script_works_from_another_directory(tmp_path):
    """The `specc` entry point finds its grammar and templates wherever it is run from."""
    script = Path(sys.executable).parent / "specc"
    result = subprocess.run([str(script), "compile", str(MLP), "--target", "onnx"], cwd=tmp_path,
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "mlp.onnx").stat().st_size > 800_000  # 784*256 fp32 weights


def test_compile_summary_and_plan_print_a_compression_stage_warning(tmp_path):
    """A stage that leaves a layer as it is says why, located, on stderr, from every command that compiles
    the compressed model (not only `specc compress`), and the command still succeeds."""
    spec = tmp_path / "cw.nnspec"
    spec.write_text("model net() {\n    input x: f32[B, 64]\n    output y = linear(x, 128)\n}\n"
                    "compress small = net {\n    lowrank(rank=500) on linear\n}\n")
    for args in (["compile", str(spec), "--model", "small", "-o", str(tmp_path / "small.py")],
                 ["summary", str(spec), "--model", "small"], ["plan", str(spec), "--model", "small"]):
        result = specc(*args, cwd=tmp_path)
        assert result.returncode == 0, result.stderr
        assert "warning[E0809]" in result.stderr and "cw.nnspec:6:5" in result.stderr, (args, result.stderr)
