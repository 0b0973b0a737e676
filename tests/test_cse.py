"""Common-subexpression elimination: a pure value computed twice is computed once, and nothing else merges.

Layers own weights, `parameter` calls own tensors, dropout draws a mask per call and inputs are
arguments: two of each are two values, however alike they read. Merging must keep every output and
every number the module computes.
"""

from __future__ import annotations

from collections import Counter

import numpy as np
import torch

from specc.codegen import backends
from specc.passes import DEFAULT_PIPELINE
from targets import as_tuple, compile_graph, example_inputs, python_module, run_onnx

CSE = "eliminate_common_subexpressions"
WITHOUT = tuple(p for p in DEFAULT_PIPELINE if p != CSE)

# an RNN unrolled by `repeat`: every step transposes the same weight (issue 12's `weight_hh.transpose(0, 1)`)
UNROLLED = """block step(h, w) {
    return tanh(matmul(h, transpose(w, 0, 1)) + h)
}
model unrolled(d: int = 4) {
    input x: f32[B, 4]
    w = parameter([d, d])
    output y = repeat 5 { step(_, w) } (x)
}
"""


def _graph(tmp_path, text: str, pipeline: tuple[str, ...] = DEFAULT_PIPELINE):
    spec = tmp_path / "m.nnspec"
    spec.write_text(text)
    return compile_graph(spec, pipeline=pipeline)


def _ops(graph) -> Counter[str]:
    return Counter(node.op for node in graph.nodes())


def _model(body: str, inputs: str = "x: f32[B, 4]") -> str:
    return f"model m(d: int = 4) {{\n    input {inputs}\n{body}\n}}\n"


def test_an_unrolled_step_transposes_its_weight_once(tmp_path):
    before, after = _ops(_graph(tmp_path, UNROLLED, WITHOUT)), _ops(_graph(tmp_path, UNROLLED))
    assert before["transpose"] == 5 and after["transpose"] == 1
    assert before["matmul"] == after["matmul"] == 5  # each step reads a different h
    source = backends()["torch"].emit(_graph(tmp_path, UNROLLED)).data.decode()
    assert source.count(".transpose(") == 1, source


def test_chains_of_duplicates_fold_in_one_walk(tmp_path):
    body = "    a = relu(transpose(x, 0, 1) * 2.0)\n    b = relu(transpose(x, 0, 1) * 2.0)\n    output y = a + b"
    assert _ops(_graph(tmp_path, _model(body))) == Counter({"input": 1, "transpose": 1, "mul": 1, "relu": 1,
                                                            "add": 1})


def test_different_attributes_or_operand_order_stay_apart(tmp_path):
    body = ("    a = softmax(x, dim=0) + softmax(x, dim=1)\n"
            "    output y = a - x + (x - a)")
    assert _ops(_graph(tmp_path, _model(body))) == Counter({"input": 1, "softmax": 2, "add": 2, "sub": 2})


def test_layers_parameters_and_dropout_are_not_merged(tmp_path):
    body = ("    a = linear(x, 4) + linear(x, 4)\n"
            "    p = parameter([4]) + parameter([4])\n"
            "    output y = a + dropout(x, p=0.5) + dropout(x, p=0.5)\n"
            "    output z = p")
    counts = _ops(_graph(tmp_path, _model(body)))
    assert counts["linear"] == 2 and counts["parameter"] == 2 and counts["dropout"] == 2, counts


def test_inputs_are_not_merged(tmp_path):
    graph = _graph(tmp_path, _model("    output y = x + z", "x: f32[B, 4]\n    input z: f32[B, 4]"))
    assert graph.inputs == ["x", "z"] and _ops(graph)["input"] == 2


def test_outputs_that_become_one_value_stay_right_on_every_target(tmp_path):
    """Two outputs of one expression become one value returned twice; an output whose value merged
    into a non-output one follows it."""
    body = ("    t = sigmoid(x) * 3.0\n"
            "    u = sigmoid(x) * 3.0\n"
            "    output first = t\n"
            "    output second = u\n"
            "    output third = relu(sigmoid(x) * 3.0) + t")
    graph = _graph(tmp_path, _model(body))
    assert list(graph.outputs) == ["first", "second", "third"]
    assert graph.outputs["first"] == graph.outputs["second"]
    assert _ops(graph)["sigmoid"] == 1
    inputs = example_inputs(graph)
    expected = (torch.sigmoid(inputs[0]) * 3.0,) * 2 + (torch.relu(torch.sigmoid(inputs[0]) * 3.0)
                                                        + torch.sigmoid(inputs[0]) * 3.0,)
    for target in ("torch", "triton"):
        _, model = python_module(graph, target)
        with torch.no_grad():
            got = as_tuple(model(*inputs))
        for g, e in zip(got, expected, strict=True):
            torch.testing.assert_close(g, e, rtol=1e-6, atol=1e-6)
    onnx_out = run_onnx(backends()["onnx"].emit(graph, seed=0).data, graph, inputs)
    for g, e in zip(onnx_out, expected, strict=True):
        np.testing.assert_allclose(g, e.numpy(), rtol=1e-5, atol=1e-6)


def test_the_merged_module_computes_what_the_unmerged_one_does(tmp_path):
    """Same weights (the state dicts have the same keys) and inputs: the same outputs, with CSE on or off."""
    outputs = []
    for pipeline in (WITHOUT, DEFAULT_PIPELINE):
        graph = _graph(tmp_path, UNROLLED, pipeline)
        torch.manual_seed(0)
        _, model = python_module(graph, "torch")
        with torch.no_grad():
            outputs.append((sorted(model.state_dict()), as_tuple(model(*example_inputs(graph)))))
    (keys_off, off), (keys_on, on) = outputs
    assert keys_off == keys_on
    for a, b in zip(off, on, strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=0)


def test_a_copy_reading_a_block_result_is_not_hoisted_into_a_cycle(tmp_path):
    """`relu(u)` inside a block and again in the model, where u is the block's result: moving the block's
    copy out would make the block read a value computed from its own result. Both stay, and the module
    runs (a merge there made code generation fail with a cycle between the model and the block)."""
    graph = _graph(tmp_path, "block blk(x) {\n    u = linear(x, 4)\n    v = relu(u)\n    return u, v * 2.0\n}\n"
                             "model m() {\n    input x: f32[N, 4]\n    u, w = blk(x)\n    output y = relu(u) + w\n}\n")
    assert _ops(graph)["relu"] == 2
    _, model = python_module(graph, "torch")
    x = torch.randn(3, 4)
    with torch.no_grad():
        u = model.u.u(x)
        torch.testing.assert_close(model(x), torch.relu(u) + torch.relu(u) * 2.0)
