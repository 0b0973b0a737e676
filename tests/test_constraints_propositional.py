"""Propositional constraints over labels (CCN+ / pishield semantics): `probabilities a, b` or `logits a, b` in a
rules file, then lines of labels joined by `and`, `or`, `not`, `->`.

The reference is pishield's propositional ShieldLayer, given the same constraints in strata (one per head,
in the repair order): random Horn-like sets whose heads come after their bodies, each head of one polarity
(so that no bound conflicts: pishield does not resolve conflicts, specc would derive constraints on the
earlier labels).
"""

from __future__ import annotations

import itertools
import random

import pytest
import torch

from specc.compiler import compile_graph
from specc.diagnostics import SpeccError
from targets import outputs_on_every_target, python_module

try:  # pishield's propositional util imports matplotlib.pyplot at the top, for plots this test never draws
    import matplotlib.pyplot  # noqa: F401
except ImportError:
    import sys
    import types

    sys.modules.setdefault("matplotlib", types.ModuleType("matplotlib"))
    sys.modules.setdefault("matplotlib.pyplot", types.ModuleType("matplotlib.pyplot"))
pishield = pytest.importorskip("pishield.propositional_requirements.shield_layer")
from pishield.propositional_requirements.constraint import Constraint  # noqa: E402
from pishield.propositional_requirements.constraints_group import ConstraintsGroup  # noqa: E402
from pishield.propositional_requirements.literal import Literal  # noqa: E402

_counter = itertools.count()
N = 6
NAMES = [f"l{i}" for i in range(N)]


def compile_rules(tmp_path, rules: str, kind: str = "probabilities", n: int = N):
    folder = tmp_path / f"p{next(_counter)}"
    folder.mkdir()
    (folder / "rules.txt").write_text(f"{kind} {', '.join(NAMES[:n])}\n" + rules)
    (folder / "m.nnspec").write_text(
        f"model m() {{\n    input x: f32[B, {n}]\n    columns ({', '.join(NAMES[:n])}) = x\n"
        f"    output y = constrain(x, file=\"rules.txt\") {{\n    }}\n}}\n")
    return compile_graph(folder / "m.nnspec")


def random_set(seed: int):
    """(rules text, pishield strata): heads l1.. of a random polarity each, bodies of 1-2 earlier literals."""
    rng = random.Random(seed)
    lines, strata = [], []
    for head in range(1, N):
        positive = rng.random() < 0.6
        group = []
        for _ in range(rng.randint(0, 2)):
            body = [(j, rng.random() < 0.7) for j in rng.sample(range(head), min(head, rng.randint(1, 2)))]
            text = " and ".join(("" if p else "not ") + NAMES[j] for j, p in body)
            lines.append(f"{text} -> {'' if positive else 'not '}{NAMES[head]}")
            group.append(Constraint(Literal(head, positive), [Literal(j, p) for j, p in body]))
        if group:
            strata.append(ConstraintsGroup(group))
    return "\n".join(lines) + "\n", strata


@pytest.mark.parametrize("seed", range(8))
def test_equals_pishield_on_random_sets(tmp_path, seed):
    rules, strata = random_set(seed)
    if not strata:
        return
    graph = compile_rules(tmp_path, rules)
    _, model = python_module(graph, "torch")
    x = torch.rand(500, N, generator=torch.Generator().manual_seed(seed))
    with torch.no_grad():
        got = model(x)
        expected = pishield.ShieldLayer(N, requirements=strata)(x.clone())
        again = model(got)
    torch.testing.assert_close(got, expected, rtol=0, atol=1e-6)
    assert torch.equal(again, got)
    for group in strata:  # every constraint holds (pishield's own check)
        for c in group:
            assert c.coherent_with(got.double().numpy() + 1e-7 * (1 if c.head.positive else -1)).all(), str(c)


def test_logits_follow_the_probabilities(tmp_path):
    """On logits, `not a` is -a: sigmoid of the repaired logits is pishield's repair of the sigmoids."""
    rules, strata = random_set(3)
    graph = compile_rules(tmp_path, rules, "logits")
    _, model = python_module(graph, "torch")
    x = torch.randn(300, N, generator=torch.Generator().manual_seed(1), dtype=torch.float64) * 3
    with torch.no_grad():
        got = torch.sigmoid(model(x.float()).double())
        expected = pishield.ShieldLayer(N, requirements=strata)(torch.sigmoid(x.float()).double())
    torch.testing.assert_close(got, expected, rtol=0, atol=1e-6)


