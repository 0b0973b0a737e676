"""Where the grammar and the backend templates live.

In a wheel they are packaged under `specc/_data/`; in a source checkout (editable
install, tests) they sit at the repository root, as DEVELOPERS.md lays out.
"""

from __future__ import annotations

from pathlib import Path

_PACKAGE = Path(__file__).resolve().parent


def data_dir(name: str) -> Path:
    """The directory `grammar` or `backends`, wherever this install keeps it."""
    for candidate in (_PACKAGE / "_data" / name, _PACKAGE.parent / name):
        if candidate.is_dir():
            return candidate
    raise RuntimeError(f"specc is installed without its {name}/ directory")
