"""Diagnostics latency of `specc lsp` on a 2,000-line spec.

Starts the server as a subprocess (`python -m specc.cli lsp`), opens a generated
spec of about 2,000 lines (110 blocks and 110 models, like specs/ffn.nnspec),
then makes the edits a user makes and times each one from the moment the
client sends `didChange` to the moment the matching `publishDiagnostics`
arrives: typing inside a model, adding a line at the top (every item moves),
breaking the syntax and fixing it, a shape error and its fix, and an edit to a
block that several models call. It also times the same analyses in process
(no JSON-RPC) for comparison.

    python bench/lsp_bench.py [--lines 2000] [--repeat 5]

A benchmark, not a test: it prints numbers and asserts nothing.
"""

from __future__ import annotations

import argparse
import asyncio
import re
import statistics
import sys
import tempfile
import time
from pathlib import Path

from lsprotocol import types as lsp
from pygls.lsp.client import LanguageClient


def big_spec(lines: int) -> str:
    """A spec of about `lines` lines: pairs of a residual block and a model that calls it twice."""
    out = ["// generated for bench/lsp_bench.py", ""]
    i = 0
    while len(out) < lines - 18:
        out += [f"// residual feed-forward block {i}",
                f"block res{i}(x, width: int, scale: float = 0.5) {{",
                "    h = layernorm(x)",
                "    h = gelu(linear(h, 4 * width))     // expand",
                "    h = dropout(h, p=0.1)",
                "    h = linear(h, width)",
                "    return x + scale * h",
                "}",
                "",
                f"model net{i}(width: int = 64, classes: int = 10) {{",
                "    input x: f32[B, T, width]",
                f"    h = res{i}(x, width)",
                f"    h = res{i}(h, width, scale=0.25)",
                "    g = softmax(linear(h, width), dim=-1) * h",
                "    g = relu(g) + sigmoid(h) - tanh(g)",
                "    output y = linear(g, classes)",
                "}",
                ""]
        i += 1
    return "\n".join(out) + "\n"


def edits(text: str) -> list[tuple[str, str]]:
    """(label, new text) for a series of edits, each applied to the previous text."""
    lines = text.split("\n")
    middle = next(i for i in range(len(lines) // 2, len(lines)) if lines[i].startswith("    output y = linear(g"))
    block = next(i for i in range(len(lines) // 2, len(lines)) if lines[i].startswith("    h = linear(h, width)"))
    steps: list[tuple[str, list[str]]] = []

    def step(label: str, change) -> None:
        current = list(steps[-1][1] if steps else lines)
        change(current)
        steps.append((label, current))

    def setline(i: int, value: str):
        return lambda ls: ls.__setitem__(i, value)

    step("type inside a model", setline(middle, "    output y = linear(g, classes + 1)"))
    step("undo it", setline(middle, "    output y = linear(g, classes)"))
    step("add a line at the top", lambda ls: ls.insert(0, "// a new first line"))
    step("break the syntax", setline(middle + 1, "    output y = linear(g, classes"))
    step("fix the syntax", setline(middle + 1, "    output y = linear(g, classes)"))
    step("a shape error", setline(middle + 1, "    output y = linear(g, classes) + x"))
    step("fix the shape error", setline(middle + 1, "    output y = linear(g, classes)"))
    step("edit a block (2 calls)", setline(block + 1, "    h = linear(h, width + 0)"))
    return [(label, "\n".join(ls)) for label, ls in steps]


async def over_lsp(path: Path, text: str, repeat: int) -> dict[str, list[float]]:
    client = LanguageClient("lsp-bench", "1")
    arrived: dict[int, float] = {}
    done = asyncio.Event()
    waiting: list[int] = [0]

    @client.feature(lsp.TEXT_DOCUMENT_PUBLISH_DIAGNOSTICS)
    def on_diagnostics(params: lsp.PublishDiagnosticsParams) -> None:
        if params.version is not None:
            arrived[params.version] = time.perf_counter()
            if params.version == waiting[0]:
                done.set()

    await client.start_io(sys.executable, "-m", "specc.cli", "lsp")
    await client.initialize_async(lsp.InitializeParams(capabilities=lsp.ClientCapabilities(),
                                                       root_uri=path.parent.as_uri()))
    client.initialized(lsp.InitializedParams())
    uri = path.as_uri()
    times: dict[str, list[float]] = {}

    async def send(version: int, new_text: str, label: str) -> None:
        done.clear()
        waiting[0] = version
        start = time.perf_counter()
        if version == 1:
            client.text_document_did_open(lsp.DidOpenTextDocumentParams(
                text_document=lsp.TextDocumentItem(uri=uri, language_id="nnspec", version=1, text=new_text)))
        else:
            client.text_document_did_change(lsp.DidChangeTextDocumentParams(
                text_document=lsp.VersionedTextDocumentIdentifier(uri=uri, version=version),
                content_changes=[lsp.TextDocumentContentChangeWholeDocument(text=new_text)]))
        await asyncio.wait_for(done.wait(), 120)
        times.setdefault(label, []).append(arrived[version] - start)

    version = 1
    await send(version, text, "open (cold: parse and compile everything)")
    for _ in range(repeat):
        for label, new_text in edits(text):
            version += 1
            await send(version, new_text, label)
        version += 1
        await send(version, text, "back to the original")
    await client.shutdown_async(None)
    client.exit(None)
    await client.stop()
    return times


def in_process(path: Path, text: str, repeat: int) -> dict[str, list[float]]:
    from specc.lsp.analysis import Workspace

    workspace = Workspace()
    times: dict[str, list[float]] = {}

    def run(label: str, new_text: str) -> None:
        start = time.perf_counter()
        workspace.analyze(path, new_text)
        times.setdefault(label, []).append(time.perf_counter() - start)

    run("open (cold: parse and compile everything)", text)
    for _ in range(repeat):
        for label, new_text in edits(text):
            run(label, new_text)
        run("back to the original", text)
    return times


def report(title: str, times: dict[str, list[float]]) -> None:
    print(f"\n{title}")
    print(f"  {'edit':44} {'median ms':>10} {'max ms':>9}")
    for label, values in times.items():
        print(f"  {label:44} {statistics.median(values) * 1000:10.1f} {max(values) * 1000:9.1f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lines", type=int, default=2000)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    text = big_spec(args.lines)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "big.nnspec"
        path.write_text(text)
        models, blocks = (len(re.findall(rf"^{kind} ", text, re.M)) for kind in ("model", "block"))
        print(f"spec: {len(text.splitlines())} lines, {models} models, {blocks} blocks")
        report("specc lsp (subprocess, JSON-RPC): didChange -> publishDiagnostics",
               asyncio.run(over_lsp(path, text, args.repeat)))
        report("in process: Workspace.analyze", in_process(path, text, args.repeat))


if __name__ == "__main__":
    main()
