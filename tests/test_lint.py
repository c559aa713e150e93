"""The code and the notebooks pass the project's lint (ruff, configured in pyproject.toml: pyflakes and
pycodestyle, 120 columns)."""

from __future__ import annotations

import subprocess
import sys

from unimumer_lib.core.paths import REPO_ROOT


def test_ruff_finds_nothing():
    done = subprocess.run([sys.executable, "-m", "ruff", "check", "unimumer_lib", "tests", "benchmarks", "docs",
                           "notebooks"], cwd=REPO_ROOT, capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr
