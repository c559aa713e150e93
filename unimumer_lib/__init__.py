"""unimumer: handwritten mathematical expression recognition with vision-language models.

Data flows one way: InkML files -> records -> task datasets -> trainer -> predictions -> metrics/analysis.
"""

import os as _os

__version__ = "0.1.0"
# Set by ``reproduce`` for its notebook kernels: progress bars print as text (they end at 100 % in the executed
# notebook as saved) instead of widgets, whose state papermill does not save (they read "0% | 0/500" later).
TEXT_PROGRESS = "UNIMUMER_TEXT_PROGRESS"

if _os.environ.get(TEXT_PROGRESS) == "1":  # before transformers/TRL/datasets take their tqdm
    import tqdm.auto as _auto
    import tqdm.autonotebook as _autonotebook
    import tqdm.std as _std

    class _SavedTextTqdm(_std.tqdm):
        """A text bar that redraws at most every 15 s: a saved notebook keeps every redraw as a line."""

        def __init__(self, *args, **kwargs):
            kwargs["mininterval"] = max(kwargs.get("mininterval") or 0.1, 15.0)
            super().__init__(*args, **kwargs)

    _auto.tqdm = _autonotebook.tqdm = _SavedTextTqdm
