"""The one way spec-derived text reaches generated code or a terminal.

Spec text is untrusted: a file name, a model name, a `-p` string value or a
rules file can hold newlines, quotes and terminal escape codes. Generated code
and diagnostics only ever embed such text through these functions:

- `comment(text)`: one line of a `#` comment (no line breaks, no control characters);
- `py_string(text)`: a Python string literal (`repr`), safe anywhere an expression may stand;
- `py_float(value)`: a Python float literal, for finite floats only (`inf` is no literal);
- `docstring(text)`: one line of text inside a triple-quoted docstring (no line breaks, quotes or backslash escapes);
- `identifier(text)`: a name that is already a safe identifier, or a `ValueError`;
- `printable(text)`: text for a terminal or a log, control characters shown as escapes.
"""

from __future__ import annotations

import keyword
import math
import re

# C0 and C1 control characters, DEL, and the Unicode line/paragraph separators and
# bidirectional overrides that can make a line read differently from what it is.
_UNSAFE = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069\ufeff]")
_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def _escape_char(match: re.Match[str]) -> str:
    code = ord(match.group())
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def printable(text: str, keep_tabs: bool = True) -> str:
    """`text` with every control character (and line separator) shown as a `\\xNN` escape."""
    if keep_tabs:
        return "\t".join(_UNSAFE.sub(_escape_char, part) for part in text.split("\t"))
    return _UNSAFE.sub(_escape_char, text)


def comment(text: str) -> str:
    """`text` as the body of a single-line `#` (or `//`) comment."""
    return printable(str(text), keep_tabs=False)


def py_string(text: str) -> str:
    """`text` as a Python string literal."""
    return repr(str(text))


def py_float(value: float) -> str:
    """`value` as a Python float literal; a ValueError for inf or nan, which `repr` spells as undefined names."""
    number = float(value)
    if not math.isfinite(number):
        raise ValueError(f"no Python literal for the float {number!r}")
    return repr(number)


def docstring(text: str) -> str:
    """`text` as one line inside a (non-raw) triple-quoted docstring.

    Control characters become visible escapes, then backslashes and double quotes are escaped,
    so the text can neither close the docstring nor form an invalid escape such as `\\N`.
    """
    return comment(text).replace("\\", "\\\\").replace('"', '\\"')


def identifier(text: str, keywords: bool = False) -> str:
    """`text` if it is a plain ASCII identifier that is not a Python keyword (any, with `keywords`, for
    names in a language other than Python, such as ONNX's text syntax); a ValueError otherwise."""
    if not _IDENTIFIER.fullmatch(text) or (keyword.iskeyword(text) and not keywords):
        raise ValueError(f"not a safe identifier: {printable(text)!r}")
    return text
