"""Latency of `specc lsp` on a 2,000-line spec, against the bar of issue 13.

Starts the server as a subprocess (`python -m specc.cli lsp`) and drives it over
stdio as an editor would, on a generated spec of about 2,000 lines (110 blocks
and 110 models, like specs/ffn.nnspec) with one 12 KB line of ~3,000 tokens in it
(the case that made semantic tokens count UTF-16 units per character per token).
It prints, each next to its bar:

- cold open to first diagnostics (bar: 500 ms), on 1 + `--cold` fresh servers: for a file of many
  models these are the first stage's (syntax and file-wide checks, published once the file is
  parsed), so the time to the models' diagnostics (the second publication) is printed too;
- p50/p95 of every request type an editor sends on its own (documentSymbol,
  formatting, semanticTokens/full, hover, completion, inlayHint, references,
  foldingRange), each answered for the current text (bar: p95 <= 100 ms);
- didChange -> publishDiagnostics while an outline or a formatting request is in
  flight (diagnostics must not wait behind it: bar 100 ms past the debounce);
- didChange -> publishDiagnostics for the edits a user makes (typing inside a
  model, a line added at the top, a syntax error and its fix, a shape error, an
  edit to a called block), and the same analyses in process, for comparison.

    python bench/lsp_bench.py [--lines 2000] [--repeat 20]

A benchmark, not a test: it prints numbers and asserts nothing. Numbers depend on
the machine (and on what else it runs); the tests that keep the work linear are
tests/test_lsp_speed.py.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Awaitable, Callable



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
    # one 12 KB line: a sum of 1,024 names (~4,000 tokens), balanced to stay under the nesting limit

    def balanced(n: int) -> str:
        return "hidden_state" if n == 1 else f"({balanced(n // 2)} + {balanced(n - n // 2)})"

    terms = balanced(1024)
    out[2:2] = ["model wide(width: int = 64) {",
                "    input x: f32[B, T, width]",
                "    hidden_state = relu(x)",
                f"    output y = {terms}",
                "}",
                ""]
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


DEBOUNCE_MS = 150  # specc.lsp.server.DEBOUNCE_S: diagnostics after a change wait for a pause in typing
BAR_REQUEST_MS = 100
BAR_OPEN_MS = 500


def positions(text: str) -> dict[str, list[dict[str, int]]]:
    """Where an editor asks for hover, completion and references: names spread over the file."""
    lines = text.split("\n")
    hover, complete, refs = [], [], []
    for i, line in enumerate(lines):
        m = re.match(r"    h = res(\d+)\(x, width\)", line)
        if m:
            hover.append({"line": i, "character": line.index("res")})  # a block call
            hover.append({"line": i, "character": 4})  # a value
            refs.append({"line": i, "character": line.index("res")})
        if line.startswith("    g = softmax(linear(h, width)"):
            complete.append({"line": i, "character": len("    g = softmax(linear(h, ")})
    return {"hover": hover[::max(1, len(hover) // 20)], "completion": complete[::max(1, len(complete) // 20)],
            "references": refs[::max(1, len(refs) // 20)]}


class Client:
    """A bare JSON-RPC client over the server's stdio. It decodes answers with `json` only, as an editor
    does: a client that builds lsprotocol objects from each answer (pygls's) spends more time on a big
    outline than the server does, and that time is the client's, not the server's."""

    def __init__(self, process: asyncio.subprocess.Process) -> None:
        self.process = process
        self.pending: dict[int, asyncio.Future[Any]] = {}
        self.on_diagnostics: Callable[[dict[str, Any]], None] = lambda params: None
        self.next_id = 0
        self.reader = asyncio.ensure_future(self._read())

    @classmethod
    async def start(cls) -> "Client":
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "specc.cli", "lsp", stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.DEVNULL, limit=1 << 26)
        return cls(process)

    def _write(self, message: dict[str, Any]) -> None:
        body = json.dumps({"jsonrpc": "2.0", **message}).encode()
        assert self.process.stdin is not None
        self.process.stdin.write(b"Content-Length: %d\r\n\r\n" % len(body) + body)

    def notify(self, method: str, params: Any) -> None:
        self._write({"method": method, "params": params})

    def request(self, method: str, params: Any) -> asyncio.Future[Any]:
        self.next_id += 1
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self.pending[self.next_id] = future
        self._write({"id": self.next_id, "method": method, "params": params})
        return future

    async def _read(self) -> None:
        out = self.process.stdout
        assert out is not None
        while True:
            length = None
            while True:
                line = await out.readline()
                if not line:
                    return
                if line.lower().startswith(b"content-length:"):
                    length = int(line.split(b":")[1])
                if line == b"\r\n":
                    break
            assert length is not None
            message = json.loads(await out.readexactly(length))
            if "method" in message and "id" in message:  # a request of the server's (a registration)
                self._write({"id": message["id"], "result": None})
            elif "method" in message:
                if message["method"] == "textDocument/publishDiagnostics":
                    self.on_diagnostics(message["params"])
            else:
                future = self.pending.pop(message["id"], None)
                if future is not None and not future.done():
                    future.set_result(message.get("result"))

    async def close(self) -> None:
        await asyncio.wait_for(self.request("shutdown", None), 60)
        self.notify("exit", None)
        try:
            await asyncio.wait_for(self.process.wait(), 10)
        except asyncio.TimeoutError:
            self.process.kill()
        self.reader.cancel()


async def over_lsp(path: Path, text: str, repeat: int) -> tuple[dict[str, list[float]], dict[str, list[float]]]:
    """(request latencies, diagnostics latencies) in seconds, by label."""
    client = await Client.start()
    arrived: dict[int, float] = {}
    publications: dict[int, list[float]] = {}  # every publication of each version
    done = asyncio.Event()
    waiting: list[int] = [0]

    def on_diagnostics(params: dict[str, Any]) -> None:
        if params.get("version") is not None:
            arrived.setdefault(params["version"], time.perf_counter())  # the first publication
            publications.setdefault(params["version"], []).append(time.perf_counter())
            if params["version"] == waiting[0]:
                done.set()

    client.on_diagnostics = on_diagnostics
    await client.request("initialize", {"processId": os.getpid(), "rootUri": path.parent.as_uri(), "capabilities": {}})
    client.notify("initialized", {})
    uri = path.as_uri()
    doc = {"uri": uri}
    diagnostics: dict[str, list[float]] = {}
    requests: dict[str, list[float]] = {}
    version = [0]

    async def send(new_text: str, label: str, during: Callable[[], Awaitable[Any]] | None = None) -> None:
        """Open or change the document, and time it to its diagnostics (with `during` in flight)."""
        version[0] += 1
        done.clear()
        waiting[0] = version[0]
        pending = None
        if during is not None:  # the request goes first, and the change comes while it is being answered
            pending = asyncio.ensure_future(during())
            await asyncio.sleep(0.03)
        start = time.perf_counter()
        if version[0] == 1:
            client.notify("textDocument/didOpen", {"textDocument": {"uri": uri, "languageId": "nnspec",
                                                                     "version": 1, "text": new_text}})
        else:
            client.notify("textDocument/didChange", {"textDocument": {"uri": uri, "version": version[0]},
                                                     "contentChanges": [{"text": new_text}]})
        await asyncio.wait_for(done.wait(), 120)
        diagnostics.setdefault(label, []).append(arrived[version[0]] - start)
        if pending is not None:
            await pending

    async def timed(label: str, request: Awaitable[Any]) -> None:
        start = time.perf_counter()
        await asyncio.wait_for(request, 120)
        requests.setdefault(label, []).append(time.perf_counter() - start)

    n_lines = len(text.split("\n"))
    everything = {"start": {"line": 0, "character": 0}, "end": {"line": n_lines, "character": 0}}
    visible = {"start": {"line": 1000, "character": 0}, "end": {"line": 1060, "character": 0}}
    where = positions(text)
    options = {"tabSize": 4, "insertSpaces": True}
    def ask(method: str, **params: Any) -> Callable[[], Awaitable[Any]]:
        """A request to send when called (so that each is timed alone, not queued behind the others)."""
        return lambda: client.request(method, {"textDocument": doc, **params})

    kinds: dict[str, list[Callable[[], Awaitable[Any]]]] = {
        "documentSymbol": [ask("textDocument/documentSymbol")],
        "formatting": [ask("textDocument/formatting", options=options)],
        "semanticTokens/full": [ask("textDocument/semanticTokens/full")],
        "hover": [ask("textDocument/hover", position=p) for p in where["hover"]],
        "completion": [ask("textDocument/completion", position=p) for p in where["completion"]],
        "inlayHint (60 visible lines)": [ask("textDocument/inlayHint", range=visible)],
        "inlayHint (whole file)": [ask("textDocument/inlayHint", range=everything)],
        "references": [ask("textDocument/references", position=p, context={"includeDeclaration": True})
                       for p in where["references"]],
        "foldingRange": [ask("textDocument/foldingRange")],
    }

    await send(text, "cold open -> first diagnostics")
    opened = arrived[1] - diagnostics["cold open -> first diagnostics"][0]  # when the didOpen was sent
    from specc.lsp.analysis import STAGE_AFTER
    if len(re.findall(r"^model ", text, re.M)) >= STAGE_AFTER:  # staged: wait for the models' publication
        waited = time.perf_counter()
        while len(publications[1]) < 2 and time.perf_counter() - waited < 120:
            await asyncio.sleep(0.01)
        diagnostics["cold open -> the models' diagnostics"] = [publications[1][-1] - opened]
    changed = text.replace("    output y = linear(g, classes)", "    output y = linear(g, classes + 0)", 1)
    for r in range(repeat):
        # an edit first, as in an editor, which asks again after each change: every request meets a new
        # analysis (what is cached per chunk stays cached; what is cached per analysis does not help)
        await send(changed if r % 2 == 0 else text, "type inside a model (before requests)")
        for label, requests_of_kind in kinds.items():
            for make in requests_of_kind:
                await timed(label, make())
    # a change while a slow request is in flight: its diagnostics must not queue behind the request
    for _ in range(max(3, repeat // 4)):
        for label in ("documentSymbol", "formatting"):
            for new_text in (changed, text):
                await send(new_text, f"didChange while {label} is in flight",
                           lambda label=label: asyncio.gather(*(make() for make in kinds[label])))
    for _ in range(max(2, repeat // 4)):
        for label, new_text in edits(text):
            await send(new_text, label)
        await send(text, "back to the original")
    await client.close()
    return requests, diagnostics


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


def p95(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))]


def report(title: str, times: dict[str, list[float]], bar: Callable[[str], float | None] = lambda _: None) -> None:
    """One line per label: n, p50, p95 and max in ms, and the bar the p95 is held to (ok / OVER)."""
    print(f"\n{title}")
    print(f"  {'':44} {'n':>4} {'p50 ms':>9} {'p95 ms':>9} {'max ms':>9}   bar")
    for label, values in times.items():
        limit = bar(label)
        worst = p95(values) * 1000
        verdict = "" if limit is None else f"p95 <= {limit:.0f} ms  {'ok' if worst <= limit else 'OVER'}"
        print(f"  {label:44} {len(values):4} {statistics.median(values) * 1000:9.1f} {worst:9.1f} "
              f"{max(values) * 1000:9.1f}   {verdict}")


def diagnostics_bar(label: str) -> float | None:
    if label.startswith("cold open -> first"):
        return BAR_OPEN_MS
    if label.startswith("didChange while"):
        return DEBOUNCE_MS + BAR_REQUEST_MS  # the debounce, then no waiting behind the request
    return None


async def cold_open(path: Path, text: str) -> float:
    """Seconds from a fresh server's didOpen (sent as soon as `initialize` is answered, as editors do) to
    its first diagnostics."""
    client = await Client.start()
    first: asyncio.Future[float] = asyncio.get_running_loop().create_future()
    client.on_diagnostics = lambda _: first.done() or first.set_result(time.perf_counter())
    await client.request("initialize", {"processId": os.getpid(), "rootUri": path.parent.as_uri(), "capabilities": {}})
    client.notify("initialized", {})
    start = time.perf_counter()
    client.notify("textDocument/didOpen", {"textDocument": {"uri": path.as_uri(), "languageId": "nnspec",
                                                             "version": 1, "text": text}})
    opened = await asyncio.wait_for(first, 120) - start
    await client.close()
    return opened


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lines", type=int, default=2000)
    parser.add_argument("--repeat", type=int, default=20)
    parser.add_argument("--cold", type=int, default=5, help="more fresh servers to time the cold open on")
    args = parser.parse_args()
    text = big_spec(args.lines)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "big.nnspec"
        path.write_text(text)
        models, blocks = (len(re.findall(rf"^{kind} ", text, re.M)) for kind in ("model", "block"))
        print(f"spec: {len(text.splitlines())} lines, {models} models, {blocks} blocks")
        print(f"machine: {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.2f}")
        requests, diagnostics = asyncio.run(over_lsp(path, text, args.repeat))
        diagnostics["cold open -> first diagnostics"] += [asyncio.run(cold_open(path, text)) for _ in range(args.cold)]
        report("specc lsp (subprocess, JSON-RPC): request -> response", requests, lambda _: BAR_REQUEST_MS)
        report("specc lsp: didChange/didOpen -> publishDiagnostics", diagnostics, diagnostics_bar)
        report("in process: Workspace.analyze", in_process(path, text, max(1, args.repeat // 10)))


if __name__ == "__main__":
    main()
