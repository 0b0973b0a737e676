"""Search a transformer encoder's width, depth, heads and activation on a small sequence task, on one CPU thread.

    python examples/search_encoder.py                   # under two minutes
    python examples/search_encoder.py --seconds 5 --median-sample 3 --steps 3   # a smoke run

The space is specs/encoder_classifier_space.nnspec (99 points: width in [12, 24, 48], depth in 1..3, heads in
[1, 2, 4, 8] where width % heads == 0, act in {relu, gelu, silu}). The task: a sequence of 16 tokens of 8 kinds
(one-hot, plus 3 noise features), one of them marked; the label is the kind of the marked token. Without
positions the model must find the mark by attention, and a short training (40 Adam steps) tells the
architectures apart. The score is the validation accuracy.

First a random sample of the space measures its median score; then regularized evolution searches for the
rest of the wall time (--seconds covers both: measuring, compiling and training the points). The script prints
the results table and whether the best point beats the median, and writes the plot of score vs parameters
(SVG; the random sample in grey, its median dashed). With --checkpoint FILE a killed run resumes where it
stopped.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from specc import search
from specc.space import Space

SPEC = Path(__file__).resolve().parent.parent / "specs" / "encoder_classifier_space.nnspec"
LENGTH, KINDS, FEATURES = 16, 8, 12  # FEATURES: the one-hot kind, the mark, 3 noise features


def sequences(n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """`n` sequences and their labels: the kind of the marked token."""
    g = torch.Generator().manual_seed(seed)
    kinds = torch.randint(0, KINDS, (n, LENGTH), generator=g)
    marked = torch.randint(0, LENGTH, (n,), generator=g)
    x = torch.zeros(n, LENGTH, FEATURES)
    x[..., :KINDS] = F.one_hot(kinds, KINDS).float()
    x[torch.arange(n), marked, KINDS] = 1.0
    x[..., KINDS + 1:] = torch.randn(n, LENGTH, FEATURES - KINDS - 1, generator=g)
    return x, kinds[torch.arange(n), marked]


def trainer(steps: int, train: tuple[torch.Tensor, torch.Tensor], valid: tuple[torch.Tensor, torch.Tensor]):
    """train_and_score: `steps` Adam steps on batches of 64, then the accuracy on the validation set. Seeded, so
    the same point always gets the same score (a resumed search ends where an uninterrupted one does)."""
    def train_and_score(model: torch.nn.Module) -> float:
        gen = torch.Generator().manual_seed(0)
        optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
        for _ in range(steps):
            batch = torch.randint(0, len(train[0]), (64,), generator=gen)
            loss = F.cross_entropy(model(train[0][batch]), train[1][batch])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
        model.eval()
        with torch.no_grad():
            return (model(valid[0]).argmax(-1) == valid[1]).float().mean().item()
    return train_and_score


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=105, help="wall time of the random sample and the search")
    parser.add_argument("--median-sample", type=int, default=9, help="random points that measure the median")
    parser.add_argument("--steps", type=int, default=40, help="training steps per point")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--plot", type=Path, default=Path("search_encoder.svg"))
    parser.add_argument("--checkpoint", type=Path, default=None, help="resumable results (JSON lines)")
    args = parser.parse_args()
    torch.set_num_threads(1)
    start = time.perf_counter()

    space = Space.load(SPEC)
    score = trainer(args.steps, sequences(2048, seed=1), sequences(512, seed=2))
    checkpoint = (lambda tag: args.checkpoint.with_suffix(f".{tag}.jsonl")) if args.checkpoint else (lambda _: None)
    print(f"space: {SPEC.name}, {space.size()} points; {args.steps} training steps per point, one thread")

    sizes = {"B": 1, "T": LENGTH}  # FLOPs of one sequence
    sample = search.random_search(space, score, max_evaluations=args.median_sample, seed=args.seed,
                                  input_sizes=sizes, checkpoint=checkpoint("median"))
    median = sample.median()
    left = max(args.seconds - (time.perf_counter() - start), 1.0)
    found = search.evolution(space, score, population=8, sample=3, max_seconds=left, seed=args.seed,
                             input_sizes=sizes, checkpoint=checkpoint("evolution"))
    print(found.table(top=10))
    best = found.best
    print(f"median score of {len(sample.ranked())} random points: {median:.4f}")
    print(f"best score: {best.score:.4f} ({best.params:,} parameters: "
          f"{', '.join(f'{k}={v}' for k, v in best.assignment.items())})")
    print(f"best beats the median: {'yes' if best.score > median else 'no'}")
    found.write_svg(args.plot, title=f"{SPEC.stem}: validation accuracy vs parameters", baseline=sample)
    print(f"plot: {args.plot}; {time.perf_counter() - start:.0f} s in all")


if __name__ == "__main__":
    main()
