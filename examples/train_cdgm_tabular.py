"""A C-DGM generator on real data: the Wisconsin breast cancer set, trained with and without the layer.

    python examples/train_cdgm_tabular.py                  # 1,000 steps per generator, about 8 CPU minutes
    python examples/train_cdgm_tabular.py --layer banded   # the same with disjunctive constraints
    python examples/train_cdgm_tabular.py --steps 20       # a smoke run

The data set (569 tumours, 30 features of cell nuclei, diagnosis malignant/benign) ships with
scikit-learn, so nothing is downloaded. specs/cancer_generator.nnspec is a conditional generator
(z and a one-hot diagnosis -> MLP -> 30 columns) with two constraint layers over its output, whose
constraints every real row satisfies: `sample` (the default `--layer`) with 44 linear constraints,
and `banded` with those and 54 implications (no concavity means no concave points; area in a band
around pi r^2, as staircases over the radius), which allow a set that is not convex. As in the C-DGM
paper's evaluation, three generators of the same architecture and initialization are trained as
conditional VAEs (the generator is the decoder) on the same 70% split:

- `without layer`: trained and sampled on `raw`, the output before the layers;
- `+ violation loss`: the same, with `specc.constraints.violation_loss` of the chosen layer's
  constraints added to its loss;
- `C-DGM layer`: trained and sampled on the chosen layer's output.

For each it prints the share of 10,000 generated rows that violate a constraint and the utility of
the synthetic data: a logistic regression trained on synthetic rows (as many as the real training
split, diagnoses in the real proportions), tested on the real 30% held out (F1 for malignant, ROC
AUC), averaged over 5 synthetic draws. The first row is the same classifier trained on real data.
With `--layer banded`, a column also counts the rows that violate one of the implications.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch
from sklearn.datasets import load_breast_cancer
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import f1_score, roc_auc_score
from sklearn.model_selection import train_test_split
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from torch import nn

from specc.codegen import backends
from specc.codegen.torch_backend import load_module
from specc.compiler import compile_graph
from specc.constraints import ConstraintSet, report, violation_loss

SPEC = Path(__file__).resolve().parent.parent / "specs" / "cancer_generator.nnspec"
VARIANTS = ("without layer", "+ violation loss", "C-DGM layer")
LAYERS = ("sample", "banded")  # the spec's constraint layers, in the order of its outputs (then `raw`)


def utility(features: np.ndarray, labels: np.ndarray, test_x: np.ndarray, test_y: np.ndarray) -> tuple[float, float]:
    """F1 (malignant, label 0, as positive) and ROC AUC on the real test split of a classifier trained on
    (features, labels)."""
    classifier = make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000))
    classifier.fit(features, labels)
    malignant = classifier.predict_proba(test_x)[:, list(classifier.classes_).index(0)]
    return f1_score(test_y == 0, malignant > 0.5), roc_auc_score(test_y == 0, malignant)


def disjunctive_lines(rules: ConstraintSet) -> ConstraintSet:
    """The lines of `rules` that are no plain inequality (a clause of several literals)."""
    return ConstraintSet(rules.columns, (), tuple(f for f in rules.formulas if any(len(c) > 1 for c in f.clauses)))


def one_hot(labels: torch.Tensor) -> torch.Tensor:
    return nn.functional.one_hot(labels, 2).float()


def output(variant: str, layer: str) -> int:
    """Which of the generator's outputs a variant trains and samples on: the layer's, or `raw` (the last)."""
    return LAYERS.index(layer) if variant == "C-DGM layer" else len(LAYERS)


def train(variant: str, layer: str, generator: nn.Module, real: torch.Tensor, labels: torch.Tensor,
          rules: ConstraintSet, steps: int, batch: int, latent: int) -> None:
    """A conditional VAE (as TVAE, one of the C-DGM paper's generators) whose decoder is the generator:
    an encoder maps a real row and its diagnosis to a Gaussian over z, the generator decodes z and the
    diagnosis, and the loss is the reconstruction error in standard units plus the KL divergence."""
    mean, std = real.mean(0), real.std(0)
    encoder = nn.Sequential(nn.Linear(32, 128), nn.ReLU(), nn.Linear(128, 128), nn.ReLU(), nn.Linear(128, 2 * latent))
    optimizer = torch.optim.Adam([*generator.parameters(), *encoder.parameters()], lr=1e-3)
    for _ in range(steps):
        pick = torch.randint(0, len(real), (batch,))
        condition = one_hot(labels[pick])
        mu, log_var = encoder(torch.cat([(real[pick] - mean) / std, condition], 1)).chunk(2, 1)
        z = mu + torch.randn_like(mu) * (0.5 * log_var).exp()
        out = generator(z, condition, mean, std)[output(variant, layer)]
        reconstruction = (((out - real[pick]) / std) ** 2).sum(1).mean()
        kl = 0.5 * (mu ** 2 + log_var.exp() - 1 - log_var).sum(1).mean()
        loss = reconstruction + kl
        if variant == "+ violation loss":
            loss = loss + violation_loss(out, rules)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()


def evaluate(variant: str, layer: str, generator: nn.Module, rules: ConstraintSet, real: torch.Tensor,
             train_y: np.ndarray, test_x: np.ndarray, test_y: np.ndarray, latent: int,
             draws: int = 5) -> tuple[float, float, float, float]:
    """Violation rate on 10,000 rows (of any constraint, and of a disjunctive one), and F1 / AUC averaged
    over `draws` synthetic training sets."""
    pick = output(variant, layer)
    units = real.mean(0), real.std(0)
    with torch.no_grad():
        condition = torch.randint(0, 2, (10_000,))
        rows = generator(torch.randn(10_000, latent), one_hot(condition), *units)[pick]
        rate, rate_disjunctive = report(rows, rules).rate, report(rows, disjunctive_lines(rules)).rate
        scores = []
        for _ in range(draws):
            labels = torch.as_tensor(np.random.permutation(train_y))
            synthetic = generator(torch.randn(len(labels), latent), one_hot(labels), *units)[pick]
            scores.append(utility(synthetic.numpy(), labels.numpy(), test_x, test_y))
    f1, auc = np.mean(scores, 0)
    return rate, rate_disjunctive, f1, auc


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=1000)
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--layer", choices=LAYERS, default="sample",
                        help="the constraint layer: `sample` (linear) or `banded` (linear and disjunctive)")
    args = parser.parse_args()

    data = load_breast_cancer()
    train_x, test_x, train_y, test_y = train_test_split(data.data, data.target, test_size=0.3,
                                                        stratify=data.target, random_state=args.seed)
    rules = ConstraintSet.from_spec(SPEC, layer=args.layer)
    assert report(data.data, rules).rows_violating == 0, "every real row satisfies the spec's constraints"
    module = load_module(backends()["torch"].emit(compile_graph(SPEC)).data.decode(), "cancer_generator")
    real = torch.as_tensor(train_x, dtype=torch.float32)
    labels = torch.as_tensor(train_y)

    banded = args.layer == "banded"  # then a column for the implications
    print(f"{'training data':<18} {'rows violating':>14}" + (f" {'an implication':>14}" if banded else "")
          + f" {'F1':>7} {'AUC':>7}")

    def row(name: str, rate: float, rate_disjunctive: float, f1: float, auc: float) -> None:
        print(f"{name:<18} {rate:>14.1%}" + (f" {rate_disjunctive:>14.1%}" if banded else "")
              + f" {f1:>7.3f} {auc:>7.3f}", flush=True)

    row("real", report(train_x, rules).rate, report(train_x, disjunctive_lines(rules)).rate,
        *utility(train_x, train_y, test_x, test_y))
    for variant in VARIANTS:
        torch.manual_seed(args.seed)
        np.random.seed(args.seed)
        generator = module.CancerGenerator()
        latent = generator.h_linear.in_features - 2
        train(variant, args.layer, generator, real, labels, rules, args.steps, args.batch, latent)
        row(variant, *evaluate(variant, args.layer, generator, rules, real, train_y, test_x, test_y, latent))

if __name__ == "__main__":
    main()
