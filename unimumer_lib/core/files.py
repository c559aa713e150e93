"""Writing files safely: atomic replacement, temporary names no user file has, and the umask's file modes.

Every writer of the package goes through :func:`atomic_write_with`: the new content is written to a temporary
file beside the target, named ``.unimumer-tmp-<8 random>.<target>.tmp`` (``TEMP_PATTERN``), then renamed onto
the target, so a kill or a full disk leaves the old file or the new one, never half of one. Only names of that
pattern are ever cleaned up as "ours" (:func:`remove_temp_files`); a user's ``.backup.tmp`` is never touched.
An error of the write names the target file (a bare ``[Errno 28] No space left on device`` names none).
"""

from __future__ import annotations

import os
import sys
import re
import tempfile
from pathlib import Path

TEMP_PREFIX = ".unimumer-tmp-"
TEMP_PATTERN = re.compile(r"\.unimumer-tmp-[a-z0-9_]{8}\..+\.tmp")  # mkstemp: prefix + 8 random chars + suffix


def umask() -> int:
    """The process umask (read without changing it for longer than the call)."""
    mask = os.umask(0)
    os.umask(mask)
    return mask


def is_temp_name(name: str) -> bool:
    """True for the name of a temporary file :func:`atomic_write_with` makes."""
    return TEMP_PATTERN.fullmatch(name) is not None


def _temp_beside(path: Path) -> str:
    """A new empty temporary file of ours in ``path``'s folder (made if missing), with the umask's mode."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=TEMP_PREFIX, suffix=f".{path.name}.tmp", dir=path.parent)
    except OSError as err:
        raise naming(err, path) from None
    os.fchmod(fd, 0o666 & ~umask())  # mkstemp makes 0600; others (a training container) must read our outputs
    os.close(fd)
    return tmp


def atomic_write_with(path, write) -> Path:
    """Call ``write(tmp_path)`` on a temporary file in ``path``'s folder, then ``os.replace`` it onto ``path``."""
    path = Path(path)
    tmp = _temp_beside(path)
    try:
        write(tmp)
        os.replace(tmp, path)
    except BaseException as err:
        Path(tmp).unlink(missing_ok=True)
        if isinstance(err, OSError):
            raise naming(err, path) from None
        raise
    return path


def naming(err: OSError, path) -> OSError:
    """``err`` naming ``path`` when it names no file (ENOSPC, EDQUOT and EIO come without one)."""
    if err.filename is not None and not is_temp_name(Path(str(err.filename)).name):
        return err
    return type(err)(err.errno, err.strerror or str(err), str(path))


def atomic_write_bytes(path, data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically."""
    return atomic_write_with(path, lambda tmp: Path(tmp).write_bytes(data))


def atomic_write_text(path, text: str) -> Path:
    return atomic_write_bytes(path, text.encode("utf-8"))


def atomic_save_image(path, image, **params) -> Path:
    """Save a PIL image atomically; the format follows the suffix of ``path``."""
    import io

    buf = io.BytesIO()
    image.save(buf, format=Path(path).suffix.lstrip(".").upper().replace("JPG", "JPEG"), **params)
    return atomic_write_bytes(path, buf.getvalue())


def atomic_write_group(contents: dict) -> list[Path]:
    """Write several files as one unit ({path: bytes or text}, e.g. an output and its side file): every new
    content is written to its temporary file first, and only when all are written are they renamed onto their
    targets, so a full disk leaves every old file as it was, never a new output beside an old side file."""
    temps: list[tuple[str, Path]] = []
    try:
        for path, data in contents.items():
            path = Path(path)
            tmp = _temp_beside(path)
            temps.append((tmp, path))
            try:
                Path(tmp).write_bytes(data.encode("utf-8") if isinstance(data, str) else data)
            except OSError as err:
                raise naming(err, path) from None
        for tmp, path in temps:
            os.replace(tmp, path)
    except BaseException:
        for tmp, _ in temps:
            Path(tmp).unlink(missing_ok=True)
        raise
    return [path for _, path in temps]


def remove_temp_files_of(*targets) -> int:
    """Delete the leftover temporary files :func:`atomic_write_with` made for these target files (a killed run's),
    and no other: a command sharing the folder keeps its own."""
    n = 0
    for target in map(Path, targets):
        folder = target.parent
        if folder.is_dir() and not folder.is_symlink():
            for tmp in folder.glob(f"{TEMP_PREFIX}*.{target.name}.tmp"):
                if is_temp_name(tmp.name) and tmp.name.endswith(f".{target.name}.tmp") and \
                        len(tmp.name) == len(TEMP_PREFIX) + 8 + len(target.name) + 5 and \
                        not tmp.is_symlink() and tmp.is_file():
                    tmp.unlink(missing_ok=True)
                    n += 1
    return n


def remove_temp_files(*folders) -> int:
    """Delete the leftover temporary files of :func:`atomic_write_with` in ``folders`` (not recursive, never
    through a symlink, only names of ``TEMP_PATTERN``); returns how many."""
    n = 0
    for folder in map(Path, folders):
        if folder.is_dir() and not folder.is_symlink():
            for tmp in folder.iterdir():
                if is_temp_name(tmp.name) and not tmp.is_symlink() and tmp.is_file():
                    tmp.unlink(missing_ok=True)
                    n += 1
    return n


def respect_umask(folder) -> None:
    """Give every file in ``folder`` the mode a plain ``open()`` would (0666 & ~umask): safetensors writes its
    weights 0600, which another user or a serving container cannot read."""
    mode = 0o666 & ~umask()
    for path in Path(folder).iterdir():
        if path.is_file() and not path.is_symlink():
            os.chmod(path, mode)


def tsv_field(text) -> str:
    """One field of a side TSV (rejects, removed, changes) or of a tab-separated output line: a backslash, tab,
    newline or carriage return in an id or a reason is escaped (``\\t``...), so every record stays one line of
    its columns."""
    return str(text).replace("\\", "\\\\").replace("\t", "\\t").replace("\n", "\\n").replace("\r", "\\r")


def tsv_line(*fields) -> str:
    """A TSV line of ``fields`` (each through ``tsv_field``), newline included."""
    return "\t".join(map(tsv_field, fields)) + "\n"


FIGURE_DPI = 120  # what save_figure writes at


def in_notebook() -> bool:
    """True inside a Jupyter kernel (where figures can be shown inline)."""
    shell = sys.modules.get("IPython") and sys.modules["IPython"].get_ipython()
    return bool(shell) and type(shell).__name__ == "ZMQInteractiveShell"


def save_figure(fig, path: Path | str, show: bool | None = None, dpi: int = FIGURE_DPI) -> Path:
    """Save ``fig`` to ``path`` atomically (format from the suffix), show it inline when ``show`` (default: inside
    a notebook), then close it. Returns the path."""
    import matplotlib.pyplot as plt

    path = Path(path)
    fmt = path.suffix.lstrip(".") or "png"
    try:
        atomic_write_with(path, lambda tmp: fig.savefig(tmp, format=fmt, dpi=dpi, bbox_inches="tight"))
        if show if show is not None else in_notebook():
            from IPython.display import display
            display(fig)
    finally:
        plt.close(fig)
    return path
