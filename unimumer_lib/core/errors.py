"""Error messages: one line that names the file (and record) and says the reason, never a traceback."""

from __future__ import annotations

import argparse


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


DISK_ERRORS = ("No space left on device", "Disk quota exceeded", "os error 28", "os error 122",
               "Read-only file system")  # what a writer says when the disk, not the input, is at fault


def naming_output(text: str, out) -> str:
    """``text`` (a one-line error) prefixed with the output folder or file ``out`` when it is a disk error that
    names no path (torch, safetensors and TRL's savers report ENOSPC without the file)."""
    if out and any(marker in text for marker in DISK_ERRORS) and str(out) not in text:
        return f"{out}: {text} (writing this command's output)"
    return text


def at_least(minimum: int):
    """An argparse ``type``: a whole number >= ``minimum`` (argparse names the option in its one-line error)."""
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            value = None
        if value is None or value < minimum:
            raise argparse.ArgumentTypeError(f"must be a whole number >= {minimum}, got {text!r}")
        return value

    parse.__name__ = f"whole number >= {minimum}"
    return parse
