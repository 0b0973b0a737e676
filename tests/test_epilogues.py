"""Matmul-epilogue fusion: which linears the pass anchors, and the kernel it turns into.

The kernels run under Triton's interpreter (conftest.py), with its single small
autotuning config (32x32x32 tiles, grouped 2 rows of tiles at a time), so the
shapes below cover ragged tiles in M, N and K, several tile groups, and inputs
with more than one leading dim.
"""

from __future__ import annotations

import pytest
import torch

from specc.ir import Graph
from specc.verify import IRVerificationError, verify
from targets import as_tuple, compile_graph, python_module

RTOL = ATOL = 1e-5


def _graph(tmp_path, body: str) -> Graph:
    spec = tmp_path / "epilogue.nnspec"
    spec.write_text("model epilogue() {\n" + "".join(f"    {line}\n" for line in body.strip().splitlines()) + "}\n")
    return compile_graph(spec)


def _anchors(graph: Graph) -> dict[str, str]:
    """Anchored linear -> its group."""
    return {n.name: n.group for n in graph.nodes() if n.op == "linear" and n.group}


# ---------------------------------------------------------------- the pass


def test_a_linear_read_only_by_its_activation_anchors_the_group(tmp_path):
    graph = _graph(tmp_path, "input x: f32[B, 16]\nh = relu(linear(x, 32))\noutput y = linear(h, 8)")
    relu = next(n for n in graph.nodes() if n.op == "relu")
    assert _anchors(graph) == {graph.operands(relu.name)[0]: relu.group}
    assert "group=g0 (anchor)" in graph.dump()


@pytest.mark.parametrize("body", [
    # the linear's output is also a model output, or read by a non-elementwise op
    "input x: f32[B, 16]\noutput a = linear(x, 8)\noutput b = relu(a)",
    "input x: f32[B, 16]\na = linear(x, 8)\noutput b = relu(a)\noutput c = softmax(a, dim=-1)",
    # shapes differ: the group is over the broadcast shape, larger than the linear's output
    "input x: f32[B, 16]\ninput r: f32[4, B, 8]\noutput y = linear(x, 8) + r",
    # f64: tl.dot has no fp64 path on most GPUs
    "input x: f64[B, 16]\noutput y = relu(linear(x, 8))",
])
def test_linears_with_other_readers_or_other_shapes_stay_separate(tmp_path, body):
    assert _anchors(_graph(tmp_path, body)) == {}


def test_a_group_takes_one_anchor(tmp_path):
    graph = _graph(tmp_path, "input a: f32[B, 16]\ninput b: f32[B, 12]\noutput y = relu(linear(a, 8) + linear(b, 8))")
    assert len(_anchors(graph)) == 1
    assert len({n.group for n in graph.nodes() if n.group}) == 1


def test_the_verifier_rejects_an_anchor_read_outside_its_group(tmp_path):
    graph = _graph(tmp_path, "input x: f32[B, 16]\na = linear(x, 8)\noutput b = relu(a)\noutput c = softmax(a, dim=-1)")
    linear = next(n for n in graph.nodes() if n.op == "linear")
    linear.group = next(n.group for n in graph.nodes() if n.op == "relu")
    with pytest.raises(IRVerificationError, match="read outside it"):
        verify(graph)


# ---------------------------------------------------------------- the kernel

SHAPES = [  # (input type, out_features): ragged and whole tiles, 2-D and 3-D, one row and several tile groups
    ("f32[7, 37]", 70),
    ("f32[3, 5, 33]", 45),
    ("f32[1, 16]", 32),
    ("f32[2, 65, 64]", 96),
]
CHAINS = {
    "relu": "relu(linear(x, {n}))",
    "gelu": "gelu(linear(x, {n}))",
    "silu": "silu(linear(x, {n}))",
    "sigmoid": "sigmoid(linear(x, {n}))",
    "tanh": "tanh(linear(x, {n}))",
    "chain": "tanh(2.0 * sigmoid(gelu(linear(x, {n})) - 0.5))",
    "no_bias": "silu(linear(x, {n}, bias=false))",
}


