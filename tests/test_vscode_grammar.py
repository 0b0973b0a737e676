"""The VS Code extension's TextMate grammar, run headless under node over every spec.

editors/vscode/test/grammar.test.js tokenizes each spec with vscode-textmate and
vscode-oniguruma and checks the scopes of the tokens that specc's own lexer finds
(keywords, op and block calls, numbers, comments, strings, true/false, dtypes).
Skipped only where node is missing; without editors/vscode/node_modules the
extension is installed (`npm ci`) into a temporary copy first.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

from specc import ops
from specc.fmt import keywords, lex
from specc.types import DTYPES

ROOT = Path(__file__).resolve().parent.parent
EXTENSION = ROOT / "editors" / "vscode"
SPECS = ROOT / "specs"
NODE, NPM = shutil.which("node"), shutil.which("npm")


@pytest.fixture(scope="module")
def extension(tmp_path_factory: pytest.TempPathFactory) -> Path:
    if NODE is None:
        pytest.skip("node is not installed")
    modules = EXTENSION / "node_modules"
    if (modules / "vscode-textmate").is_dir() and (modules / "vscode-oniguruma").is_dir():
        return EXTENSION
    assert NPM is not None, "node is installed but npm is not: cannot install the extension's test dependencies"
    copy = tmp_path_factory.mktemp("vscode") / "vscode"
    shutil.copytree(EXTENSION, copy, ignore=shutil.ignore_patterns("node_modules"))
    result = subprocess.run([NPM, "ci", "--no-audit", "--no-fund"], cwd=copy, capture_output=True, text=True,
                            timeout=600)
    assert result.returncode == 0, result.stdout + result.stderr
    return copy


def expected_scopes() -> tuple[list[dict], set[str]]:
    """What the grammar must say about each key token of each spec, and the ops called."""
    kw = keywords()
    out: list[dict] = []
    called: set[str] = set()
    for spec in sorted(SPECS.glob("*.nnspec")):
        text = spec.read_text()
        lines = text.split("\n")
        tokens = [t for t in lex(text) if t.type != "WS"]
        for i, t in enumerate(tokens):
            following = tokens[i + 1] if i + 1 < len(tokens) else None
            scope = None
            if t.type == "COMMENT":
                scope = "comment.line"
            elif t.type == "STRING":
                scope = "string.quoted"
            elif t.type in ("NUMBER", "RATIO"):
                scope = "constant.numeric"
            elif t.type in kw:
                scope = "keyword."
            elif t.type == "NAME" and t.text in ("true", "false"):
                scope = "constant.language"
            elif t.type == "NAME" and following is not None and following.type == "LPAR":
                scope = "entity.name.function"
                if ops.get(t.text) is not None:
                    called.add(t.text)
            elif t.type == "NAME" and t.text in DTYPES and following is not None and following.type == "LSQB":
                scope = "support.type"
            if scope is not None:
                line = lines[t.line - 1]
                col = len(line[:t.col - 1].encode("utf-16-le")) // 2
                text16 = t.text.rstrip("\r")
                out.append({"file": spec.name, "line": t.line - 1, "col": col, "text": text16, "scope": scope})
    return out, called


def run(extension: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([NODE, "test/grammar.test.js", str(SPECS), *args], cwd=extension, capture_output=True,
                          text=True, timeout=300)


def test_grammar_gives_every_key_token_its_scope(extension: Path, tmp_path: Path):
    expected, called = expected_scopes()
    assert len(called) >= 10  # op names are among the tokens checked
    path = tmp_path / "expected.json"
    path.write_text(json.dumps(expected))
    result = run(extension, str(path))
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"ok: {len(expected)} tokens" in result.stdout


def test_grammar_test_runs_on_its_own(extension: Path):
    """`npm test` in editors/vscode (no Python involved) passes too."""
    result = run(extension)
    assert result.returncode == 0, result.stdout + result.stderr
