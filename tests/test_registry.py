"""The registries stay complete: every op has its templates, every pass its contract."""

from __future__ import annotations

import pytest

from specc import ops
from specc.codegen import backends, has_macro
from specc.passes import DEFAULT_PIPELINE, all_passes

COMPUTING_OPS = [name for name in ops.all_ops() if name != "input"]


@pytest.mark.parametrize("op", COMPUTING_OPS)
def test_every_op_has_torch_and_onnx_templates(op):
    assert has_macro("torch", op, "forward")
    assert has_macro("onnx", op, "nodes")


@pytest.mark.parametrize("op", [n for n, d in ops.all_ops().items() if d.elementwise])
def test_every_elementwise_op_has_a_triton_kernel_body(op):
    assert has_macro("triton", op, "scalar")


def test_ops_with_parameters_create_them_in_init():
    for name, opdef in ops.all_ops().items():
        if opdef.params is not ops.no_params:
            assert has_macro("torch", name, "init"), name


def test_the_default_pipeline_satisfies_every_contract():
    passes = all_passes()
    ensured: set[str] = set()
    for name in DEFAULT_PIPELINE:
        assert passes[name].requires <= ensured, name
        ensured |= passes[name].ensures


def test_every_backend_is_registered():
    assert set(backends()) == {"torch", "triton", "onnx"}


def test_op_docs_and_signatures():
    assert ops.get("linear").signature() == "linear(x, out_features, bias=True)"
    assert all(d.doc for d in ops.all_ops().values())
