"""Test-wide setup.

Triton kernels run under Triton's CPU interpreter in tests (CI has no GPU). The
variable must be set before any `@triton.jit` function is created, so here.
"""

import os
import sys
from pathlib import Path

os.environ.setdefault("TRITON_INTERPRET", "1")
sys.path.insert(0, str(Path(__file__).resolve().parent))
