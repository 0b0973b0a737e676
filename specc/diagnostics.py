"""Source positions and compiler diagnostics.

Every error a user can cause is a `SpeccError` carrying a `Span`; the CLI and the
language server render it as `file:line:col: error[CODE]: message` followed by the
source line and a caret. Nothing a user writes may surface as a Python traceback,
so code that detects bad input raises `SpeccError`, never a bare exception.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path


@dataclass(frozen=True)
class SourceFile:
    """The text of one spec file, kept so diagnostics can quote it."""

    path: str
    text: str = field(repr=False)

    def line(self, number: int) -> str:
        lines = self.text.splitlines()
        return lines[number - 1] if 1 <= number <= len(lines) else ""


@dataclass(frozen=True)
class Span:
    """A region of a source file; lines and columns are 1-based, `end_col` exclusive."""

    source: SourceFile
    line: int
    col: int
    end_line: int
    end_col: int

    @property
    def path(self) -> str:
        return self.source.path

    def __str__(self) -> str:
        return f"{self.source.path}:{self.line}:{self.col}"


@dataclass(frozen=True)
class Note:
    """A secondary location that explains an error (e.g. the call site of a block)."""

    message: str
    span: Span | None = None


class SpeccError(Exception):
    """A user-facing compile error: a code, a message and where it happened."""

    def __init__(self, code: str, message: str, span: Span | None, notes: list[Note] | None = None,
                 help: str | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.span = span
        self.notes = list(notes or [])
        self.help = help

    def with_note(self, note: Note) -> "SpeccError":
        self.notes.append(note)
        return self

    def render(self) -> str:
        return render(self)


def _excerpt(span: Span) -> list[str]:
    text = span.source.line(span.line)
    gutter = len(str(span.line))
    width = (span.end_col - span.col) if span.end_line == span.line else len(text) - span.col + 1
    width = max(1, width)
    pad = " " * (gutter + 1)
    return [
        f"{pad}|",
        f"{span.line} | {text}",
        f"{pad}| {' ' * (span.col - 1)}{'^' * width}",
    ]


def render(error: SpeccError) -> str:
    """Format an error the way compilers do: location, code, message, source and caret."""
    where = f"{error.span}: " if error.span else ""
    lines = [f"{where}error[{error.code}]: {error.message}"]
    if error.span:
        lines += _excerpt(error.span)
    for note in error.notes:
        if note.span:
            lines.append(f"{note.span}: note: {note.message}")
            lines += _excerpt(note.span)
        else:
            lines.append(f"note: {note.message}")
    if error.help:
        lines.append(f"help: {error.help}")
    return "\n".join(lines)


def load_source(path: str | Path) -> SourceFile:
    """Read a spec file, turning I/O problems into diagnostics."""
    p = Path(path)
    try:
        return SourceFile(str(path), p.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise SpeccError("E0001", f"no such file: {path}", None) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise SpeccError("E0001", f"cannot read {path}: {exc}", None) from None
