"""The .nnspec language server (`specc lsp`), built on pygls.

`analysis` checks documents with the compiler (no editor protocol involved),
`index` finds every name's declaration and uses, `features` answers hover,
completion, navigation, rename and highlighting from an analysis, and `server`
speaks LSP over stdio. pygls is imported only when the server starts.
"""

from __future__ import annotations

import sys


def serve() -> None:
    """Run the language server on stdin/stdout until the client exits."""
    from .server import make_server

    stdin, stdout = sys.stdin.buffer, sys.stdout.buffer
    sys.stdout = sys.stderr  # the protocol owns stdout: a stray print must not corrupt it
    make_server().start_io(stdin, stdout)
