"""conv1d/conv2d, pooling and batchnorm: shapes, errors, parameters, FLOPs, and what the parity matrix cannot see."""

from __future__ import annotations

import pytest
import torch

from specc.codegen import backends
from specc.compiler import compile_graph
from specc.diagnostics import SpeccError
from specc.summary import summarize
from targets import as_tuple, example_inputs, python_module, run_onnx


def _compile(tmp_path, expr: str, *inputs: str):
    decls = "\n".join(f"    input {d}" for d in inputs or ("x: f32[B, 3, 8, 8]",))
    spec = tmp_path / "m.nnspec"
    spec.write_text(f"model m() {{\n{decls}\n    output y = {expr}\n}}\n")
    return compile_graph(spec)


def _out(graph) -> str:
    return str(graph.node(graph.outputs["y"]).type)


@pytest.mark.parametrize("expr,inp,expected", [
    ("conv1d(x, 4, 3)", "x: f32[B, 3, 10]", "f32[B, 4, 8]"),
    ("conv1d(x, 6, 3, stride=2, padding=2, dilation=2, groups=3)", "x: f32[B, 3, 11]", "f32[B, 6, 6]"),
    ("conv2d(x, 8, 3, padding=1)", "x: f32[B, 3, 8, 8]", "f32[B, 8, 8, 8]"),
    ("conv2d(x, 6, [3, 2], stride=[2, 1], padding=[1, 0], dilation=[1, 2])", "x: f32[B, 4, 9, 7]", "f32[B, 6, 5, 5]"),
    ("maxpool1d(x, 2)", "x: f32[B, T, 9]", "f32[B, T, 4]"),
    ("maxpool2d(x, [3, 2], stride=[2, 1], padding=[1, 0])", "x: f32[B, 2, 7, 6]", "f32[B, 2, 4, 5]"),
    ("avgpool1d(x, 4, stride=3, padding=2)", "x: f32[B, 2, 10]", "f32[B, 2, 4]"),
    ("avgpool2d(x, 2)", "x: f32[B, 3, 8, 7]", "f32[B, 3, 4, 3]"),
    ("adaptive_avgpool1d(x, 5)", "x: f32[B, 2, 3]", "f32[B, 2, 5]"),
    ("adaptive_avgpool2d(x, 1)", "x: f32[B, 3, 5, 7]", "f32[B, 3, 1, 1]"),
    ("adaptive_avgpool2d(x, [3, 5])", "x: f32[B, 2, 7, 8]", "f32[B, 2, 3, 5]"),
    ("batchnorm(x)", "x: f64[B, 4]", "f64[B, 4]"),
    ("batchnorm(x)", "x: f32[B, 3, 4, 5]", "f32[B, 3, 4, 5]"),
])
def test_output_types(tmp_path, expr, inp, expected):
    assert _out(_compile(tmp_path, expr, inp)) == expected


