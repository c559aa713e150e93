"""Headless reproduction: run notebooks 01 -> 05 with papermill under a named profile of parameters."""

from __future__ import annotations

import os
import sys
from pathlib import Path

from . import config

NOTEBOOKS_DIR = config.REPO_ROOT / "notebooks"


class NotebookFailed(RuntimeError):
    """A notebook cell raised; the message names the notebook and the cell."""


def _isolate_home(run_dir: Path) -> None:
    # Jupyter, IPython and matplotlib write config into $HOME; keep runs self-contained.
    for var, sub in (("MPLCONFIGDIR", "mpl"), ("IPYTHONDIR", "ipython"), ("JUPYTER_RUNTIME_DIR", "jupyter-runtime")):
        os.environ.setdefault(var, str(run_dir / ".cache" / sub))
    os.environ.setdefault("MPLBACKEND", "Agg")


def run_notebook(name: str, run_dir: Path, parameters: dict, timeout: int | None = None) -> Path:
    """Execute ``notebooks/<name>`` into ``run_dir/notebooks/<name>``; raise NotebookFailed naming the cell."""
    import papermill
    from papermill.exceptions import PapermillExecutionError

    _isolate_home(run_dir)
    out = run_dir / "notebooks" / name
    out.parent.mkdir(parents=True, exist_ok=True)
    try:
        papermill.execute_notebook(str(NOTEBOOKS_DIR / name), str(out), parameters=parameters, kernel_name="python3",
                                   cwd=str(NOTEBOOKS_DIR), progress_bar=False, execution_timeout=timeout)
    except PapermillExecutionError as err:
        raise NotebookFailed(f"{name}: cell {err.cell_index} (execution count {err.exec_count}) raised "
                             f"{err.ename}: {err.evalue}\n--- cell source ---\n{err.source}\n"
                             f"executed copy: {out}") from None
    return out
