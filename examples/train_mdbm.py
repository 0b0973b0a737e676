"""Train the monotone DBM of specs/mdbm_mnist.nnspec on 8x8 digits, then complete images and classify.

    pip install scikit-learn          # the digits data set (without it: synthetic 8x8 "digits")
    python examples/train_mdbm.py               # 300 steps, a few minutes on a laptop CPU
    python examples/train_mdbm.py --steps 20    # a smoke run

The model is the spec compiled to a torch module. Each pixel is a categorical variable with two
units (off, on); a hidden layer of groups of 4 units and the label (one group of 10) complete the
state. Mean-field inference is the layer's fixed point q = softmax(W q + b) with the observed pixels
clamped; since I - W >= m I it is unique, so training needs no sampling. Each step hides a random
half of the pixels (and the label) and minimizes the cross-entropy of the hidden pixels and of the
label under q; gradients come from implicit differentiation of the fixed point.

At the end it reports, on held-out images: classification accuracy from the whole image and from its
top half only, and joint completion: the share of the bottom-half pixels inferred right from the top
half (against the per-pixel majority baseline).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch

from specc.codegen import backends
from specc.codegen.torch_backend import load_module
from specc.compiler import compile_graph

SPEC = Path(__file__).resolve().parent.parent / "specs" / "mdbm_mnist.nnspec"


def digits(gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor, str]:
    """Binary 8x8 images [N, 64] and labels: scikit-learn's digits, else noisy class prototypes."""
    try:
        from sklearn.datasets import load_digits
    except ImportError:
        prototypes = torch.rand(10, 64, generator=gen) < 0.4
        labels = torch.randint(0, 10, (1800,), generator=gen)
        flips = torch.rand(1800, 64, generator=gen) < 0.1
        return (prototypes[labels] ^ flips).float(), labels, "synthetic"
    data = load_digits()
    images = torch.tensor(data.images.reshape(-1, 64) >= 8, dtype=torch.float32)
    return images, torch.tensor(data.target), "sklearn digits"


def one_hot_pixels(images: torch.Tensor) -> torch.Tensor:
    """[N, 64] in {0, 1} -> [N, 128]: (off, on) units for each pixel."""
    return torch.stack([1 - images, images], -1).reshape(len(images), -1)


def pixel_mask(observed_pixels: torch.Tensor) -> torch.Tensor:
    """A pixel mask [N, 64] -> the unit mask [N, 128] (both units of a pixel)."""
    return observed_pixels.repeat_interleave(2, dim=1)


def evaluate(model, images: torch.Tensor, labels: torch.Tensor) -> dict[str, float]:
    x = one_hot_pixels(images)
    top = torch.zeros(64, dtype=torch.bool)
    top[:32] = True  # rows 0-3 of the 8x8 image
    with torch.no_grad():
        _, label_all = model(x, pixel_mask(torch.ones_like(images, dtype=torch.bool)))
        completed, label_top = model(x, pixel_mask(top.expand_as(images)))
    on = completed.reshape(len(images), 64, 2)[..., 1] > 0.5
    bottom = ~top
    majority = images.mean(0) > 0.5
    return {
        "accuracy (whole image)": (label_all.argmax(-1) == labels).float().mean().item(),
        "accuracy (top half only)": (label_top.argmax(-1) == labels).float().mean().item(),
        "completion (bottom half pixels right)": (on[:, bottom] == images[:, bottom].bool()).float().mean().item(),
        "completion baseline (per-pixel majority)": (majority[bottom] == images[:, bottom].bool()).float().mean().item(),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--lr", type=float, default=0.02)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--train-tol", type=float, default=1e-4, help="solver tolerance while training")
    args = parser.parse_args()

    gen = torch.Generator().manual_seed(args.seed)
    images, labels, source = digits(gen)
    order = torch.randperm(len(images), generator=gen)
    split = int(0.8 * len(images))
    train, test = order[:split], order[split:]

    graph = compile_graph(SPEC)
    module = load_module(backends()["torch"].emit(graph).data.decode(), "mdbm_mnist")
    torch.manual_seed(args.seed)
    model = module.Model()
    optimizer = torch.optim.Adam(model.parameters(), lr=args.lr)
    print(f"{source}: {len(train)} training and {len(test)} test images; state of "
          f"{model.q.n} units ({sum(p.numel() for p in model.parameters())} parameters)")
    print("before training:", {k: round(v, 3) for k, v in evaluate(model, images[test], labels[test]).items()})

    # training solves (forward and adjoint) to 1e-4, evaluation to the spec's tolerance
    spec_tol, model.q.tol = model.q.tol, args.train_tol
    start = time.perf_counter()
    for step in range(1, args.steps + 1):
        batch = train[torch.randint(0, len(train), (args.batch,), generator=gen)]
        x, y = one_hot_pixels(images[batch]), labels[batch]
        observed = torch.rand(args.batch, 64, generator=gen) < 0.5
        image, label = model(x, pixel_mask(observed))
        truth = x.reshape(args.batch, 64, 2)
        pixel_nll = -(truth * image.reshape(args.batch, 64, 2).clamp_min(1e-6).log()).sum(-1)
        loss = pixel_nll[~observed].mean() - label.gather(1, y[:, None]).clamp_min(1e-6).log().mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        if step % 50 == 0 or step == args.steps:
            print(f"step {step:4d}  loss {loss.item():.3f}  ({time.perf_counter() - start:.0f} s)")
    model.q.tol = spec_tol
    print("after training: ", {k: round(v, 3) for k, v in evaluate(model, images[test], labels[test]).items()})


if __name__ == "__main__":
    main()