@pytest.mark.parametrize("expr,inp,code,fragments", [
    ("conv2d(x, 4, 3, groups=2)", "x: f32[B, 3, 8, 8]", "E0402",
     ["in_channels 3", "`x` (f32[B, 3, 8, 8])", "groups=2"]),
    ("conv1d(x, 5, 3, groups=2)", "x: f32[B, 4, 8]", "E0401", ["out_channels=5", "groups=2", "`x` (f32[B, 4, 8])"]),
    ("conv2d(x, 4, 9)", "x: f32[B, 3, 8, 8]", "E0402", ["window of 9", "dim 2 of `x` (f32[B, 3, 8, 8])"]),
    ("conv1d(x, 4, 3, dilation=4, padding=1)", "x: f32[B, 3, 6]", "E0402",
     ["window of 9 (kernel 3, dilation 4)", "padding 1 on each side (8)"]),
    ("conv1d(x, 4, 3)", "x: f32[B, 3, 8, 8]", "E0402", ["rank-3", "[N, C, L]", "`x` (f32[B, 3, 8, 8])"]),
    ("conv2d(x, 4, 3)", "x: f32[B, T, 8, 8]", "E0401", ["channel dim", "`x` (f32[B, T, 8, 8])", "has T"]),
    ("conv2d(x, 4, 3)", "x: i64[B, 3, 8, 8]", "E0403", ["floating-point", "`x` (i64[B, 3, 8, 8])"]),
    ("maxpool2d(x, 2)", "x: f32[B, 3, T, 8]", "E0401", ["spatial dim 2", "`x` (f32[B, 3, T, 8])"]),
    ("avgpool2d(x, 2, padding=[0, 2])", "x: f32[B, 3, 8, 8]", "E0401",
     ["padding 2 of dim 3", "half the kernel 2", "`x` (f32[B, 3, 8, 8])"]),
    ("maxpool1d(x, 4, stride=2)", "x: f32[B, 3, 3]", "E0402", ["window of 4", "`x` (f32[B, 3, 3])"]),
    ("adaptive_avgpool2d(x, 2)", "x: f32[B, 3, 8]", "E0402", ["rank-4", "[N, C, H, W]", "`x` (f32[B, 3, 8])"]),
    ("batchnorm(x)", "x: f32[B, 3, 4, 4, 4]", "E0402", ["[N, C, H, W]", "`x` (f32[B, 3, 4, 4, 4])"]),
    ("batchnorm(x)", "x: f32[B, T]", "E0401", ["channel dim", "`x` (f32[B, T])"]),
    ("conv2d(x, 4, [3, 3, 3])", "x: f32[B, 3, 8, 8]", "E0302", ["`kernel`", "a list of 2", "got [3, 3, 3]"]),
    ("conv1d(x, 4, [3, 3])", "x: f32[B, 3, 8]", "E0302", ["`kernel`", "an int >= 1, got [3, 3]"]),
    ("maxpool2d(x, 2, padding=-1)", "x: f32[B, 3, 8, 8]", "E0302", ["`padding`", "an int >= 0"]),
    ("adaptive_avgpool2d(x, [2, 0])", "x: f32[B, 3, 8, 8]", "E0302", ["`output_size`", "got [2, 0]"]),
    ("batchnorm(x, momentum=2)", "x: f32[B, 3]", "E0302", ["`momentum`"]),
])
def test_errors_name_the_operand_and_its_shape(tmp_path, expr, inp, code, fragments):
    with pytest.raises(SpeccError) as info:
        _compile(tmp_path, expr, inp)
    assert info.value.code == code, info.value.message
    for fragment in fragments:
        assert fragment in info.value.message


@pytest.mark.parametrize("expr,inp", [
    ("conv1d(x, 6, 3, groups=3, bias=false)", "x: f32[B, 3, 11]"),
    ("conv2d(x, 6, [3, 2], groups=2)", "x: f32[B, 4, 9, 7]"),
    ("batchnorm(x)", "x: f32[B, 3, 4]"),
    ("batchnorm(x)", "x: f32[B, 3, 4, 5]"),
])
def test_declared_params_are_the_torch_state_dict(tmp_path, expr, inp):
    graph = _compile(tmp_path, expr, inp)
    node = graph.node(graph.outputs["y"])
    _, model = python_module(graph, "torch")
    state = model.state_dict()
    assert set(state) == {f"{node.name}.{p}" for p in node.params}
    trainable = {name for name, _ in model.named_parameters()}
    for p, spec in node.params.items():
        key = f"{node.name}.{p}"
        assert tuple(state[key].shape) == spec.shape, key
        assert (key in trainable) == spec.trainable, key
        assert state[key].dtype == (torch.int64 if spec.dtype == "i64" else torch.float32), key


