"""How much memory a weight-compressed linear layer's forward takes on the torch target.

nm_linear (2:4, N:M), nm_mask_linear (learnable masks) and codebook_linear keep their weight compressed
and rebuild it a band of rows at a time (the module's one `_banded_linear`), so a forward never holds a
whole float W; masked_linear (prune) stores only its weight (the zeros are the mask) and infers with the
dense matmul. Checked three ways: inference gives the training forward's outputs (and training, which
builds W whole, still gets gradients); the forward's resident-memory peak, measured in a fresh process,
stays far below the float W it stands for; and a 2:4 or codebook layer's weights plus its forward's peak
stay below a dense layer's, a pruned layer's at most a dense layer's.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import pytest
import torch

from specc.codegen import backends
from specc.compiler import compile_graph
from targets import python_module

# (op call on x, the tensors that train)
LAYERS = {
    "2:4": ("nm_linear(x, {out}, n=2, m=4)", ["values", "bias"]),
    "1:8": ("nm_linear(x, {out}, n=1, m=8, bias=false)", ["values"]),
    "learnable 2:4": ("nm_mask_linear(x, {out}, n=2, m=4)", ["weight", "logits", "bias"]),
    "prune": ("masked_linear(x, {out})", ["weight", "bias"]),
    "codebook k16": ("codebook_linear(x, {out}, k=16)", ["centroids", "bias"]),
    "codebook k4 dim 2": ("codebook_linear(x, {out}, k=4, dim=2)", ["centroids", "bias"]),
}


def layer_graph(tmp_path, name: str, expr: str, width: int, out: int):
    path = tmp_path / f"{name}.nnspec"
    path.write_text(f"model {name}() {{\n    input x: f32[B, T, {width}]\n    output y = {expr.format(out=out)}\n}}\n")
    return compile_graph(path)


def randomized(model: torch.nn.Module) -> torch.nn.Module:
    """Half the weights of masked_linear zeroed at random (its zeros are what prune removed; a fresh layer
    has none), random logits for learnable masks."""
    with torch.no_grad():
        for module in model.modules():
            if type(module).__name__ == "_MaskedLinear":
                module.weight.mul_(torch.rand(module.weight.shape) < 0.5)
        for name, tensor in model.state_dict().items():
            if name.endswith("logits"):
                tensor.copy_(torch.randn(tensor.shape))
    return model.eval()


@pytest.mark.parametrize("layer", LAYERS)
def test_bands_give_the_whole_weight_outputs_and_training_gets_gradients(tmp_path, monkeypatch, layer):
    expr, trained = LAYERS[layer]
    torch.manual_seed(0)
    module, model = python_module(layer_graph(tmp_path, "m", expr, 24, 20), "torch")
    model = randomized(model)
    if layer != "prune":  # prune infers with the dense matmul: no bands
        monkeypatch.setattr(module, "_BAND_BYTES", 7 * 24 * 4)  # 7-row bands: several, and a short last one
    x = torch.randn(2, 3, 24)
    with torch.no_grad():
        banded = model(x)
    whole = model(x)  # the parameters want gradients: W is rebuilt whole
    assert whole.requires_grad
    torch.testing.assert_close(banded, whole.detach(), rtol=1e-6, atol=1e-6)
    whole.square().sum().backward()
    params = dict(model.named_parameters())
    for name in trained:
        grad = params[f"y.{name}"].grad
        assert grad is not None and grad.abs().sum() > 0, name
    torch.optim.SGD(model.parameters(), lr=0.5).step()  # in place: what a layer caches must follow
    with torch.no_grad():
        banded = model(x)
    torch.testing.assert_close(banded, model(x).detach(), rtol=1e-6, atol=1e-6)


def test_learnable_masks_sample_in_training_mode_without_gradients_too(tmp_path):
    """Training mode samples a mask per call (two calls differ) even under no_grad, where bands would run."""
    torch.manual_seed(0)
    _, model = python_module(layer_graph(tmp_path, "m", LAYERS["learnable 2:4"][0], 16, 8), "torch")
    model.train()
    x = torch.randn(64, 16)
    with torch.no_grad():
        assert not torch.equal(model(x), model(x))


MEASURE = textwrap.dedent("""
    import gc, json, sys, torch
    sys.path.insert(0, sys.argv[1])

    def status(field):
        return int(next(l for l in open("/proc/self/status") if l.startswith(field)).split()[1])

    def reset():
        gc.collect()
        with open("/proc/self/clear_refs", "w") as f:  # the high-water mark restarts at the current size
            f.write("5")
        return status("VmRSS:")

    torch.set_num_threads(1)
    results = {}
    for name in sys.argv[2:]:
        gen = __import__(name)
        if hasattr(gen, "_BAND_BYTES"):
            gen._BAND_BYTES = 2 ** 19
        x = torch.randn(4, WIDTH)
        with torch.no_grad():
            gen.Model().eval()(x[:, :WIDTH])  # first-call costs (library code paged in) outside the measure
        start = reset()
        model = gen.Model().eval()
        built = reset()
        with torch.no_grad():
            model(x)
        forward = status("VmHWM:") - built
        whole = None
        if name != "dense":  # the measurement can see a whole W: the training path's rebuilt weight
            reset()
            model(x)
            whole = status("VmHWM:") - built
        results[name] = {"weights": built - start, "forward": forward, "whole": whole}
        del model
    print(json.dumps(results))
""")


def test_no_compressed_forward_holds_a_whole_float_weight(tmp_path):
    width, out = 2048, 4096
    dense_kib = width * out * 4 // 1024  # 32 MiB
    names = {"dense": "linear(x, {out})", "nm": LAYERS["2:4"][0], "mask": LAYERS["learnable 2:4"][0],
             "prune": LAYERS["prune"][0], "codebook": LAYERS["codebook k16"][0]}
    for name, expr in names.items():
        code = backends()["torch"].emit(layer_graph(tmp_path, name, expr, width, out)).data.decode()
        (tmp_path / f"{name}.py").write_text(code)
    env = dict(os.environ, MALLOC_MMAP_THRESHOLD_="65536")  # freed blocks leave the resident set at once
    run = subprocess.run([sys.executable, "-c", MEASURE.replace("WIDTH", str(width)), str(tmp_path), *names],
                         capture_output=True, text=True, env=env, timeout=300)
    assert run.returncode == 0, run.stderr[-2000:]
    kib = json.loads(run.stdout.split("\n")[-2])
    dense = kib.pop("dense")
    for name, m in kib.items():
        # the forward adds a band (512 KiB here) and its indices, not the 32 MiB W; the whole-W path does
        assert m["forward"] < dense_kib // 8, (name, m)
        assert m["whole"] > dense_kib // 2, (name, m)
    for name in ("nm", "codebook"):  # stored smaller than dense: weights plus the forward's peak too
        assert kib[name]["weights"] + kib[name]["forward"] < dense["weights"] + dense["forward"], (name, kib, dense)
    # prune stores what dense does (no mask: a byte a weight would be +8 MiB here) and infers the same way;
    # slack of a few pages for the resident-set accounting
    assert kib["prune"]["weights"] + kib["prune"]["forward"] <= dense["weights"] + dense["forward"] + 64, (kib, dense)
