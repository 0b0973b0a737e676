"""Code actions: quick fixes for the suggestions specc's errors already make.

An error whose help says "did you mean `relu`?" (an unknown op, name, argument or parameter) gets a
quick fix that writes the suggestion in place of the misspelled name. The fix is offered only where
the diagnostic's range starts with that one name (`relux`, or `dimm=1` for an argument), so it never
rewrites more than the name it is about.
"""

from __future__ import annotations

import re

from lsprotocol import types as lsp
from pygls.workspace import TextDocument

_DID_YOU_MEAN = re.compile(r"help: did you mean `([A-Za-z_][A-Za-z0-9_]*)`\?")
_LEADING_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(?=\s*(=|$))")


def quick_fixes(document: TextDocument, diagnostics: list[lsp.Diagnostic]) -> list[lsp.CodeAction]:
    """One "replace with the suggestion" fix per diagnostic that suggests a name."""
    actions = []
    for diagnostic in diagnostics:
        suggested = _DID_YOU_MEAN.search(diagnostic.message or "")
        if suggested is None or diagnostic.source != "specc":
            continue
        start = document.offset_at_position(diagnostic.range.start)
        end = document.offset_at_position(diagnostic.range.end)
        name = _LEADING_NAME.match(document.source[start:end])
        if name is None or name.group(0) == suggested.group(1):
            continue
        at = diagnostic.range.start  # a name is ASCII: as long in UTF-16 units as in characters
        replace = lsp.Range(start=at, end=lsp.Position(line=at.line, character=at.character + len(name.group(0))))
        edit = lsp.WorkspaceEdit(changes={document.uri: [lsp.TextEdit(range=replace, new_text=suggested.group(1))]})
        actions.append(lsp.CodeAction(title=f"Change `{name.group(0)}` to `{suggested.group(1)}`",
                                      kind=lsp.CodeActionKind.QuickFix, diagnostics=[diagnostic], edit=edit,
                                      is_preferred=True))
    return actions
