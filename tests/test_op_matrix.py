"""Every op x every target x a few shapes, generated from the op registry.

Each sample is compiled as a one-op model; torch is the reference, the triton
module runs under Triton's interpreter and the ONNX file in onnxruntime, all
with the torch module's weights. Ops marked `train` are also compared in
training mode between torch and triton (same RNG-free computation).
"""

from __future__ import annotations

import pytest
import torch

from op_samples import all_samples
from specc import ops
from specc.codegen import backends
from targets import as_tuple, compile_graph, example_inputs, python_module, run_onnx

SAMPLES = all_samples()
CASES = [(op, i, s) for op, samples in sorted(SAMPLES.items()) for i, s in enumerate(samples)]


def test_every_registered_op_has_samples():
    missing = sorted(set(ops.all_ops()) - {"input"} - set(SAMPLES))
    assert not missing, f"ops without samples in tests/op_samples: {missing}"


@pytest.mark.parametrize("op,index,sample", CASES, ids=[f"{op}-{i}" for op, i, _ in CASES])
def test_op_parity(op, index, sample, tmp_path):
    spec = tmp_path / f"{op}.nnspec"
    spec.write_text(sample.spec())
    graph = compile_graph(spec)
    assert any(n.op == op for n in graph.nodes()), f"the sample does not exercise {op}"
    inputs = example_inputs(graph, seed=1, int_high=sample.int_high)
    _, reference = python_module(graph, "torch")
    reference.eval()
    with torch.no_grad():
        expected = as_tuple(reference(*inputs))

    _, triton_model = python_module(graph, "triton")
    triton_model.load_state_dict(reference.state_dict())
    triton_model.eval()
    with torch.no_grad():
        got = as_tuple(triton_model(*inputs))
    for g, e in zip(got, expected, strict=True):
        torch.testing.assert_close(g, e, rtol=1e-5, atol=sample.atol)

    weights = tmp_path / "w.pt"
    torch.save(reference.state_dict(), weights)
    onnx_out = run_onnx(backends()["onnx"].emit(graph, weights=weights).data, graph, inputs)
    for g, e in zip(onnx_out, expected, strict=True):
        torch.testing.assert_close(torch.from_numpy(g), e, rtol=1e-5, atol=sample.atol)

    if sample.train:
        reference.train()
        triton_model.train()
        torch.testing.assert_close(as_tuple(triton_model(*inputs))[0], as_tuple(reference(*inputs))[0],
                                   rtol=1e-5, atol=sample.atol)
