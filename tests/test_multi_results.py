"""Ops with several results (`OpDef.results`): topk's values and indices, lstm's and gru's final states,
on every target, computed once; a call used as one tensor compiles as before."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from specc.codegen import backends
from specc.diagnostics import SpeccError
from targets import compile_graph, outputs_on_every_target


def _compile(tmp_path, body: str, inputs: str = "    input x: f32[2, 6, 3]\n"):
    spec = tmp_path / "m.nnspec"
    spec.write_text(f"model m() {{\n{inputs}{body}}}\n")
    return compile_graph(spec)


@pytest.mark.parametrize("largest", ["true", "false"])
def test_topk_values_and_indices_agree_with_torch_topk(tmp_path, largest):
    graph = _compile(tmp_path, f"    v, i = topk(x, 2, dim=1, largest={largest})\n    output values = v\n"
                               "    output indices = i\n")
    x = torch.randn(2, 6, 3, generator=torch.Generator().manual_seed(0))
    expected = torch.topk(x, 2, dim=1, largest=largest == "true")
    for target, (values, indices) in outputs_on_every_target(graph, [x], None, tmp_path).items():
        torch.testing.assert_close(values, expected.values, rtol=1e-5, atol=1e-5, msg=target)
        assert indices.dtype == torch.int64 and torch.equal(indices, expected.indices), target


def test_topk_is_computed_once_and_its_results_are_picked_by_name(tmp_path):
    graph = _compile(tmp_path, "    r = topk(x, 2)\n    output a = r + 1.0\n    output b = r.indices\n")
    torch_code = backends()["torch"].emit(graph).data.decode()
    assert torch_code.count("torch.topk(") == 1
    onnx_text = backends()["onnx"].emit(graph).data
    assert onnx_text.count(b"TopK") == 1
    x = torch.randn(2, 6, 3)
    expected = torch.topk(x, 2)
    for target, (a, b) in outputs_on_every_target(graph, [x], None, tmp_path).items():
        torch.testing.assert_close(a, expected.values + 1.0, msg=target)
        assert torch.equal(b, expected.indices), target


def test_a_call_used_as_one_tensor_keeps_one_node(tmp_path):
    """Only the first result used: no `result` nodes, the code topk had before it had two results."""
    graph = _compile(tmp_path, "    v, i = topk(x, 2)\n    output y = v\n")
    assert [n.op for n in graph.nodes()] == ["input", "topk"]
    assert ".values" in backends()["torch"].emit(graph).data.decode()


def test_unused_results_are_dropped_and_the_shared_node_is_kept(tmp_path):
    graph = _compile(tmp_path, "    v, i = topk(x, 2)\n    j = i + 1\n    output y = v\n")
    ops_left = [n.op for n in graph.nodes()]
    assert ops_left.count("topk") == 1 and "add" not in ops_left
    graph = _compile(tmp_path, "    v, i = topk(x, 2)\n    output y = i\n")
    assert [n.op for n in graph.nodes()] == ["input", "topk", "result"]


@pytest.mark.parametrize("kind", ["lstm", "gru"])
@pytest.mark.parametrize("bidirectional", [False, True])
def test_final_states_agree_with_torch_nn(tmp_path, kind, bidirectional):
    states = ("h", "c") if kind == "lstm" else ("h",)
    outputs = "".join(f"    output {s}_out = r.{s}\n" for s in states)
    flag = "true" if bidirectional else "false"
    graph = _compile(tmp_path, f"    r = {kind}(x, 4, num_layers=2, bidirectional={flag})\n"
                               f"    output y = r\n{outputs}")
    torch.manual_seed(0)
    reference = (nn.LSTM if kind == "lstm" else nn.GRU)(3, 4, 2, batch_first=True, bidirectional=bidirectional)
    x = torch.randn(2, 6, 3, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        y, final = reference.eval()(x)
    expected = (y, *(final if kind == "lstm" else (final,)))
    state = {f"r.{k}": v for k, v in reference.state_dict().items()}
    for target, got in outputs_on_every_target(graph, [x], state, tmp_path).items():
        assert len(got) == len(expected), target
        for g, e in zip(got, expected):
            torch.testing.assert_close(g, e, rtol=1e-5, atol=1e-5, msg=target)


def test_unpacking_names_the_results(tmp_path):
    graph = _compile(tmp_path, "    y, h = gru(x, 4)\n    output last = h\n")
    assert graph.node(graph.outputs["last"]).type.shape == (1, 2, 4)


@pytest.mark.parametrize("body, message, line", [
    ("    a, b, c = topk(x, 2)\n    output y = a\n", "cannot unpack 2 values into 3 names", 3),
    ("    a, b = lstm(x, 4)\n    output y = a\n", "cannot unpack 3 values into 2 names", 3),
    ("    r = gru(x, 4)\n    output y = r.c\n", "no part named `c`", 4),
])
def test_wrong_unpacking_is_a_located_error(tmp_path, body, message, line):
    with pytest.raises(SpeccError) as err:
        _compile(tmp_path, body)
    assert message in err.value.message
    assert err.value.span is not None and err.value.span.line == line


def test_the_marker_attribute_is_not_settable_from_a_spec(tmp_path):
    with pytest.raises(SpeccError) as err:
        _compile(tmp_path, "    output y = topk(x, 2, all_results=true)\n")
    assert "no argument `all_results`" in err.value.message
