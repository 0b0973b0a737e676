"""`specc compress --weights`: reference checkpoints load by the spec's names; every key and shape is checked.

A checkpoint whose keys or shapes do not fit the base model is a clear error naming the key (exit 1),
never an internal error; `--rename OLD=NEW` / `--rename-map FILE.json` map checkpoints named otherwise.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from specc.cli import app
from specc.compiler import compile_graph
from targets import python_module

# the layers are named like a torch.nn.Sequential's, so its state_dict() loads as it is
SEQUENTIAL = """\
model net() {
    input x: f32[B, 32]
    h = relu(linear(x, 48) as "0")
    output y = linear(h, 12) as "2"
}
compress small = net {
    lowrank(rank=8) on "0"
    quantize(int8) on "2"
}
"""
OWN_NAMES = SEQUENTIAL.replace(' as "0"', "").replace(' as "2"', "").replace('"0"', '"h_linear"').replace(
    '"2"', '"y"')


def reference() -> torch.nn.Sequential:
    torch.manual_seed(0)
    seq = torch.nn.Sequential(torch.nn.Linear(32, 48), torch.nn.ReLU(), torch.nn.Linear(48, 12))
    with torch.no_grad():  # an exactly rank-4 first weight: rank 8 reproduces it
        seq[0].weight.copy_(torch.randn(48, 4) @ torch.randn(4, 32) / 4)
    return seq.eval()


def compress(tmp_path: Path, spec: str, state, *extra: str):
    (tmp_path / "c.nnspec").write_text(spec)
    torch.save(state, tmp_path / "dense.pt")
    result = CliRunner().invoke(app, ["compress", str(tmp_path / "c.nnspec"), "--model", "small", "--weights",
                                      str(tmp_path / "dense.pt"), "-o", str(tmp_path / "small.pt"), *extra])
    return result


def loaded(tmp_path: Path) -> torch.nn.Module:
    _, model = python_module(compile_graph(tmp_path / "c.nnspec", "small"), "torch")
    model.load_state_dict(torch.load(tmp_path / "small.pt"))  # strict
    return model.eval()


def test_a_sequential_checkpoint_loads_by_the_spec_names(tmp_path):
    seq = reference()
    result = compress(tmp_path, SEQUENTIAL, seq.state_dict())
    assert result.exit_code == 0, result.output
    x = torch.randn(64, 32)
    with torch.no_grad():
        diff = float((loaded(tmp_path)(x) - seq(x)).abs().max())
    assert diff < 0.02, diff  # lowrank is exact here; int8 per-channel on the last layer is the only error


@pytest.mark.parametrize("how", ["--rename", "--rename-map"])
def test_a_checkpoint_named_otherwise_loads_through_a_key_mapping(tmp_path, how):
    seq = reference()
    if how == "--rename":
        extra = ["--rename", "0.=h_linear.", "--rename", "2.=y."]
    else:
        (tmp_path / "map.json").write_text(json.dumps({"0.": "h_linear.", "2.": "y."}))
        extra = ["--rename-map", str(tmp_path / "map.json")]
    result = compress(tmp_path, OWN_NAMES, seq.state_dict(), *extra)
    assert result.exit_code == 0, result.output
    x = torch.randn(64, 32)
    with torch.no_grad():
        assert float((loaded(tmp_path)(x) - seq(x)).abs().max()) < 0.02


def test_keys_that_do_not_match_name_the_keys(tmp_path):
    result = compress(tmp_path, OWN_NAMES, reference().state_dict())
    assert result.exit_code == 1, result.output
    assert "internal compiler error" not in result.output
    assert "error[E0602]" in result.output and "do not match model `net`" in result.output
    assert "missing `h_linear.weight`, `h_linear.bias`, `y.weight`, `y.bias`" in result.output
    assert "unexpected `0.weight`, `0.bias`, `2.weight`, `2.bias`" in result.output
    assert "--rename" in result.output


def test_a_wrong_shape_names_the_key_and_both_shapes_at_the_layer(tmp_path):
    state = reference().state_dict()
    state["0.weight"] = torch.randn(256, 32)
    result = compress(tmp_path, SEQUENTIAL, state)
    assert result.exit_code == 1, result.output
    assert "weight `0.weight` in" in result.output and \
        "has shape [256, 32], but layer `0` of model `net` needs [48, 32]" in result.output
    # located at the layer that declares the weight, with a caret under it
    assert f"{tmp_path / 'c.nnspec'}:3:14: error[E0602]" in result.output, result.output
    assert "    h = relu(linear(x, 48) as \"0\")\n  |              ^^^^^^^^^^^^^" in result.output, result.output
    assert not (tmp_path / "small.pt").exists()


def test_a_wrong_shape_inside_a_block_names_the_call(tmp_path):
    net = Net()
    state = net.state_dict()
    state["block.fc2.bias"] = torch.randn(16, 1)
    result = compress(tmp_path, NESTED, state)
    assert result.exit_code == 1, result.output
    assert "weight `block.fc2.bias`" in result.output and "needs [16]" in result.output
    assert f"{tmp_path / 'c.nnspec'}:2:12: error[E0602]" in result.output, result.output
    assert f"{tmp_path / 'c.nnspec'}:6:16: note: in block `mlp_block`, called here" in result.output, result.output
    assert "Traceback" not in result.output


@pytest.mark.parametrize("case,code,message", [
    ("unused rule", 1, "--rename prefix `fc.` matches no key"),
    ("two keys to one", 1, "gives `0.weight` twice"),
    ("bad rule", 2, "expected OLD=NEW"),
    ("bad map", 2, "cannot load key mapping"),
    ("map not an object", 2, "expected a JSON object"),
    ("a tensor", 1, "holds a Tensor, not a state dict"),
    ("a wrapped checkpoint", 1, "holds a dict under `state_dict`"),
])
def test_bad_mappings_and_checkpoints(tmp_path, case, code, message):
    state = reference().state_dict()
    extra: list[str] = []
    if case == "unused rule":
        extra = ["--rename", "fc.=0."]
    elif case == "two keys to one":
        extra = ["--rename", "2.=0."]
    elif case == "bad rule":
        extra = ["--rename", "0."]
    elif case in ("bad map", "map not an object"):
        (tmp_path / "map.json").write_text("{nope" if case == "bad map" else '["0.", "h."]')
        extra = ["--rename-map", str(tmp_path / "map.json")]
    elif case == "a tensor":
        state = torch.randn(3)
    else:
        state = {"state_dict": state, "epoch": 3}
    result = compress(tmp_path, SEQUENTIAL, state, *extra)
    assert result.exit_code == code, result.output
    assert message in result.output and "internal compiler error" not in result.output


NESTED = """\
block mlp_block(x: f32[B, D], hidden: int) {
    return linear(relu(linear(x, hidden) as fc1), 16) as fc2
}
model net() {
    input x: f32[B, 16]
    output y = mlp_block(x, 32) as block
}
compress small = net {
    lowrank(rank=4) on "block.fc1"
}
"""


class Block(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc1, self.fc2 = torch.nn.Linear(16, 32), torch.nn.Linear(32, 16)

    def forward(self, x):
        return self.fc2(torch.relu(self.fc1(x)))


class Net(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.block = Block()

    def forward(self, x):
        return self.block(x)


def test_a_layer_inside_a_block_instance_converts_by_its_state_dict_path(tmp_path):
    torch.manual_seed(1)
    net = Net().eval()
    with torch.no_grad():
        net.block.fc1.weight.copy_(torch.randn(32, 4) @ torch.randn(4, 16) / 4)
    result = compress(tmp_path, NESTED, net.state_dict())
    assert result.exit_code == 0, result.output
    state = torch.load(tmp_path / "small.pt")
    assert state["block.fc1.down.weight"].shape == (4, 16) and "block.fc1.weight" not in state
    x = torch.randn(8, 16)
    with torch.no_grad():
        assert float((loaded(tmp_path)(x) - net(x)).abs().max()) < 1e-4


# ------------------------------------------------------------------ dtypes: cast floats as load_state_dict does
@pytest.mark.parametrize("dtype", [torch.float64, torch.float16, torch.bfloat16])
def test_a_checkpoint_of_another_float_dtype_converts_to_the_models_dtypes(tmp_path, dtype):
    """A bf16/f16/f64 checkpoint is cast to the model's f32 before converting: the compressed state holds
    f32 factors and scales (the bytes the plan counts), exactly what the f32 checkpoint gives."""
    seq = reference()
    state = {k: v.to(dtype) for k, v in seq.state_dict().items()}
    assert compress(tmp_path, SEQUENTIAL, state).exit_code == 0
    got = torch.load(tmp_path / "small.pt")
    assert compress(tmp_path, SEQUENTIAL, {k: v.float() for k, v in state.items()}).exit_code == 0
    want = torch.load(tmp_path / "small.pt")
    assert {k: v.dtype for k, v in got.items()} == {k: v.dtype for k, v in want.items()}
    assert {v.dtype for v in got.values()} == {torch.float32, torch.int8}
    for key in want:
        torch.testing.assert_close(got[key], want[key], rtol=0, atol=0)


def onnx_compile(tmp_path: Path, spec: str, state: dict):
    (tmp_path / "c.nnspec").write_text(spec)
    torch.save(state, tmp_path / "w.pt")
    return CliRunner().invoke(app, ["compile", str(tmp_path / "c.nnspec"), "--model", "small", "--target", "onnx",
                                    "--weights", str(tmp_path / "w.pt"), "-o", str(tmp_path / "m.onnx")])


def test_the_onnx_target_casts_float_weights_and_locates_the_wrong_ones(tmp_path):
    import numpy as np
    import onnxruntime as ort

    assert compress(tmp_path, SEQUENTIAL, reference().state_dict()).exit_code == 0
    small = torch.load(tmp_path / "small.pt")
    # an f64 factor (was: internal compiler error, MatMul's inputs of two types)
    result = onnx_compile(tmp_path, SEQUENTIAL, {**small, "0.down.weight": small["0.down.weight"].double()})
    assert result.exit_code == 0, result.output
    x = np.random.default_rng(0).standard_normal((4, 32)).astype(np.float32)
    got = ort.InferenceSession(str(tmp_path / "m.onnx")).run(None, {"x": x})[0]
    with torch.no_grad():
        want = loaded(tmp_path)(torch.from_numpy(x))
    np.testing.assert_allclose(got, want.numpy(), rtol=1e-5, atol=1e-5)
    # integer codes of another type, and a wrong shape: located at the layer
    for key, bad, message, where in (("2.qweight", small["2.qweight"].int(), "is i32, but layer `2` of model "
                                      "`small` stores it as i8", ":4:16:"),
                                     ("2.scale", torch.ones(12, 2), "has shape [12, 2], but layer `2` of model "
                                      "`small` needs [12, 1]", ":4:16:")):
        result = onnx_compile(tmp_path, SEQUENTIAL, {**small, key: bad})
        assert result.exit_code == 1, result.output
        assert f"weight `{key}` in" in result.output and message in result.output, result.output
        assert f"c.nnspec{where} error[E0602]" in result.output and "^^^" in result.output, result.output
