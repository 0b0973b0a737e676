"""Every spec in specs/, every target: same weights in, same numbers out.

torch is the reference; the triton module runs its kernels under Triton's
interpreter (TRITON_INTERPRET=1, set in conftest.py) and onnxruntime runs the
ONNX file built from the torch module's state dict.
"""

from __future__ import annotations

import pytest
import torch

from specc.codegen import backends
from targets import as_tuple, compile_spec, example_inputs, python_module, run_onnx, spec_models

RTOL = ATOL = 1e-5
CASES = spec_models()
IDS = [f"{spec.stem}:{model}" for spec, model in CASES]


@pytest.fixture(scope="module", params=CASES, ids=IDS)
def compiled(request, tmp_path_factory):
    spec, model = request.param
    graph = compile_spec(spec, model)
    _, reference = python_module(graph, "torch")
    torch.manual_seed(0)
    reference.eval()
    weights = tmp_path_factory.mktemp("weights") / f"{model}.pt"
    torch.save(reference.state_dict(), weights)
    inputs = example_inputs(graph)
    with torch.no_grad():
        expected = as_tuple(reference(*inputs))
    return graph, reference, weights, inputs, expected


def test_output_shapes_match_inferred_types(compiled):
    graph, _, _, _, expected = compiled
    from targets import dim_value

    for (name, value), tensor in zip(graph.outputs.items(), expected):
        assert list(tensor.shape) == [dim_value(d) for d in graph.node(value).type.shape], name


def test_triton_matches_torch(compiled):
    graph, reference, _, inputs, expected = compiled
    module, model = python_module(graph, "triton")
    assert module._INTERPRET, "the parity test must run the Triton kernels, not the torch fallback"
    model.load_state_dict(reference.state_dict())
    model.eval()
    launches = []
    # one launch per group: an elementwise kernel, or a matmul-epilogue kernel for a group led by a linear
    for function in (module._FusedElementwise, getattr(module, "_LinearEpilogue", None)):
        if function is not None:
            function.apply = (lambda apply: lambda *a: launches.append(a[0]) or apply(*a))(function.apply)
    with torch.no_grad():
        got = as_tuple(model(*inputs))
    n_groups = len({n.group for n in graph.nodes() if n.group})
    assert len(launches) == n_groups
    for g, e in zip(got, expected, strict=True):
        torch.testing.assert_close(g, e, rtol=RTOL, atol=ATOL)


def test_onnx_matches_torch(compiled):
    graph, _, weights, inputs, expected = compiled
    data = backends()["onnx"].emit(graph, weights=weights).data
    got = run_onnx(data, graph, inputs)
    for g, e in zip(got, expected, strict=True):
        torch.testing.assert_close(torch.from_numpy(g), e, rtol=RTOL, atol=ATOL)


def test_triton_gradients_match_torch(compiled):
    graph, reference, _, inputs, _ = compiled
    _, model = python_module(graph, "triton")
    model.load_state_dict(reference.state_dict())
    model.eval()
    grads = []
    for m in (reference, model):
        xs = [x.clone().requires_grad_(x.is_floating_point()) for x in inputs]
        loss = sum((o * torch.linspace(-1, 1, o.numel()).view_as(o)).sum() for o in as_tuple(m(*xs)))
        params = list(m.parameters())
        grads.append(torch.autograd.grad(loss, [x for x in xs if x.requires_grad] + params))
    for g, e in zip(*grads, strict=True):
        torch.testing.assert_close(g, e, rtol=RTOL, atol=ATOL)


def test_torch_compile_fullgraph(compiled):
    graph, reference, _, inputs, expected = compiled
    compiled_model = torch.compile(reference, fullgraph=True)
    with torch.no_grad():
        got = as_tuple(compiled_model(*inputs))
    for g, e in zip(got, expected, strict=True):
        torch.testing.assert_close(g, e, rtol=RTOL, atol=ATOL)
