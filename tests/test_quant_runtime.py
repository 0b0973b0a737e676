"""How quant_linear runs: onnxruntime's MatMulNBits on the onnx target, the tiled dequantize-matmul on torch.

Every case compares a target's outputs with the torch module's plain path (W dequantized whole, then
F.linear), on random codes, scales and zero points, so layouts (nibble order, block padding, int8's
shifted zero point, packed zero points) are checked value by value, not by shape.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap

import onnx
import pytest
import torch
import torch.nn.functional as F

from specc.codegen import backends
from specc.compiler import compile_graph
from targets import python_module, run_onnx


def spec_graph(tmp_path, expr: str, shape: str = "f32[B, T, 40]", name: str = "q"):
    path = tmp_path / f"{name}.nnspec"
    path.write_text(f"model {name}() {{\n    input x: {shape}\n    output y = {expr}\n}}\n")
    return compile_graph(path)


def randomized(graph, seed: int = 0) -> torch.nn.Module:
    """The torch module with random codes (every code value occurs), scales and zero points."""
    torch.manual_seed(seed)
    _, model = python_module(graph, "torch")
    state = model.state_dict()
    for key, value in state.items():
        if value.dtype == torch.uint8 and key.endswith("zero"):
            state[key] = torch.randint(0, 16 if value.max() < 16 else 256, value.shape, dtype=torch.uint8)
        elif value.dtype in (torch.uint8, torch.int8):
            info = torch.iinfo(value.dtype)
            state[key] = torch.randint(info.min, info.max + 1, value.shape, dtype=value.dtype)
        elif key.endswith("scale"):
            state[key] = torch.rand(value.shape) * 0.01 + 1e-3
    model.load_state_dict(state)
    return model.eval()


def plain(model: torch.nn.Module, x: torch.Tensor) -> torch.Tensor:
    """The reference: every quant layer's whole W dequantized, then F.linear (what training runs)."""
    layer = next(m for m in model.modules() if type(m).__name__ == "_QuantLinear")
    return F.linear(x, layer.dequantized(), layer.bias)


def emit_onnx(graph, model, tmp_path):
    weights = tmp_path / "w.pt"
    torch.save(model.state_dict(), weights)
    data = backends()["onnx"].emit(graph, weights=weights).data
    return data, onnx.load_from_string(data)


# (expression, input shape, whether MatMulNBits runs it)
CASES = [
    ("quant_linear(x, 24, 4, group=16)", "f32[B, T, 40]", True),  # short last group, blocks of 16
    ("quant_linear(x, 24, 4, group=16, symmetric=false)", "f32[B, T, 40]", True),  # packed zero points
    ("quant_linear(x, 24, 4, group=48, symmetric=false, bias=false)", "f32[B, 100]", True),  # 3 blocks per group
    ("quant_linear(x, 24, 8)", "f32[B, 40]", False),  # int8, f32 activations: folded at load
    ("quant_linear(x, 24, 8, group=32, symmetric=false)", "f32[B, 70]", False),
    ("quant_linear(x, 24, 8, group=16, symmetric=false, onnx=\"standard\")", "f32[B, 70]", False),
    ("quant_linear(x, 24, 4, group=10, symmetric=false)", "f32[B, 40]", False),
    ("quant_linear(x, 24, 4)", "f32[B, 33]", True),  # per-channel, odd width, block wider than the layer
    ("quant_linear(x, 24, 4, group=10)", "f32[B, 40]", False),  # no power-of-two block: standard ops
    ("quant_linear(x, 24, 4, group=16, onnx=\"standard\")", "f32[B, 40]", False),
]


