"""Error messages: one line that names the file (and record) and says the reason, never a traceback."""

from __future__ import annotations


def describe(err: BaseException) -> str:
    """One line for an error: the file named and the reason, never a traceback."""
    if isinstance(err, OSError) and err.filename is not None:
        text = f"{err.filename}: {err.strerror or err}"
        if err.filename2 is not None:
            text += f" (-> {err.filename2})"
    elif isinstance(err, RecursionError):
        text = "input nested too deeply to process (Python recursion limit)"
    elif isinstance(err, MemoryError):
        text = "out of memory"
    else:
        text = str(err) or type(err).__name__
    return " ".join(text.split())
