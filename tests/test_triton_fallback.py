"""The triton module's CPU fallback is the torch module's computation, op for op.

Without a GPU and without TRITON_INTERPRET no kernel can run, so each fused group
must cost what the torch target's ops cost: its function (`_gN`) is bound at import to
the group's torch reference, with no autograd.Function, broadcast copies or
preallocated outputs. Checked by structure: which function each group calls, and the
aten ops a forward pass dispatches (recorded with a TorchDispatchMode), compared with
the torch module's. (Timings are bench/run.py's business.)

conftest.py sets TRITON_INTERPRET=1 for the whole suite; these tests unset it while
the generated module is imported, which then needs a real file for @triton.jit.

At the end: bench/run.py's scheduler, which interleaves the configurations' timing rounds.
"""

from __future__ import annotations

import importlib.util
import itertools
import sys
from pathlib import Path

import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode

from specc.codegen import backends
from targets import as_tuple, compile_graph, python_module

_counter = itertools.count()
ROOT = Path(__file__).resolve().parent.parent

# an elementwise group, two matmul-epilogue groups that share one kernel (a `repeat`), and one with two outputs
SPEC = """model fallback() {
    input x: f32[B, 16]
    input r: f32[B, 16]
    h = repeat 2 { relu(linear(_, 16)) } (x)
    output y = sigmoid(linear(h, 16)) * r + r
    output z = exp(r) - r * 0.5
}
"""


class _AtenOps(TorchDispatchMode):
    """Records the aten op of every tensor operation dispatched while active."""

    def __init__(self) -> None:
        super().__init__()
        self.ops: list[str] = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        self.ops.append(str(func))
        return func(*args, **(kwargs or {}))


def _import_triton_module(graph, tmp_path, monkeypatch, cuda: bool):
    """The generated triton module imported as a file, with no interpreter and torch.cuda.is_available()
    forced to `cuda` (True: a GPU machine, whose module must still send CPU tensors to the torch ops)."""
    monkeypatch.delenv("TRITON_INTERPRET", raising=False)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: cuda)
    name = f"specc_fallback_{next(_counter)}"
    path = tmp_path / f"{name}.py"
    path.write_text(backends()["triton"].emit(graph).data.decode())
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, name, module)
    spec.loader.exec_module(module)
    return module


def _graph(tmp_path):
    path = tmp_path / "fallback.nnspec"
    path.write_text(SPEC)
    graph = compile_graph(path)
    groups = {n.group for n in graph.nodes() if n.group}
    anchored = {n.group for n in graph.nodes() if n.group and n.op == "linear"}
    assert anchored and groups - anchored, "the spec must have both kinds of group"
    return graph


@pytest.mark.parametrize("cuda", [False, True], ids=["cpu-only torch", "cuda available, cpu tensors"])
def test_cpu_fallback_dispatches_exactly_the_torch_modules_ops(tmp_path, monkeypatch, cuda):
    graph = _graph(tmp_path)
    module = _import_triton_module(graph, tmp_path, monkeypatch, cuda)
    assert not module._INTERPRET and module._KERNELS == cuda
    for function in (module._FusedElementwise, module._LinearEpilogue):
        monkeypatch.setattr(function, "apply", lambda *a: pytest.fail("an autograd.Function ran on the CPU fallback"))
    _, reference = python_module(graph, "torch")
    model = module.Model()
    model.load_state_dict(reference.state_dict())
    gen = torch.Generator().manual_seed(0)
    xs = [torch.randn(3, 16, generator=gen) for _ in graph.inputs]

    for grad in (False, True):
        with torch.set_grad_enabled(grad):
            with _AtenOps() as torch_ops:
                expected = as_tuple(reference(*xs))
            with _AtenOps() as triton_ops:
                got = as_tuple(model(*xs))
        assert triton_ops.ops == torch_ops.ops  # same ops, in the same order: no copies, no extra outputs
        assert any("addmm" in op for op in triton_ops.ops) and any("exp" in op for op in triton_ops.ops)
        for g, e in zip(got, expected, strict=True):
            assert torch.equal(g, e)


def test_without_any_kernel_target_each_group_is_bound_to_its_torch_reference(tmp_path, monkeypatch):
    graph = _graph(tmp_path)
    module = _import_triton_module(graph, tmp_path, monkeypatch, cuda=False)
    kernels = [name[:-len("_kernel")] for name in vars(module) if name.startswith("_g") and name.endswith("_kernel")]
    assert len(kernels) >= 3
    for g in kernels:
        assert getattr(module, g) is getattr(module, g + "_torch")  # no wrapper call at all


def test_with_a_kernel_target_cpu_tensors_still_take_the_torch_path_and_cuda_ones_would_not(tmp_path, monkeypatch):
    graph = _graph(tmp_path)
    module = _import_triton_module(graph, tmp_path, monkeypatch, cuda=True)
    launched = []
    monkeypatch.setattr(module._FusedElementwise, "apply", lambda *a: launched.append(a[0]))
    (g,) = [name[:-len("_kernel")] for name in vars(module)
            if name.startswith("_g") and name.endswith("_kernel") and not hasattr(getattr(module, name), "configs")]
    r = torch.randn(3, 16)
    torch.testing.assert_close(getattr(module, g)(r)[0], torch.exp(r) - r * 0.5)
    assert launched == []

    class _CudaLike(torch.Tensor):  # a CPU tensor that says it is on CUDA: the dispatcher must pick the kernel
        is_cuda = True

    getattr(module, g)(r.as_subclass(_CudaLike))
    assert launched == [getattr(module, g + "_kernel")]


# ---------------------------------------------------------------- bench/run.py's round scheduler


def _bench():
    spec = importlib.util.spec_from_file_location("specc_bench_run", ROOT / "bench" / "run.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_bench_interleaves_rounds_across_configurations():
    bench = _bench()
    assert bench.interleaved_schedule(["a", "b", "c"], 3) == [
        (0, "a"), (0, "b"), (0, "c"), (1, "a"), (1, "b"), (1, "c"), (2, "a"), (2, "b"), (2, "c")]
    assert bench.interleaved_schedule(["a"], 2) == [(0, "a"), (1, "a")]
    assert bench.interleaved_schedule(["a", "b"], 0) == []


def test_bench_measure_runs_warmups_then_one_round_per_configuration_in_turn():
    bench = _bench()
    calls: list[str] = []
    configs = {name: (lambda name=name: calls.append(name)) for name in ("torch", "triton", "compile")}
    samples = bench.measure(configs, rounds=3, repeat=2, device="cpu", warmup=1)
    warmups, timed = calls[:3], calls[3:]
    assert warmups == ["torch", "triton", "compile"]
    # each round: `repeat` back-to-back calls of one configuration; rounds rotate through all of them
    assert timed == ["torch", "torch", "triton", "triton", "compile", "compile"] * 3
    assert {name: len(s) for name, s in samples.items()} == {"torch": 3, "triton": 3, "compile": 3}
    assert all(t >= 0 for s in samples.values() for t in s)
