"""A picture of the IR: DOT text, rendered to SVG or PNG by Graphviz's `dot`.

Fusion groups are drawn as clusters, so the picture shows what the Triton
backend runs as one kernel.
"""

from __future__ import annotations

import shutil
import subprocess

from .ir import Graph


def _quote(text: str) -> str:
    return '"' + text.replace('"', '\\"') + '"'


def to_dot(graph: Graph) -> str:
    lines = [f"digraph {_quote(graph.name)} {{", "  rankdir=TB;",
             '  node [shape=box, style="rounded,filled", fillcolor="#f4f4f4", fontname="Helvetica", fontsize=10];',
             '  edge [color="#666666", arrowsize=0.6];']
    groups: dict[str, list[str]] = {}
    for node in graph.nodes():
        shape = "ellipse" if node.op == "input" else "box"
        label = f"{node.name}\\n{node.op}\\n{node.type}" if node.type else f"{node.name}\\n{node.op}"
        fill = "#dbeafe" if node.op == "input" else ("#fef3c7" if node.group else "#f4f4f4")
        lines.append(f"  {_quote(node.name)} [label={_quote(label)}, shape={shape}, fillcolor={_quote(fill)}];")
        if node.group:
            groups.setdefault(node.group, []).append(node.name)
    for gid, members in groups.items():
        lines.append(f"  subgraph {_quote('cluster_' + gid)} {{")
        lines.append(f'    label={_quote("fused " + gid)}; style=dashed; color="#d97706"; fontsize=9;')
        lines.extend(f"    {_quote(m)};" for m in members)
        lines.append("  }")
    for out, value in graph.outputs.items():
        lines.append(f'  {_quote("output:" + out)} [label={_quote(out)}, shape=ellipse, fillcolor="#dcfce7"];')
        lines.append(f"  {_quote(value)} -> {_quote('output:' + out)};")
    for src, dst, _ in sorted(graph.nx.edges(keys=True)):
        lines.append(f"  {_quote(src)} -> {_quote(dst)};")
    lines.append("}")
    return "\n".join(lines) + "\n"


class GraphvizMissing(RuntimeError):
    pass


def render(dot: str, fmt: str) -> bytes:
    """Run Graphviz's `dot` to turn DOT text into `fmt` (svg or png)."""
    exe = shutil.which("dot")
    if exe is None:
        raise GraphvizMissing("rendering needs Graphviz's `dot` program (e.g. `apt-get install graphviz` or "
                              "`brew install graphviz`); `-o FILE.dot` writes the DOT text without it")
    result = subprocess.run([exe, f"-T{fmt}"], input=dot.encode(), capture_output=True, check=False)
    if result.returncode != 0:
        raise RuntimeError(f"dot failed: {result.stderr.decode(errors='replace')}")
    return result.stdout