@pytest.mark.parametrize("expr,shape,nbits", CASES, ids=[str(i) for i in range(len(CASES))])
def test_onnx_matches_the_dequantized_layer(tmp_path, expr, shape, nbits):
    graph = spec_graph(tmp_path, expr, shape)
    model = randomized(graph)
    data, proto = emit_onnx(graph, model, tmp_path)
    onnx.checker.check_model(proto, full_check=True)
    ops = {(n.domain, n.op_type) for n in proto.graph.node}
    domains = {o.domain for o in proto.opset_import}
    assert (("com.microsoft", "MatMulNBits") in ops) == nbits
    assert ("com.microsoft" in domains) == nbits  # a standard graph imports no contrib domain
    dims = [3 if d == "B" else 5 if d == "T" else int(d) for d in shape[4:-1].split(", ")]
    x = torch.randn(*dims)
    with torch.no_grad():
        expected = plain(model, x)
        torch.testing.assert_close(model(x), expected, rtol=1e-5, atol=1e-5)
    (got,) = run_onnx(data, graph, [x])
    torch.testing.assert_close(torch.from_numpy(got), expected, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("fmt,symmetric", [("int4", "true"), ("int8", "true"), ("int8", "false")])
def test_accuracy_level_reaches_matmulnbits(tmp_path, fmt, symmetric):
    """accuracy_level=4 runs MatMulNBits (int8 weights too: codes shifted to its zero point 128, or
    their own zero points) with int8 activations: close to the f32 numbers, not equal to them."""
    path = tmp_path / "a.nnspec"
    path.write_text("model net() {\n    input x: f32[B, 256]\n    output y = linear(x, 64)\n}\n"
                    f"compress small = net {{\n    quantize({fmt}, group=32, symmetric={symmetric}, "
                    "accuracy_level=4) on linear\n}\n")
    graph = compile_graph(path, "small")
    model = randomized(graph)
    data, proto = emit_onnx(graph, model, tmp_path)
    (node,) = [n for n in proto.graph.node if n.op_type == "MatMulNBits"]
    attrs = {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}
    assert attrs == {"K": 256, "N": 64, "bits": int(fmt[3:]), "block_size": 32, "accuracy_level": 4}
    x = torch.randn(4, 256)
    with torch.no_grad():
        expected = plain(model, x)
    (got,) = run_onnx(data, graph, [x])
    error = (torch.from_numpy(got) - expected).norm() / expected.norm()
    assert 0 < error < 0.02  # int8 activations: close, and not the f32 numbers


def test_quantize_transform_can_ask_for_standard_onnx(tmp_path):
    path = tmp_path / "s.nnspec"
    path.write_text("model net() {\n    input x: f32[B, 64]\n    output y = linear(relu(linear(x, 32)), 8)\n}\n"
                    "compress small = net {\n    quantize(int8, onnx=\"standard\") on linear\n}\n")
    graph = compile_graph(path, "small")
    _, proto = emit_onnx(graph, randomized(graph), tmp_path)
    assert {n.domain for n in proto.graph.node} == {""}
    assert [o.domain for o in proto.opset_import] == [""]


@pytest.mark.parametrize("expr,shape", [("quant_linear(x, 300, 4, group=16, symmetric=false)", "f32[B, T, 40]"),
                                        ("quant_linear(x, 300, 4, group=10)", "f32[B, 35]"),
                                        ("quant_linear(x, 300, 8, symmetric=false)", "f32[B, 40]"),
                                        ("quant_linear(x, 300, 8, group=16, bias=false)", "f32[B, 40]")])
def test_torch_tiles_match_the_whole_weight(tmp_path, expr, shape, monkeypatch):
    graph = spec_graph(tmp_path, expr, shape)
    module, model = python_module(graph, "torch")
    model = randomized(graph)
    monkeypatch.setattr(type(next(m for m in model.modules() if type(m).__name__ == "_QuantLinear")),
                        "TILE_BYTES", 40 * 4 * 7)  # 7-row tiles: several bands and a short last one
    dims = [2 if d == "B" else 3 if d == "T" else int(d) for d in shape[4:-1].split(", ")]
    x = torch.randn(*dims)
    with torch.no_grad():
        torch.testing.assert_close(model(x), plain(model, x), rtol=1e-5, atol=1e-5)
    # training: x needs a gradient, so the whole-W path runs and gives it one
    x.requires_grad_()
    (grad,) = torch.autograd.grad(model(x).sum(), [x])
    layer = next(m for m in model.modules() if type(m).__name__ == "_QuantLinear")
    torch.testing.assert_close(grad, layer.dequantized().sum(0).expand_as(x), rtol=1e-4, atol=1e-5)


def test_torch_forward_peaks_below_the_dense_weight(tmp_path):
    """The peak resident memory a forward adds (in a fresh process) is far below the float W it stands for."""
    graph = spec_graph(tmp_path, "quant_linear(x, 4096, 4, group=128)", "f32[B, 2048]")
    _, model = python_module(graph, "torch")
    weights = tmp_path / "w.pt"
    torch.save(model.state_dict(), weights)
    code = backends()["torch"].emit(graph).data.decode()
    (tmp_path / "gen.py").write_text(code)
    script = textwrap.dedent(f"""
        import sys, torch
        sys.path.insert(0, {str(tmp_path)!r})
        import gen

        def peak_kib(run):
            \"\"\"Resident memory `run` adds at its peak: Linux resets the high-water mark on `5 > clear_refs`.\"\"\"
            def status(field):
                return int(next(l for l in open("/proc/self/status") if l.startswith(field)).split()[1])
            with open("/proc/self/clear_refs", "w") as f:
                f.write("5")
            start = status("VmRSS:")
            run()
            return status("VmHWM:") - start

        torch.set_num_threads(1)
        model = gen.Model().eval()
        model.load_state_dict(torch.load({str(weights)!r}))
        layer, x = model.y, torch.randn(1, 2048)
        with torch.no_grad():
            warm = gen.Model().eval()  # kept alive, so the measured call cannot reuse its memory
            warm(x)  # first-call costs of another instance (library code paged in, thread pools)
            print(peak_kib(lambda: model(x)))  # the first call: int4 codes unpacked, one a byte, and kept
            print(peak_kib(lambda: torch.nn.functional.linear(x, layer.dequantized(), layer.bias)))
    """)
    tiled, whole = map(int, subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                                           check=True).stdout.split())
    dense_kib = 4096 * 2048 * 4 // 1024
    assert tiled < dense_kib // 2, (tiled, dense_kib)  # a quarter of W for the codes kept, a tile
    assert whole >= dense_kib // 2, (whole, dense_kib)  # the measurement can see a whole W