@pytest.mark.parametrize("expr,inp,flops", [
    # 2 * N * out_channels * out_spatial * (in_channels / groups) * kernel elems, N = B
    ("conv2d(x, 6, [3, 2], groups=2)", "x: f32[B, 4, 9, 7]", "6048*B"),  # 2 * 6 * (7*6) * 2 * (3*2)
    ("conv1d(x, 4, 3)", "x: f32[2, 3, 10]", "1152"),  # 2*2*4*8*3*3
    ("maxpool2d(x, 2)", "x: f32[B, 3, 8, 8]", "192*B"),  # (3*4*4) * 4
    ("avgpool1d(x, 3, stride=1, padding=1)", "x: f32[B, 2, 5]", "30*B"),  # (2*5) * 3
    ("adaptive_avgpool1d(x, 3)", "x: f32[B, 2, 8]", "20*B"),  # bins [0,3) [2,6) [5,8): 2 * (3+4+3)
    ("adaptive_avgpool2d(x, [2, 3])", "x: f32[B, 1, 3, 7]", "36*B"),  # rows 2+2, cols 3+3+3
])
def test_flops(tmp_path, expr, inp, flops):
    graph = _compile(tmp_path, expr, inp)
    row, = [r for r in summarize(graph) if r.name == graph.outputs["y"]]
    assert str(row.flops) == flops


def test_onnx_batchnorm_uses_the_running_statistics(tmp_path):
    """Fresh statistics (mean 0, var 1) would hide swapped or ignored ones; train a few steps first."""
    graph = _compile(tmp_path, "batchnorm(conv2d(x, 4, 3), eps=1e-3)", "x: f32[B, 3, 6, 6]")
    _, model = python_module(graph, "torch")
    inputs = example_inputs(graph)
    model.train()
    with torch.no_grad():
        for scale in (1.0, 3.0, 0.5):
            model(inputs[0] * scale + 2)
    model.eval()
    bn = [k for k in model.state_dict() if k.endswith("running_var")][0]
    assert not torch.allclose(model.state_dict()[bn], torch.ones(4))
    weights = tmp_path / "w.pt"
    torch.save(model.state_dict(), weights)
    with torch.no_grad():
        expected = as_tuple(model(*inputs))
    got = run_onnx(backends()["onnx"].emit(graph, weights=weights).data, graph, inputs)
    torch.testing.assert_close(torch.from_numpy(got[0]), expected[0], rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("output_size,onnx_op", [("[2, 4]", "AveragePool"), ("[3, 4]", "MatMul")])
def test_onnx_adaptive_pooling_is_exact_for_unequal_bins(tmp_path, output_size, onnx_op):
    """Equal bins are an AveragePool; unequal ones (8 rows into 3) are matmuls with averaging matrices."""
    graph = _compile(tmp_path, f"adaptive_avgpool2d(x, {output_size})", "x: f32[B, 2, 8, 8]")
    import onnx

    data = backends()["onnx"].emit(graph).data
    assert [n.op_type for n in onnx.load_from_string(data).graph.node if n.op_type != "Constant"][-1] == onnx_op
    inputs = example_inputs(graph)
    _, model = python_module(graph, "torch")
    torch.testing.assert_close(torch.from_numpy(run_onnx(data, graph, inputs)[0]), model(*inputs),
                               rtol=1e-5, atol=1e-5)


def test_train_mode_compiles_fullgraph_and_updates_running_stats(tmp_path):
    graph = _compile(tmp_path, "adaptive_avgpool2d(maxpool2d(relu(batchnorm(conv2d(x, 4, 3, padding=1))), 2), 1)")
    bn = next(n.name for n in graph.nodes() if n.op == "batchnorm")
    _, model = python_module(graph, "torch")
    inputs = example_inputs(graph)
    model.train()
    got = torch.compile(model, fullgraph=True, backend="aot_eager")(*inputs)
    torch.testing.assert_close(got, model(*inputs))
    assert int(model.state_dict()[f"{bn}.num_batches_tracked"]) == 2
