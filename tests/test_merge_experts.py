"""merge_experts' MC-SMoE neuron alignment, and merged experts that run on their routed tokens only.

An expert computes the same function with its hidden neurons in any order, so experts that are
permutations of one another are the same expert: merging them must lose nothing once aligned
(without alignment their average is a different function). The merged layer's sparse dispatch
must equal its dense form (the one torch.compile runs).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from specc.transforms.merge_experts import align_neurons
from test_compression_transforms import MOE, compressed, convert, outputs


def _expert(w: dict[str, torch.Tensor], e: int, x: torch.Tensor) -> torch.Tensor:
    return F.linear(F.gelu(F.linear(x, w["w1"][e], w["b1"][e])), w["w2"][e], w["b2"][e])


def _permuted_copies(dense) -> None:
    """Make every expert a hidden-neuron permutation of expert 0 (the same function)."""
    generator = torch.Generator().manual_seed(1)
    y = dense.y
    for e in range(1, y.w1.shape[0]):
        order = torch.randperm(y.w1.shape[1], generator=generator)
        y.w1[e] = y.w1[0, order]
        y.b1[e] = y.b1[0, order]
        y.w2[e] = y.w2[0][:, order]
        y.b2[e] = y.b2[0]


def test_aligning_keeps_each_expert_and_matches_permuted_neurons():
    torch.manual_seed(0)
    experts, hidden, d = 4, 24, 16
    w = {"w1": torch.randn(experts, hidden, d), "b1": torch.randn(experts, hidden),
         "w2": torch.randn(experts, d, hidden), "b2": torch.randn(experts, d)}
    order = torch.randperm(hidden)
    w["w1"][3], w["b1"][3], w["w2"][3] = w["w1"][0, order], w["b1"][0, order], w["w2"][0][:, order]
    aligned = align_neurons(w, [0, 1, 0, 0], torch.tensor([0.5, 0.3, 0.1, 0.1]))
    x = torch.randn(10, d)
    for e in range(experts):  # every expert computes what it computed
        torch.testing.assert_close(_expert(aligned, e, x), _expert(w, e, x))
    assert torch.equal(aligned["w1"][3], w["w1"][0])  # the permuted copy is put back in its lead's order
    assert torch.equal(aligned["w1"][1], w["w1"][1])  # a lead is never permuted


def test_merging_permuted_experts_is_exact_only_when_aligned(tmp_path):
    x = torch.randn(3, 5, 16)
    errors = {}
    for align in ("true", "false"):
        spec = compressed(tmp_path, f"    merge_experts(groups=2, align={align}) on moe\n", MOE, name=align)
        dense, _, model = convert(spec, dense_hook=_permuted_copies)
        (got,), (want,) = outputs(model, [x]), outputs(dense, [x])
        errors[align] = float((got - want).norm() / want.norm())
    assert errors["true"] < 1e-6, errors
    assert errors["false"] > 0.05, errors  # the unaligned average is another function


def test_merged_experts_run_on_their_routed_tokens_as_the_dense_form(tmp_path, monkeypatch):
    _, _, model = convert(compressed(tmp_path, "    merge_experts(groups=3) on moe\n", MOE))
    x = torch.randn(4, 7, 16)
    calls = []
    real_linear = F.linear
    monkeypatch.setattr(F, "linear", lambda t, *a: calls.append(t.shape[0]) or real_linear(t, *a))
    (sparse,) = outputs(model, [x])
    monkeypatch.setattr(F, "linear", real_linear)
    monkeypatch.setattr(torch.compiler, "is_compiling", lambda: True)
    (dense,) = outputs(model, [x])
    torch.testing.assert_close(sparse, dense, rtol=1e-5, atol=1e-6)
    routed = calls[1:]  # the router's linear first, then two per merged expert with tokens
    assert sum(routed[::2]) < 3 * 28, routed  # not every group on every token (top 2 of 8 experts)