def test_every_target_agrees(tmp_path):
    graph = compile_rules(tmp_path, "l0 and l1 -> l2\nl2 -> not l3\nl3 or l4 or not l0\nl5\n")
    x = torch.rand(64, N, generator=torch.Generator().manual_seed(5))
    x[0, 1] = float("nan")
    got = outputs_on_every_target(graph, [x], None, tmp_path)
    for target in ("triton", "onnx"):
        torch.testing.assert_close(got[target][0], got["torch"][0], rtol=0, atol=0, equal_nan=True, msg=target)
    y = got["torch"][0][1:]
    assert (y[:, 2] >= torch.minimum(y[:, 0], y[:, 1])).all()
    assert (1 - y[:, 3] >= y[:, 2] - 1e-7).all()
    assert (torch.maximum(torch.maximum(y[:, 3], y[:, 4]), 1 - y[:, 0]) >= 0).all()
    assert (y[:, 5] == 1).all()  # a label alone is forced true
    assert got["torch"][0][0].isnan().all()


def test_contradictions_are_rejected(tmp_path):
    with pytest.raises(SpeccError) as info:
        compile_rules(tmp_path, "l0\nnot l0\n")
    assert info.value.code == "E0710"


@pytest.mark.parametrize("rules, code, line, col", [
    ("l0 and l1 >= 0.5 -> l2\n", "E0717", 2, 8),
    ("l1 >= 0.5 or l2\n", "E0717", 2, 14),
])
def test_errors_are_located(tmp_path, rules, code, line, col):
    with pytest.raises(SpeccError) as info:
        compile_rules(tmp_path, rules)
    assert info.value.code == code, info.value.message
    assert (info.value.span.line, info.value.span.col) == (line, col)


def test_bad_label_lines(tmp_path):
    folder = tmp_path / "bad"
    folder.mkdir()
    (folder / "rules.txt").write_text("l0 >= 0\nprobabilities l0, l9\n")
    (folder / "m.nnspec").write_text("model m() {\n    input x: f32[B, 2]\n    columns (l0, l1) = x\n"
                                     "    output y = constrain(x, file=\"rules.txt\") {\n    }\n}\n")
    with pytest.raises(SpeccError) as info:
        compile_graph(folder / "m.nnspec")
    assert info.value.code == "E0718" and (info.value.span.line, info.value.span.col) == (2, 19)


BLOCK = """model m() {{
    input x: f32[B, 4]
    columns (cat, dog, animal, indoor) = x
    output y = constrain(x, order=[cat, dog, indoor, animal]) {{
        probabilities = [cat, dog, animal, indoor]
{lines}
    }}
}}
"""


def test_a_block_takes_labels_and_propositional_lines(tmp_path):
    path = tmp_path / "b.nnspec"
    path.write_text(BLOCK.format(lines="        cat -> animal\n        dog -> animal\n"
                                       "        cat and indoor -> not dog\n        indoor <= 0.9"))
    graph = compile_graph(path)
    x = torch.tensor([[0.9, 0.8, 0.1, 0.7], [0.2, 0.3, 0.9, 0.1], [0.5, 0.2, 0.3, 0.95]])
    # animal >= max(cat, dog); indoor (after dog) <= 1 - min(cat, dog) and <= 0.9
    expected = torch.tensor([[0.9, 0.8, 0.9, 0.2], [0.2, 0.3, 0.9, 0.1], [0.5, 0.2, 0.5, 0.8]])
    got = outputs_on_every_target(graph, [x], None, tmp_path)
    for target, (y,) in got.items():
        torch.testing.assert_close(y, expected, rtol=0, atol=1e-7, msg=target)


def test_a_block_line_mixing_labels_and_inequalities_is_located(tmp_path):
    path = tmp_path / "b.nnspec"
    path.write_text(BLOCK.format(lines="        cat and dog >= 0.5 -> animal"))
    with pytest.raises(SpeccError) as info:
        compile_graph(path)
    assert info.value.code == "E0717"
    assert (info.value.span.line, info.value.span.col) == (6, 17)
