"""Import costs: the ops need torch only (the GPU check machine has no nibabel); the package
imports without loading the compiled library or the I/O stack."""

from __future__ import annotations

import subprocess
import sys


def run(code: str) -> str:
    return subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout.strip()


def test_ops_need_only_torch():
    out = run(
        "import sys, wsls.ops; "
        "print(sorted(m for m in ('nibabel', 'scipy', 'safetensors') if m in sys.modules))"
    )
    assert out == "[]", out


def test_data_package_defers_nibabel():
    assert run("import sys, wsls.data; print('nibabel' in sys.modules)") == "False"
