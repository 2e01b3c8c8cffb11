"""What distnn.blas says in a process of its own, as a run sees its BLAS.

The test process may hold more BLAS libraries than a run loads: collecting the
scikit-learn tests imports scipy, whose OpenBLAS threadpoolctl then lists beside
numpy's. A run of distnn.train or distnn.bench never loads scipy.
"""

from __future__ import annotations

import json
import subprocess
import sys

CODE = """
import json
from distnn import blas
print(json.dumps({"line": blas.describe(threads=False),
                  "architectures": [lib.get("architecture", "") for lib in blas.libraries()],
                  "warned": blas.kernel_warning() is not None}))
"""


def fresh_blas() -> dict:
    """{"line": describe(threads=False), "architectures": [...], "warned": bool}."""
    done = subprocess.run([sys.executable, "-c", CODE], capture_output=True, text=True,
                          timeout=60, check=True)
    return json.loads(done.stdout)