def test_summary_says_which_compressed_layers_run_slower_than_dense(tmp_path):
    path = tmp_path / "n.nnspec"
    path.write_text("model net() {\n    input x: f32[B, 64]\n    h = relu(linear(x, 32))\n    g = relu(linear(h, 32))\n"
                    "    output y = linear(g, 8)\n}\n"
                    "compress small = net {\n    quantize(int4, group=32) on \"h_linear\"\n"
                    "    quantize(int8, onnx=\"standard\") on \"g_linear\"\n    sparsity(pattern=2:4) on \"y\"\n}\n")
    from specc.summary import speed_notes

    assert speed_notes(compile_graph(path, "net")) == []  # dense layers: nothing to say
    quant, sparse = speed_notes(compile_graph(path, "small"))
    assert quant.startswith("h_linear, g_linear (quant_linear): slower than dense on the torch target")
    assert "g_linear use onnx=\"standard\"" in quant and "MatMulNBits" in quant
    assert sparse.startswith("y (nm_linear)") and "onnx target runs at dense speed" in sparse
    from typer.testing import CliRunner

    from specc.cli import app

    result = CliRunner().invoke(app, ["summary", str(path), "-m", "small"])
    assert result.exit_code == 0
    assert result.output.count("note: ") == 2 and f"note: {sparse}" in result.output.replace("\n", " ")


@pytest.mark.parametrize("expr", ["quant_linear(x, 24, 4, group=16)", "quant_linear(x, 24, 4, group=16, "
                                  "symmetric=false, bias=false)", "quant_linear(x, 24, 8, accuracy_level=4)"])
def test_the_bench_bare_matmulnbits_model_is_that_node_alone_and_computes_the_same(tmp_path, expr):
    """bench/compression_bench.py times a hand-built model of specc's one MatMulNBits node (`onnx bare`) to
    tell specc's graph from onnxruntime's kernel: it must hold that node alone and compute what specc's does."""
    sys.path.insert(0, str(__import__("targets").ROOT / "bench"))
    from compression_bench import bare_matmulnbits

    graph = spec_graph(tmp_path, expr, "f32[B, 64]")
    data, _ = emit_onnx(graph, randomized(graph), tmp_path)
    bare = onnx.load_from_string(bare_matmulnbits(data))
    onnx.checker.check_model(bare)
    assert [n.op_type for n in bare.graph.node] == ["MatMulNBits"]
    x = torch.randn(5, 64)
    (want,) = run_onnx(data, graph, [x])
    (got,) = run_onnx(bare.SerializeToString(), graph, [x])
    assert (got == want).all()
