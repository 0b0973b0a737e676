"""Shared test helpers: compile a spec for every target and run what comes out."""

from __future__ import annotations

import itertools
from pathlib import Path

import numpy as np
import torch

from specc import types
from specc.codegen import backends, torch_backend
from specc.codegen.torch_backend import load_module
from specc.compiler import compilable, compile_graph, load
from specc.ir import Graph
from specc.types import Dim

ROOT = Path(__file__).resolve().parent.parent
SPECS = sorted((ROOT / "specs").glob("*.nnspec"))
SYMBOL_SIZES = {"B": 3, "T": 5}
_counter = itertools.count()


# The zoo's published configs are large (LLaMA-7B has 6.7e9 parameters), so tests that build every spec's
# models build these at a small config of the same architecture; each zoo spec's own test checks its
# published parameter count without allocating it.
SMALL = {
    "llama": {"vocab_size": 64, "hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2,
              "num_attention_heads": 4, "num_key_value_heads": 2},
    "gpt2": {"vocab_size": 64, "n_positions": 32, "n_embd": 32, "n_layer": 2, "n_head": 4},
    "vit": {"image_size": 32, "patch_size": 8, "hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 4,
            "intermediate_size": 64, "num_labels": 10},
    "mixtral_moe": {"hidden_size": 32, "intermediate_size": 64, "num_local_experts": 4, "num_experts_per_tok": 2},
    "resnet18": {"num_classes": 10, "image_size": 32},
}


def models_in(spec: Path) -> list[str]:
    return [t.name for t in compilable(load(spec))]


def spec_models() -> list[tuple[Path, str]]:
    return [(spec, model) for spec in SPECS for model in models_in(spec)]


def compile_spec(spec: Path, model: str):
    """A shipped spec's model, at its small config if it has one (see SMALL)."""
    return compile_graph(spec, model, params=SMALL.get(spec.stem))


def dim_value(d: Dim) -> int:
    return types.dim_value(d, SYMBOL_SIZES, 2)


def example_inputs(graph: Graph, seed: int = 0, int_high: dict[str, int] | None = None) -> list[torch.Tensor]:
    return torch_backend.example_inputs(graph, SYMBOL_SIZES, 2, seed, int_high)


def python_module(graph: Graph, target: str):
    """Generate, import and instantiate the torch or triton module of `graph`."""
    source = backends()[target].emit(graph).data.decode()
    module = load_module(source, f"specc_test_{target}_{graph.name}_{next(_counter)}")
    return module, module.Model()


def as_tuple(result) -> tuple[torch.Tensor, ...]:
    return result if isinstance(result, tuple) else (result,)


def run_onnx(data: bytes, graph: Graph, inputs: list[torch.Tensor]) -> list[np.ndarray]:
    import onnxruntime as ort

    session = ort.InferenceSession(data, providers=["CPUExecutionProvider"])
    return session.run(None, {name: t.numpy() for name, t in zip(graph.inputs, inputs)})


def outputs_on_every_target(graph: Graph, inputs: list[torch.Tensor], state: dict | None,
                            tmp_path: Path) -> dict[str, tuple[torch.Tensor, ...]]:
    """The model's outputs from torch, triton (the interpreter) and onnxruntime in eval mode, all with
    the weights `state` (a torch state dict; None for a model without weights, or the ONNX seed's)."""
    got = {}
    for target in ("torch", "triton"):
        _, model = python_module(graph, target)
        if state is not None:
            model.load_state_dict(state, strict=True)
        with torch.no_grad():
            got[target] = as_tuple(model.eval()(*inputs))
    weights = None
    if state is not None:
        weights = tmp_path / "w.pt"
        torch.save(state, weights)
    got["onnx"] = tuple(torch.from_numpy(o) for o in run_onnx(backends()["onnx"].emit(graph, weights=weights).data,
                                                                 graph, inputs))
    return got


__all__ = ["compile_graph", "compile_spec", "ROOT", "SPECS"]
