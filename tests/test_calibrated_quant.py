"""Calibration-based quantization: GPTQ, AWQ, the mixed-bit allocation from measured sensitivity, int2/int3.

The bar is measured on a small trained model: an MLP trained briefly (seeded) on scikit-learn's digits,
calibrated on training images and judged on held-out ones, by the relative squared error of its logits
against the dense model's. GPTQ is also checked against an independent, unoptimized OBQ-style loop
written here (same column order, no dampening, no groups: the same codes), and int2/int3 storage by
round trips and by every target computing what the dequantized weight computes.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch

from typer.testing import CliRunner

from specc.cli import app
from specc.compiler import compile_graph
from specc.diagnostics import SpeccError
from specc.transforms import Calibration, convert_weights
from specc.transforms._calibrated import awq_scales, gptq
from specc.transforms.quantize import (dequantize_weight, fit_grid, pack_codes, quantize_weight, round_codes,
                                       unpack_codes)
from targets import python_module, run_onnx
from test_quant_runtime import emit_onnx, plain, randomized, spec_graph

BASE = """\
model digits() {
    input x: f32[B, 64]
    h = relu(linear(x, 128))
    g = relu(linear(h, 64))
    output logits = linear(g, 10)
}
"""


class Trained:
    """The dense digits MLP, its data splits and its held-out logits."""

    def __init__(self, root: Path) -> None:
        from sklearn.datasets import load_digits

        self.root = root
        digits = load_digits()
        x = torch.tensor(digits.data, dtype=torch.float32) / 16
        y = torch.tensor(digits.target)
        order = torch.randperm(len(x), generator=torch.Generator().manual_seed(0))
        x, y = x[order], y[order]
        self.train_x, self.train_y, self.held_x, self.held_y = x[:1300], y[:1300], x[1300:], y[1300:]
        self.calib = self.train_x[:256]
        (root / "base.nnspec").write_text(BASE)
        torch.manual_seed(0)
        _, dense = python_module(compile_graph(root / "base.nnspec"), "torch")
        opt = torch.optim.Adam(dense.parameters(), lr=1e-2)
        for _ in range(120):
            loss = torch.nn.functional.cross_entropy(dense(self.train_x), self.train_y)
            opt.zero_grad()
            loss.backward()
            opt.step()
        self.dense = dense.eval()
        with torch.no_grad():
            self.reference = dense(self.held_x)
        self.state = {k: v.detach() for k, v in dense.state_dict().items()}
        self.base_graph = compile_graph(root / "base.nnspec", pipeline=("infer_shapes",))

    def calibration(self) -> Calibration:
        return Calibration([self.calib], self.base_graph, dict(self.state))

    def spec(self, stages: str, name: str) -> Path:
        path = self.root / f"{name}.nnspec"
        path.write_text(BASE + "compress small = digits {\n" + stages + "}\n")
        return path

    def held_out_error(self, graph, state) -> float:
        """Relative squared error of the compressed model's held-out logits against the dense model's."""
        _, model = python_module(graph, "torch")
        model.load_state_dict(state)  # strict: the compiled structure and the converted state agree
        with torch.no_grad():
            out = model.eval()(self.held_x)
        return float((out - self.reference).pow(2).sum() / self.reference.pow(2).sum())

    def error(self, stages: str, name: str = "c") -> float:
        graph = compile_graph(self.spec(stages, name), "small")
        return self.held_out_error(graph, convert_weights(graph, self.state, self.calibration()))


pytestmark = pytest.mark.usefixtures("one_thread")  # small matrices (conftest.py)


@pytest.fixture(scope="module")
def trained(tmp_path_factory, one_thread) -> Trained:
    model = Trained(tmp_path_factory.mktemp("digits"))
    accuracy = (model.reference.argmax(-1) == model.held_y).float().mean()
    assert accuracy > 0.93  # really trained: what its quantization may lose is worth keeping
    return model


# ------------------------------------------------------------------ the bar: better than round-to-nearest
@pytest.mark.parametrize("bits", [4, 3])
@pytest.mark.parametrize("group", ["", ", group=16"])
def test_gptq_and_awq_beat_round_to_nearest_on_held_out_data(trained, bits, group):
    rtn = trained.error(f"    quantize(int{bits}{group}) on linear\n")
    gptq_error = trained.error(f"    quantize(int{bits}{group}, method=gptq) on linear\n")
    awq_error = trained.error(f"    quantize(int{bits}{group}, method=awq) on linear\n")
    assert gptq_error < 0.5 * rtn, (gptq_error, rtn)
    assert awq_error < rtn, (awq_error, rtn)


def _obq_reference(w: torch.Tensor, x: torch.Tensor, bits: int) -> torch.Tensor:
    """Optimal Brain Quantization with a fixed column order, written plainly: quantize column i, move its
    error onto the columns left through the inverse Hessian, remove i from the inverse (no dampening, no
    blocks, no Cholesky). One grid per row from the original row, as GPTQ without groups."""
    w = w.clone()
    hinv = torch.linalg.inv(2 * x.T @ x / x.shape[0])
    scale, zero = fit_grid(w[:, None, :], bits, True)
    scale, zero = scale[:, 0], zero[:, 0]
    q = torch.zeros_like(w)
    for i in range(w.shape[1]):
        q[:, i] = (round_codes(w[:, i:i + 1], scale, zero, bits, True)[:, 0] - zero) * scale
        err = (w[:, i] - q[:, i]) / hinv[i, i]
        w -= err[:, None] * hinv[i][None, :]
        hinv = hinv - hinv[:, i:i + 1] @ hinv[i:i + 1, :] / hinv[i, i]
    return q


def _layer_problem(seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    w = torch.randn(12, 40, generator=gen, dtype=torch.float64)
    mix = torch.randn(40, 40, generator=gen, dtype=torch.float64) / 6 + torch.eye(40, dtype=torch.float64)
    x = torch.randn(300, 40, generator=gen, dtype=torch.float64) @ mix  # correlated inputs, as activations are
    return w, x


@pytest.mark.parametrize("bits", [3, 4])
def test_gptq_equals_a_plain_obq_loop_without_dampening_or_groups(bits):
    w, x = _layer_problem()
    got = dequantize_weight(gptq(w, x, bits, None, True, damp=0.0, block=16), bits, None, True, 40)
    torch.testing.assert_close(got, _obq_reference(w, x, bits), rtol=0, atol=1e-9)


@pytest.mark.parametrize("group,damp", [(None, 0.0), (8, 0.01), (16, 0.1)])
def test_gptq_lowers_the_layer_objective_below_round_to_nearest(group, damp):
    w, x = _layer_problem(1)
    for bits in (2, 3, 4):
        def objective(state) -> float:
            return float((x @ w.T - x @ dequantize_weight(state, bits, group, True, 40).T).norm())

        assert objective(gptq(w, x, bits, group, True, damp=damp)) < objective(quantize_weight(w, bits, group, True))


def test_awq_folds_its_scales_exactly_and_says_where(trained):
    """g_linear's input scales divide h_linear's rows and bias: relu commutes with them, so the folded
    dense model computes what the dense model did; h_linear, fed by the model input, gets none."""
    path = trained.spec("    quantize(int4, method=awq) on linear\n", "awq")
    graph = compile_graph(path, "small")
    notes = {p.layer: p.note for p in graph.plan}
    assert "scales folded into `h_linear`" in notes["g_linear"], notes
    assert "no input scales (its input is a model input)" in notes["h_linear"], notes
    calib = trained.calibration()
    convert_weights(graph, trained.state, calib)
    s = calib.derived[("awq", "g_linear")]
    assert not torch.allclose(s, torch.ones_like(s))  # alpha 0 (plain rounding) was not the best
    folded = dict(trained.state)
    folded["h_linear.weight"] = folded["h_linear.weight"] / s[:, None].float()
    folded["h_linear.bias"] = folded["h_linear.bias"] / s.float()
    folded["g_linear.weight"] = folded["g_linear.weight"] * s[None, :].float()
    _, model = python_module(compile_graph(trained.root / "base.nnspec"), "torch")
    model.load_state_dict(folded)
    with torch.no_grad():
        torch.testing.assert_close(model.eval()(trained.held_x), trained.reference, rtol=1e-4, atol=1e-4)
    # alpha 0 is on AWQ's grid, so its choice is never worse than plain rounding on the calibration inputs
    x = calib.operands_of("g_linear")[0].double()
    w = trained.state["g_linear.weight"].double()
    ones = torch.ones(w.shape[1], dtype=torch.float64)
    best = awq_scales(w, x, 4, None, True)

    def err(scales):
        q = dequantize_weight(quantize_weight(w * scales, 4, None, True), 4, None, True, w.shape[1]) / scales
        return float((x @ (w - q).T).pow(2).sum())

    assert err(best) <= err(ones)


BLOCKS = """\
block mlp_block(x: f32[B, T, D], hidden: int) {
    return linear(relu(linear(x, hidden) as fc1), 16) as fc2
}
model net() {
    input x: f32[B, T, 16]
    h = mlp_block(x, 48) as b1
    output y = mlp_block(h, 48) as b2
}
"""


def test_calibrated_methods_reach_layers_inside_block_instances(tmp_path):
    """State-dict paths inside block instances (`b2.fc1`): inputs probed, scales folded across instances."""
    def spec(method: str) -> Path:
        path = tmp_path / f"{method}.nnspec"
        path.write_text(BLOCKS + f"compress small = net {{\n    quantize(int3, group=16, method={method}) on linear\n}}\n")
        return path

    torch.manual_seed(0)
    _, dense = python_module(compile_graph(spec("rtn"), "net"), "torch")
    state = dense.state_dict()
    mix = torch.randn(16, 16)
    calib, held = torch.randn(64, 8, 16) @ mix, torch.randn(64, 8, 16) @ mix
    with torch.no_grad():
        reference = dense.eval()(held)
    base = compile_graph(spec("rtn"), "net", pipeline=("infer_shapes",))
    errors = {}
    for method in ("rtn", "gptq", "awq"):
        graph = compile_graph(spec(method), "small")
        _, model = python_module(graph, "torch")
        model.load_state_dict(convert_weights(graph, state, Calibration([calib], base, dict(state))))
        with torch.no_grad():
            errors[method] = float((model.eval()(held) - reference).pow(2).sum() / reference.pow(2).sum())
        if method == "awq":
            notes = [p.note for p in graph.plan]
            assert "scales folded into `b1.fc2`" in notes[2] and "scales folded into `b2.fc1`" in notes[3], notes
    assert errors["gptq"] < errors["rtn"] and errors["awq"] < errors["rtn"], errors


# ------------------------------------------------------------------ mixed bits from measured sensitivity
def test_measured_sensitivity_beats_the_gaussian_proxy_at_the_same_budget(trained):
    for budget in (0.09, 0.14, 0.2):
        stage = f"    quantize(mixed, budget={budget}, min_bits=2{{}}) on linear\n"
        proxy_graph = compile_graph(trained.spec(stage.format(""), "proxy"), "small")
        proxy = trained.held_out_error(proxy_graph, convert_weights(proxy_graph, trained.state))
        path = trained.spec(stage.format(', sensitivity="digits.sens.json"'), "measured")
        (trained.root / "digits.sens.json").unlink(missing_ok=True)
        calib = trained.calibration()
        measured_graph = compile_graph(path, "small", calibration=calib)  # measures, writes the file
        record = json.loads((trained.root / "digits.sens.json").read_text())
        assert sorted(record["layers"]) == ["g_linear", "h_linear", "logits"] and record["widths"] == [2, 3, 4, 8]
        # compiling without calibration data reads the file: the same widths, so the converted state loads
        compiled = compile_graph(path, "small")
        widths = [(n.name, n.attrs.bits) for n in measured_graph.nodes() if n.op == "quant_linear"]
        assert widths == [(n.name, n.attrs.bits) for n in compiled.nodes() if n.op == "quant_linear"]
        measured = trained.held_out_error(compiled, convert_weights(compiled, trained.state, calib))
        stored = [sum(math.prod(p.shape) * (1 if p.dtype in ("u8", "i8") else 4) for n in g.nodes()
                      if n.op == "quant_linear" for k, p in n.params.items() if k != "bias") for g in (proxy_graph, compiled)]
        dense = sum(trained.state[k].numel() * 4 for k in trained.state if k.endswith("weight"))
        assert max(stored) <= budget * dense  # both within the same budget
        assert measured < proxy, (budget, widths, measured, proxy)


def test_missing_or_stale_measurements_are_located_errors(trained):
    path = trained.spec('    quantize(mixed, budget=0.2, sensitivity="other.json") on linear\n', "stale")
    with pytest.raises(SpeccError) as info:
        compile_graph(path, "small")
    assert info.value.code == "E0812" and info.value.span.line == 8 and "specc compress --calib" in info.value.help
    (trained.root / "other.json").write_text(json.dumps({"group": None, "symmetric": True, "method": "rtn",
                                                         "widths": [4, 8], "layers": {"h_linear": {"4": 1, "8": 0}}}))
    with pytest.raises(SpeccError) as info:
        compile_graph(path, "small")
    assert info.value.code == "E0812" and "other layers or settings" in info.value.message


@pytest.mark.parametrize("args,message", [
    ('mixed, budget=0.2, sensitivity="../up.json"', "names a .json file beside the spec"),
    ('mixed, budget=0.2, sensitivity="/tmp/abs.json"', "names a .json file beside the spec"),
    ('mixed, budget=0.2, sensitivity="digits.nnspec"', "names a .json file beside the spec"),
    ("int4, min_bits=2", "they go with `mixed`"),
    ("mixed, budget=0.2, min_bits=3, accuracy_level=4", "needs min_bits=4"),
    ("int4, method=obq", "invalid `method` for quantize()"),
])
def test_bad_calibration_arguments(trained, args, message):
    with pytest.raises(SpeccError) as info:
        compile_graph(trained.spec(f"    quantize({args}) on linear\n", "bad"), "small")
    assert info.value.code == "E0302" and message in info.value.message and info.value.span.line == 8


# ------------------------------------------------------------------ the command line
def test_gptq_needs_calibration_data_when_converting(trained):
    root = trained.root
    path = trained.spec("    quantize(int4, group=16, method=gptq) on linear\n", "cli")
    torch.save(trained.state, root / "dense.pt")
    torch.save(trained.calib, root / "calib.pt")
    # compiling needs no data: the stored format is round-to-nearest's; the plan says when the codes come
    notes = [p.note for p in compile_graph(path, "small").plan]
    assert all("gptq (codes from calibration data when converting" in note for note in notes), notes
    command = ["compress", str(path), "--model", "small", "--weights", str(root / "dense.pt"), "-o",
               str(root / "small.pt")]
    result = CliRunner().invoke(app, command)
    assert result.exit_code == 1, result.output
    assert "error[E0810]: quantize(method=gptq) chooses layer `h_linear`'s codes from calibration data" in result.output
    assert "cli.nnspec:8:5" in result.output and "--calib FILE" in result.output and "Traceback" not in result.output
    assert not (root / "small.pt").exists()
    result = CliRunner().invoke(app, command + ["--calib", str(root / "calib.pt")])
    assert result.exit_code == 0, result.output
    error = trained.held_out_error(compile_graph(path, "small"), torch.load(root / "small.pt"))
    assert error < trained.error("    quantize(int4, group=16) on linear\n")


@pytest.mark.parametrize("calib,message", [
    (torch.randn(4, 63), "calibration input `x` is f32[4, 63], but model `digits` takes f32[B, 64]"),
    (torch.randn(4, 64, dtype=torch.float64), "calibration input `x` is f64[4, 64]"),
    ((torch.randn(4, 64), torch.randn(4, 64)), "holds 2 calibration input(s), but model `digits` takes 1 (x)"),
    ({"x": torch.randn(4, 64)}, "calibration input `x` is a dict, not a tensor"),
])
def test_calibration_inputs_that_do_not_fit_the_model_are_named(trained, calib, message):
    root = trained.root
    path = trained.spec("    quantize(int4, method=awq) on linear\n", "fit")
    torch.save(trained.state, root / "dense.pt")
    torch.save(calib, root / "bad_calib.pt")
    result = CliRunner().invoke(app, ["compress", str(path), "--model", "small", "--weights", str(root / "dense.pt"),
                                      "--calib", str(root / "bad_calib.pt"), "-o", str(root / "fit.pt")])
    assert result.exit_code == 1 and "error[E0612]" in result.output and message in result.output, result.output
    assert "internal compiler error" not in result.output


@pytest.mark.parametrize("stages,message", [
    ("    lowrank(rank=8) on \"g_linear\"\n    quantize(int3) on \"g_linear\"\n",
     "quantize(int3), stored 3 bits a code, quantizes plain linear layers only, and this layer is `lowrank_linear`"),
    ("    sparsity(pattern=2:4) on \"g_linear\"\n    quantize(int4, method=gptq) on \"g_linear\"\n",
     "its updates would fill the N:M zeros"),
])
def test_low_widths_and_calibrated_methods_elsewhere_are_located_errors(trained, stages, message):
    with pytest.raises(SpeccError) as info:
        compile_graph(trained.spec(stages, "elsewhere"), "small")
    assert info.value.code == "E0811" and message in info.value.message
    assert info.value.span.line == 4  # the layer, defined on the base model's line


# ------------------------------------------------------------------ int2 / int3
@pytest.mark.parametrize("bits", [2, 3, 4])
@pytest.mark.parametrize("width", [1, 7, 8, 29])
def test_packed_codes_round_trip(bits, width):
    codes = torch.randint(-2 ** (bits - 1), 2 ** (bits - 1), (5, width))
    packed = pack_codes(codes, bits, True)
    assert packed.dtype == torch.uint8 and packed.shape == (5, -(-width * bits // 8))
    assert torch.equal(unpack_codes(packed, bits, width).long() - 2 ** (bits - 1), codes)
    if bits == 4:  # the int4 layout is the nibble layout every runtime reads: feature 2j in the low nibble
        shifted = torch.cat([codes + 8, torch.zeros(5, width % 2, dtype=codes.dtype)], 1).to(torch.uint8)
        assert torch.equal(packed, shifted[:, 0::2] | (shifted[:, 1::2] << 4))


@pytest.mark.parametrize("bits", [2, 3])
@pytest.mark.parametrize("symmetric", [True, False])
def test_weights_on_the_grid_round_trip_exactly(bits, symmetric):
    lo, hi = (-2 ** (bits - 1), 2 ** (bits - 1) - 1) if symmetric else (0, 2 ** bits - 1)
    gen = torch.Generator().manual_seed(bits)
    codes = torch.randint(lo, hi + 1, (6, 21), generator=gen)
    codes[:, 0], codes[:, 1] = lo, hi  # every group spans its whole range
    codes[:, 7], codes[:, 8], codes[:, 14], codes[:, 15] = lo, hi, lo, hi
    w = (codes - (0 if symmetric else 1)).float() * 0.25  # asymmetric: zero point 1 (a range with zero inside)
    state = quantize_weight(w, bits, 7, symmetric)
    torch.testing.assert_close(dequantize_weight(state, bits, 7, symmetric, 21), w, rtol=0, atol=1e-6)


@pytest.mark.parametrize("expr,shape", [
    ("quant_linear(x, 24, 3, group=8)", "f32[B, T, 37]"),
    ("quant_linear(x, 24, 3, group=16, symmetric=false)", "f32[B, 40]"),
    ("quant_linear(x, 24, 2, group=10, symmetric=false, bias=false)", "f32[B, 33]"),
    ("quant_linear(x, 24, 2)", "f32[B, 19]"),
    ("quant_linear(x, 24, 3, group=8, onnx=\"standard\")", "f32[B, 37]"),
])
def test_int2_and_int3_layers_agree_on_every_target(tmp_path, expr, shape):
    graph = spec_graph(tmp_path, expr, shape)
    model = randomized(graph)
    layer = next(m for m in model.modules() if type(m).__name__ == "_QuantLinear")
    width = int(shape.split(", ")[-1][:-1])
    assert layer.qweight.shape == (24, -(-width * layer.bits // 8))  # bit-packed in the state dict
    dims = [3 if d == "B" else 5 if d == "T" else int(d) for d in shape[4:-1].split(", ")]
    x = torch.randn(*dims)
    with torch.no_grad():
        expected = plain(model, x)
        torch.testing.assert_close(model(x), expected, rtol=1e-5, atol=1e-5)  # the tiled CPU path
        # the layer's dequantized weight is the transform's (one reading of the layout)
        state = {k: v for k, v in layer.state_dict().items() if k in ("qweight", "scale", "zero")}
        torch.testing.assert_close(layer.dequantized(), dequantize_weight(state, layer.bits, layer.group,
                                                                          layer.symmetric, width))
    _, triton_model = python_module(graph, "triton")  # the fused kernel, under TRITON_INTERPRET=1
    triton_model.load_state_dict(model.state_dict())
    with torch.no_grad():
        torch.testing.assert_close(triton_model.eval()(x), expected, rtol=1e-4, atol=1e-4)
    data, proto = emit_onnx(graph, model, tmp_path)
    onnx.checker.check_model(proto, full_check=True)
    assert "MatMulNBits" not in {n.op_type for n in proto.graph.node}  # no 2/3-bit MatMulNBits: standard ops
    (got,) = run_onnx(data, graph, [x])
    np.testing.assert_allclose(got, expected.numpy(), rtol=1e-5, atol=1e-5)


def test_int3_transform_stores_three_bits_a_weight(trained):
    graph = compile_graph(trained.spec("    quantize(int3, group=16) on linear\n", "int3"), "small")
    state = convert_weights(graph, trained.state)
    assert state["h_linear.qweight"].shape == (128, 64 * 3 // 8) and state["g_linear.qweight"].shape == (64, 48)
    four = trained.error("    quantize(int4, group=16) on linear\n", "int4")
    two = trained.error("    quantize(int2, group=16) on linear\n", "int2")
    three = trained.held_out_error(graph, state)
    assert four < three < two  # fewer bits, more error


def test_summary_says_int3_layers_run_at_dense_speed_on_onnx(trained):
    from specc.summary import speed_notes

    graph = compile_graph(trained.spec('    quantize(int3, group=16) on "h_linear"\n    quantize(int4) on "g_linear"\n',
                                       "notes"), "small")
    (note,) = speed_notes(graph)
    assert "h_linear store int2/int3 codes, which MatMulNBits does not run" in note and "g_linear store" not in note
