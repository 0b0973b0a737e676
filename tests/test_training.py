"""Generated torch modules train: under DDP the gradients equal single-process ones."""

from __future__ import annotations

import subprocess
import sys

import torch
import torch.multiprocessing as mp

import ddp_worker
from targets import ROOT


def test_generated_mlp_under_ddp_matches_single_process(tmp_path):
    model_file = tmp_path / "model.py"
    result = subprocess.run([sys.executable, "-m", "specc.cli", "compile", str(ROOT / "specs" / "mlp.nnspec"),
                             "-o", str(model_file)], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    torch.manual_seed(0)
    model = ddp_worker.load_model(model_file)
    torch.save(model.state_dict(), tmp_path / "init.pt")
    x, target = torch.randn(8, 784), torch.randint(0, 10, (8,))
    torch.save((x, target), tmp_path / "batch.pt")

    mp.spawn(ddp_worker.run, args=(2, str(tmp_path)), nprocs=2, join=True)

    model.eval()
    torch.nn.functional.cross_entropy(model(x), target).backward()
    ddp_grads = torch.load(tmp_path / "ddp_grads.pt")
    assert set(ddp_grads) == {"h_linear.weight", "h_linear.bias", "logits.weight", "logits.bias"}
    for name, p in model.named_parameters():
        torch.testing.assert_close(ddp_grads[name], p.grad, rtol=1e-5, atol=1e-6)
        assert p.grad.abs().sum() > 0


def _train_gpt(target: str, steps: int) -> list[float]:
    from targets import compile_graph, python_module

    graph = compile_graph(ROOT / "specs" / "tiny_gpt.nnspec", params={"vocab": 64, "width": 32, "depth": 1})
    torch.manual_seed(0)
    _, model = python_module(graph, target)
    model.train()
    gen = torch.Generator().manual_seed(0)
    tokens = torch.randint(0, 64, (8, 17), generator=gen)
    inputs, targets = tokens[:, :-1], tokens[:, 1:]
    positions = torch.arange(16)
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)
    losses = []
    for _ in range(steps):
        logits = model(inputs, positions)
        loss = torch.nn.functional.cross_entropy(logits.reshape(-1, 64), targets.reshape(-1))
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    return losses


def test_tiny_gpt_trains_and_its_loss_falls():
    losses = _train_gpt("torch", 40)
    assert losses[-1] < 0.6 * losses[0], losses


def test_tiny_gpt_trains_on_the_triton_target_too():
    losses = _train_gpt("triton", 12)  # kernels under Triton's interpreter: fewer steps
    assert losses[-1] < 0.9 * losses[0], losses
