"""The optimizing passes and the verifier do linear work (issue 11), and fusion still groups what it did.

Linearity is checked by counting, not timing: the passes reach the IR through
`Graph.node`, `Graph.operands` and `Graph.users`, so the number of those calls
for a model of N repetitions and of 2N must grow by about 2 (a reachability
search per fusion candidate made it grow by 4).
"""

from __future__ import annotations

import random
from collections import Counter

import pytest

from specc.compiler import compile_graph
from specc.ir import Graph
from specc.passes import DEFAULT_PIPELINE, all_passes
from specc.verify import verify

BODIES = {
    "relu": ("", "relu(_)"),
    "relu_linear": ("", "relu(linear(_, 16))"),
    "mixed": ("block mix(x) {\n    a = x * 2.0 + 1.0\n    b = gelu(a)\n    return sigmoid(b) * b\n}\n", "mix(_)"),
    "residual": ("block res(x, w: int) {\n    h = relu(linear(x, w))\n    return relu(x + linear(h, w))\n}\n",
                 "res(_, 16)"),
}


def _lowered(tmp_path, kind: str, n: int) -> Graph:
    blocks, body = BODIES[kind]
    spec = tmp_path / f"{kind}_{n}.nnspec"
    spec.write_text(f"{blocks}model m() {{\n    input x: f32[B, 16]\n    output y = repeat {n} {{ {body} }} (x)\n}}\n")
    return compile_graph(spec, pipeline=("infer_shapes",))


def _ir_accesses(graph: Graph, monkeypatch) -> int:
    """IR reads made by the passes after shape inference, with the verifier after each."""
    calls: Counter[str] = Counter()
    for method in ("node", "operands", "users"):
        original = getattr(Graph, method)

        def counted(self, name, _original=original, _method=method):
            calls[_method] += 1
            return _original(self, name)

        monkeypatch.setattr(Graph, method, counted)
    passes = all_passes()
    for name in DEFAULT_PIPELINE[1:]:
        passes[name].run(graph)
        graph.properties |= passes[name].ensures
        verify(graph)
    monkeypatch.undo()
    return sum(calls.values())


@pytest.mark.parametrize("kind", sorted(BODIES))
def test_pass_work_grows_linearly(tmp_path, monkeypatch, kind):
    n = 60 if kind in ("mixed", "residual") else 150
    small = _ir_accesses(_lowered(tmp_path, kind, n), monkeypatch)
    large = _ir_accesses(_lowered(tmp_path, kind, 2 * n), monkeypatch)
    assert large <= 2.1 * small, f"{kind}: {small} IR reads at N={n}, {large} at N={2 * n}"


def _groups(graph: Graph) -> dict[str, str]:
    return {n.name: n.group for n in graph.nodes() if n.group}


def test_fusion_groups_of_a_small_model(tmp_path):
    """Chains, a gate whose branches meet at the fused op, a residual add and a broadcast: the groups the
    reachability-search version of the pass made."""
    spec = tmp_path / "groups.nnspec"
    spec.write_text("""model groups() {
    input x: f32[B, 16]
    input bias: f32[16]
    a = relu(x) * 2.0 + 1.0
    g = sigmoid(linear(a, 16)) * linear(linear(a, 16), 16)
    h = gelu(linear(g, 16)) + g
    output y = h * bias
}
""")
    graph = compile_graph(spec)
    assert _groups(graph) == {
        "a_relu": "g0", "a_mul": "g0", "a": "g0",
        "g_linear": "g1", "g_sigmoid": "g1", "g": "g1",  # the linear is the group's anchor
        "h_linear": "g2", "h_gelu": "g2", "h": "g2", "y": "g2",
    }


def _random_spec(rng: random.Random, size: int) -> str:
    """A random DAG of same-shape elementwise and linear ops with many cross edges."""
    lines, values, read = ["model r() {", "    input x: f32[B, 8]"], ["x"], set()
    for i in range(size):
        a = rng.choice(values[-5:]) if rng.random() < 0.7 else rng.choice(values)
        b = rng.choice(values)
        expr, used = rng.choice([(f"relu({a})", {a}), (f"{a} + {b}", {a, b}), (f"linear({a}, 8)", {a}),
                                 (f"{a} * {b}", {a, b}), (f"sigmoid({a})", {a})])
        lines.append(f"    v{i} = {expr}")
        read |= used
        values.append(f"v{i}")
    lines += [f"    output o{j} = {v}" for j, v in enumerate(v for v in values[1:] if v not in read)]
    return "\n".join(lines + ["}"]) + "\n"


def test_fusion_keeps_the_graph_of_groups_acyclic(tmp_path):
    """Fused groups must be schedulable as single steps; the verifier checks it after the pipeline runs.
    (A group-by-group convexity search let two convex groups feed each other on such graphs.)"""
    rng = random.Random(11)
    spec = tmp_path / "random.nnspec"
    for _ in range(40):
        spec.write_text(_random_spec(rng, rng.randint(3, 30)))
        graph = compile_graph(spec)  # the pipeline verifies the IR after every pass
        assert "fused" in graph.properties
