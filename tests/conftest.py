"""Test-wide setup.

Triton kernels run under Triton's CPU interpreter in tests (CI has no GPU). The
variable must be set before any `@triton.jit` function is created, so here.
"""

import os
import sys
from pathlib import Path

os.environ.setdefault("TRITON_INTERPRET", "1")
sys.path.insert(0, str(Path(__file__).resolve().parent))

import pytest  # noqa: E402


@pytest.fixture(scope="module")
def one_thread():
    """Torch on one thread for a module of small matrices: on a machine busy with other work (CI's two
    cores run two test workers), thread-pool hand-offs cost more than they save. Modules that want it
    say `pytestmark = pytest.mark.usefixtures("one_thread")`."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
