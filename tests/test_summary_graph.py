"""`specc summary` counts what torch counts; `specc graph` draws the IR."""

from __future__ import annotations

import shutil
import subprocess
import sys

import pytest

from specc.summary import summarize, totals
from specc.ties import tied_targets
from targets import ROOT, compile_graph, compile_spec, python_module, spec_models


@pytest.mark.parametrize("spec,model", spec_models(), ids=[f"{s.stem}:{m}" for s, m in spec_models()])
def test_parameter_counts_equal_torch(spec, model):
    graph = compile_spec(spec, model)
    _, module = python_module(graph, "torch")
    rows = summarize(graph)
    n_params, n_bytes, _ = totals(rows)
    assert n_params == sum(p.numel() for p in module.parameters())
    stored = {t.data_ptr(): t for t in module.state_dict().values()}  # a tied parameter is stored once
    assert n_bytes == sum(t.numel() * t.element_size() for t in stored.values())
    for row in rows:  # per layer too, by state-dict path
        try:
            layer = module.get_submodule(row.name)
        except AttributeError:  # not a module: a parameter value, or a layer with no parameters
            layer = None
        if layer is not None:  # a parameter tied to another layer's is counted there
            own = [p for name, p in layer.named_parameters() if f"{row.name}.{name}" not in tied_targets(graph)]
            assert row.params == sum(p.numel() for p in own), row.name


def test_flops_of_an_mlp(tmp_path):
    spec = tmp_path / "m.nnspec"
    spec.write_text("model m() {\n    input x: f32[B, 8]\n    output y = relu(linear(x, 4))\n}\n")
    rows = {r.name: r for r in summarize(compile_graph(spec))}
    assert str(rows["y_linear"].flops) == "64*B"  # 2 * 8 * 4 per row
    assert str(rows["y"].flops) == "4*B"


def test_summary_command_prints_a_table():
    result = subprocess.run([sys.executable, "-m", "specc.cli", "summary", str(ROOT / "specs" / "mlp.nnspec")],
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    total = [line for line in result.stdout.splitlines() if "total" in line][0]
    assert "203,530" in total  # 784*256 + 256 + 256*10 + 10
    assert "h_linear" in result.stdout and "f32[B, 256]" in result.stdout


def test_graph_dot_has_nodes_edges_and_fusion_clusters(tmp_path):
    out = tmp_path / "g.dot"
    result = subprocess.run([sys.executable, "-m", "specc.cli", "graph", str(ROOT / "specs" / "gated_mixer.nnspec"),
                             "-o", str(out)], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    dot = out.read_text()
    assert dot.startswith('digraph "gated_mixer" {')
    assert '"q" -> "gate_tanh";' in dot
    assert 'subgraph "cluster_g0"' in dot and '"probs" -> "output:probs";' in dot


@pytest.mark.skipif(shutil.which("dot") is None, reason="Graphviz's dot is not installed")
@pytest.mark.parametrize("fmt,magic", [("svg", b"<svg"), ("png", b"\x89PNG")])
def test_graph_renders_with_graphviz(tmp_path, fmt, magic):
    out = tmp_path / f"g.{fmt}"
    result = subprocess.run([sys.executable, "-m", "specc.cli", "graph", str(ROOT / "specs" / "mlp.nnspec"),
                             "-o", str(out)], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert magic in out.read_bytes()[:400]


def test_graph_rejects_unknown_formats(tmp_path):
    result = subprocess.run([sys.executable, "-m", "specc.cli", "graph", str(ROOT / "specs" / "mlp.nnspec"),
                             "-o", str(tmp_path / "g.jpg")], capture_output=True, text=True)
    assert result.returncode == 2 and not (tmp_path / "g.jpg").exists()