def _residual_cases() -> list[tuple[str, str]]:
    return [
        ("residual", "input x: f32[3, 5, 33]\ninput r: f32[3, 5, 45]\noutput y = linear(x, 45) + r"),
        ("own_input", "input x: f32[7, 40]\noutput y = relu(linear(x, 40) + x)"),  # x: matmul operand and addend
        ("broadcast", "input x: f32[3, 5, 33]\ninput s: f32[45]\noutput y = gelu(linear(x, 45) * s)"),
        ("two_outputs", "input x: f32[9, 20]\nh = relu(linear(x, 50))\noutput a = h\noutput b = sigmoid(h) * h"),
    ]


CASES = [(f"{name}-{shape}-{n}", f"input x: {shape}\noutput y = {expr.format(n=n)}")
         for name, expr in CHAINS.items() for shape, n in SHAPES] + _residual_cases()


def _models(graph: Graph):
    _, reference = python_module(graph, "torch")
    torch.manual_seed(0)
    module, model = python_module(graph, "triton")
    model.load_state_dict(reference.state_dict())
    return reference.eval(), module, model.eval()


def _inputs(graph: Graph) -> list[torch.Tensor]:
    gen = torch.Generator().manual_seed(0)
    return [torch.randn([int(d) for d in graph.node(x).type.shape], generator=gen) for x in graph.inputs]


@pytest.mark.parametrize("body", [body for _, body in CASES], ids=[name for name, _ in CASES])
def test_epilogue_kernel_matches_torch_forward_and_backward(tmp_path, body, monkeypatch):
    graph = _graph(tmp_path, body)
    assert _anchors(graph), "the case must exercise an epilogue"
    reference, module, model = _models(graph)
    xs = _inputs(graph)

    launches = []
    for function in (module._FusedElementwise, module._LinearEpilogue):
        monkeypatch.setattr(function, "apply", (lambda apply: lambda *a: launches.append(a[0]) or apply(*a))(function.apply))
    with torch.no_grad():
        expected = as_tuple(reference(*xs))
        with monkeypatch.context() as m:  # the linear runs inside the kernel, never as torch's
            m.setattr(torch.nn.functional, "linear", lambda *a: pytest.fail("F.linear ran in the forward pass"))
            got = as_tuple(model(*xs))
    assert launches == [module._g0_kernel]
    for g, e in zip(got, expected, strict=True):
        torch.testing.assert_close(g, e, rtol=RTOL, atol=ATOL)

    grads = []
    for m in (reference, model):
        inputs = [x.clone().requires_grad_() for x in xs]
        loss = sum((o * torch.linspace(-1, 1, o.numel()).view_as(o)).sum() for o in as_tuple(m(*inputs)))
        grads.append(torch.autograd.grad(loss, inputs + list(m.parameters())))
    for g, e in zip(*grads, strict=True):
        torch.testing.assert_close(g, e, rtol=RTOL, atol=ATOL)


def test_epilogue_kernels_autotune_on_the_problem_shape(tmp_path):
    graph = _graph(tmp_path, "input x: f32[B, 16]\noutput y = relu(linear(x, 32))")
    _, module, _ = _models(graph)
    assert module._g0_kernel.keys == ["M", "N", "K"]
    # under the interpreter one config, so nothing is timed; on a GPU several to choose from
    assert len(module._g0_kernel.configs) == 1


def test_a_second_linear_feeding_the_group_runs_outside_the_kernel(tmp_path):
    graph = _graph(tmp_path, "input a: f32[6, 16]\ninput b: f32[6, 12]\noutput y = relu(linear(a, 40) + linear(b, 40))")
    reference, _, model = _models(graph)
    xs = _inputs(graph)
    with torch.no_grad():
        torch.testing.assert_close(model(*xs), reference(*xs), rtol=RTOL, atol=ATOL)
