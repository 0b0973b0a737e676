"""`lowrank` on a `lowrank_linear`: cutting the rank of a factored (and trained) layer, as Maestro does.

A layer trained `ordered` keeps its first r components, so the cut model is exactly the trained one
evaluated on that prefix; any other factored layer is refactored to the best rank-r approximation of
the weight U V it computes (Eckart-Young, checked against torch's SVD).
"""

from __future__ import annotations

import pytest
import torch

from specc.compiler import compile_graph
from specc.transforms import convert_weights
from targets import python_module
from test_compression_transforms import BASE, outputs


def _spec(tmp_path, ordered: str, rank: int = 5):
    path = tmp_path / f"shrink_{ordered}_{rank}.nnspec"
    path.write_text(BASE + f"compress wide = net {{\n    lowrank(rank=12, ordered={ordered}) on linear where out_features >= 48\n}}\n"
                    f"compress narrow = wide {{\n    lowrank(rank={rank}) on lowrank_linear\n}}\n")
    return path


def convert(path):
    """(the `wide` module, seeded, and the `narrow` module with weights converted from it)."""
    torch.manual_seed(0)
    _, wide = python_module(compile_graph(path, "wide"), "torch")
    graph = compile_graph(path, "narrow")
    _, narrow = python_module(graph, "torch")
    narrow.load_state_dict(convert_weights(graph, wide.state_dict()))  # strict: exactly narrow's keys and shapes
    return wide.eval(), narrow.eval()


def test_an_ordered_layer_keeps_its_first_components(tmp_path):
    wide, narrow = convert(_spec(tmp_path, "true"))
    assert narrow.h_linear.down.weight.shape == (5, 32) and narrow.h_linear.up.weight.shape == (48, 5)
    torch.testing.assert_close(narrow.h_linear.down.weight, wide.h_linear.down.weight[:5])
    torch.testing.assert_close(narrow.h_linear.up.weight, wide.h_linear.up.weight[:, :5])
    x = torch.randn(6, 32)
    with torch.no_grad():  # the wide model on the prefix: the components past 5 zeroed
        wide.h_linear.down.weight[5:] = 0
    torch.testing.assert_close(outputs(narrow, [x]), outputs(wide, [x]))


def test_an_unordered_layer_is_refactored_to_the_best_rank_r_weight(tmp_path):
    wide, narrow = convert(_spec(tmp_path, "false"))
    product = (wide.h_linear.up.weight @ wide.h_linear.down.weight).double()
    u, s, vh = torch.linalg.svd(product)
    best = (u[:, :5] * s[:5]) @ vh[:5]
    got = (narrow.h_linear.up.weight @ narrow.h_linear.down.weight).double()
    torch.testing.assert_close(got, best, rtol=1e-4, atol=1e-5)
    truncated = (wide.h_linear.up.weight[:, :5] @ wide.h_linear.down.weight[:5]).double()
    assert (got - product).norm() < (truncated - product).norm()  # better than cutting an unordered prefix
    torch.testing.assert_close(narrow.h_linear.up.bias, wide.h_linear.up.bias)


@pytest.mark.parametrize("rank", [12, 20])
def test_a_rank_that_cuts_nothing_keeps_the_layer_with_a_warning(tmp_path, rank):
    (plan,) = compile_graph(_spec(tmp_path, "true", rank), "narrow").plan
    assert plan.kept and plan.warning is not None
    assert f"rank={rank} is not below its rank 12" in plan.warning.message
