"""Source positions and compiler diagnostics.

Every error a user can cause is a `SpeccError` carrying a `Span`; the CLI and the
language server render it as `file:line:col: error[CODE]: message` followed by the
source line and a caret. Nothing a user writes may surface as a Python traceback,
so code that detects bad input raises `SpeccError`, never a bare exception.

Every spec and rules file is read through `read_text`, and every rendered
diagnostic shows spec text through `specc.escape.printable`.
"""

from __future__ import annotations

import difflib
import os
import stat
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Iterable

from .escape import printable

# Error codes that mean "the command line asks for something that cannot be done" (a file that cannot
# be read or written as asked, a model that is not there) rather than "the spec is wrong": the CLI
# exits with status 2 for these, as for a bad option, and 1 for every other SpeccError.
USAGE_ERROR_CODES = frozenset({
    "E0001",  # the file named on the command line cannot be read
    "E0002",  # an output file cannot (or must not) be written
    "E0502",  # an imported file cannot be read, or is outside the project
    "E0601",  # a --weights / --calib file cannot be loaded (E0602, weights that load but do not fit, is 1)
    "E0708",  # a rules file (`constrain(file=...)`) cannot be read, or is outside the project
    "E0220",  # no model of that name (--model), or none / several to choose from
})


@dataclass(frozen=True)
class SourceFile:
    """The text of one spec file, kept so diagnostics can quote it."""

    path: str
    text: str = field(repr=False)
    # False for a file that may not be a spec or rules file at all: diagnostics then point at its
    # lines without quoting them, so an error never shows the content of a file nobody wrote as one
    quotable: bool = field(default=True, compare=False)

    @cached_property
    def lines(self) -> list[str]:
        """The text split once: shape inference labels every operand with its line."""
        return self.text.splitlines()

    def line(self, number: int) -> str:
        return self.lines[number - 1] if 1 <= number <= len(self.lines) else ""


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
        return f"{printable(self.source.path)}:{self.line}:{self.col}"


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
    """The source line and a caret under the span. Control characters are shown as escapes (a spec
    holding terminal escape codes must not drive the terminal), and the caret follows the escaped text."""
    if not span.source.quotable:
        return []
    text = span.source.line(span.line)
    before = printable(text[:span.col - 1])
    end = span.end_col - 1 if span.end_line == span.line else len(text)
    width = max(1, len(printable(text[span.col - 1:end])))
    indent = "".join("\t" if c == "\t" else " " for c in before)
    pad = " " * (len(str(span.line)) + 1)
    return [
        f"{pad}|",
        f"{span.line} | {printable(text)}",
        f"{pad}| {indent}{'^' * width}",
    ]


def render(error: SpeccError) -> str:
    """Format an error the way compilers do: location, code, message, source and caret."""
    where = f"{error.span}: " if error.span else ""
    lines = [f"{where}error[{error.code}]: {printable(error.message)}"]
    if error.span:
        lines += _excerpt(error.span)
    for note in error.notes:
        if note.span:
            lines.append(f"{note.span}: note: {printable(note.message)}")
            lines += _excerpt(note.span)
        else:
            lines.append(f"note: {printable(note.message)}")
    if error.help:
        lines.append(f"help: {printable(error.help)}")
    return "\n".join(lines)


_KINDS = ((stat.S_ISDIR, "is a directory"), (stat.S_ISFIFO, "is a FIFO (named pipe)"),
          (stat.S_ISSOCK, "is a socket"), (stat.S_ISCHR, "is a character device"),
          (stat.S_ISBLK, "is a block device"))


def file_kind(mode: int) -> str:
    """What a file that is not a regular file is, for a message: "is a directory", "is a socket", ..."""
    return next((kind for test, kind in _KINDS if test(mode)), "is not a regular file")


def read_text(path: str | Path, code: str = "E0001", span: Span | None = None, what: str = "file") -> str:
    """The text of a regular UTF-8 file of at most `file_bytes` bytes; anything else is `SpeccError(code)`.

    Every spec and rules file is read here. Only regular files are opened, and never in a way that
    blocks (a FIFO would wait for a writer, a device may never end); at most limit + 1 bytes are
    read, so a huge file costs nothing; a UTF-8 byte-order mark is dropped. Messages name the file
    and say what is wrong with it, but never quote its content: it may not be a spec at all.
    """
    from . import limits  # limits builds its errors with this module

    shown = printable(str(path))

    def fail(reason: str) -> SpeccError:
        return SpeccError(code, f"cannot read {what} {shown}: {reason}", span)

    try:
        mode = os.stat(path).st_mode
        if not stat.S_ISREG(mode):
            raise fail(file_kind(mode))
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_NOCTTY", 0) | getattr(os, "O_CLOEXEC", 0))
    except FileNotFoundError:
        raise fail("no such file") from None
    except OSError as exc:
        raise fail((exc.strerror or str(exc)).lower()) from None
    limit = limits.value("file_bytes")
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):  # replaced by something else between the stat and the open
            raise fail(file_kind(info.st_mode))
        chunks: list[bytes] = []
        size = 0
        while size <= limit:
            chunk = os.read(fd, min(limit + 1 - size, 1 << 20))
            if not chunk:
                break
            chunks.append(chunk)
            size += len(chunk)
    except OSError as exc:
        raise fail((exc.strerror or str(exc)).lower()) from None
    finally:
        os.close(fd)
    if size > limit:
        raise limits.exceeded("file_bytes", max(size, info.st_size), span, what=f"{what} {shown}")
    data = b"".join(chunks)
    if data.startswith(b"\xef\xbb\xbf"):
        data = data[3:]
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        raise fail(f"not UTF-8 text (invalid byte 0x{data[exc.start]:02x} at line {line})") from None


def load_source(path: str | Path) -> SourceFile:
    """Read the spec file named on the command line (or open in an editor); errors are `E0001`."""
    return SourceFile(str(path), read_text(path, what="spec file"))


def did_you_mean(name: str, candidates: Iterable[str]) -> str | None:
    """A `help:` for a misspelled name: "did you mean `relu`?" with the closest candidate, if any is close
    (the editor's quick fix writes that name in place of the misspelled one)."""
    close = difflib.get_close_matches(name, list(candidates), n=1)
    return f"did you mean `{close[0]}`?" if close else None
