"""Output folders the commands write into: one writer at a time, and clean-up of what an interrupted run left.

``OutputLock(folder)`` holds an exclusive ``flock`` on ``folder/.unimumer.lock`` and writes the holder's pid
and command into it; a second run fails at once with a message naming the holder. The kernel drops the lock
when its process dies (kill -9 included), so a lock file left by a dead process is simply taken over.
``is_empty_dir`` counts a folder holding only the lock and our temporary files (``files.is_temp_name``) as
empty.
"""

from __future__ import annotations

import fcntl
import json
import os
import socket
import sys
import time
from pathlib import Path

from .files import is_temp_name

LOCK_FILE = ".unimumer.lock"


class LockedError(RuntimeError):
    """Another live process writes into the folder."""


def _holder(path: Path, tries: int = 20) -> str:
    for _ in range(tries):  # the holder writes its details just after taking the lock
        try:
            info = json.loads(path.read_text(encoding="utf-8"))
            return f"pid {info['pid']} on {info['host']} ({info['command']}, since {info['since']})"
        except (OSError, ValueError, KeyError, TypeError):
            time.sleep(0.05)
    return "a process that did not write its details"


class OutputLock:
    """``with OutputLock(folder, "unimumer prepare"):`` — exclusive writer lock on ``folder`` (created if needed).
    ``name``: another lock file in ``folder``, for a writer of one file there (``infer --out``) or a run that
    holds the folder while its children lock it for their own steps (``reproduce``)."""

    def __init__(self, folder, command: str | None = None, name: str = LOCK_FILE):
        self.folder = Path(folder)
        self.path = self.folder / name
        self.command = command or " ".join(["unimumer", *sys.argv[1:]])
        self.fd: int | None = None
        self.made: list[Path] = []

    def acquire(self) -> "OutputLock":
        missing = [p for p in (self.folder, *self.folder.parents) if not p.exists()]
        self.folder.mkdir(parents=True, exist_ok=True)
        self.made = missing[::-1]  # folders this lock created: removed again on release if still empty
        while True:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o666)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)
                raise LockedError(f"{self.folder}: another run writes here: {_holder(self.path)}; "
                                  f"wait for it or use another --out (lock file {self.path})") from None
            # The previous holder may have unlinked the file between our open and flock: lock the live one.
            try:
                if os.fstat(fd).st_ino == os.stat(self.path).st_ino:
                    break
            except FileNotFoundError:
                pass
            os.close(fd)
        info = {"pid": os.getpid(), "host": socket.gethostname(), "command": self.command,
                "since": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
        try:
            os.ftruncate(fd, 0)
            os.write(fd, (json.dumps(info) + "\n").encode("utf-8"))
        except OSError as err:  # a full disk: say which file could not be written
            os.close(fd)
            raise OSError(err.errno, err.strerror, str(self.path)) from None
        self.fd = fd
        return self

    def release(self) -> None:
        if self.fd is not None:
            self.path.unlink(missing_ok=True)  # unlink while still locked: a waiting opener re-checks the inode
            os.close(self.fd)
            self.fd = None
            for folder in reversed(self.made):  # a run refused before writing leaves no empty folder behind
                try:
                    folder.rmdir()
                except OSError:  # not empty (or not ours to remove): kept
                    break

    def __enter__(self) -> "OutputLock":
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()


def is_empty_dir(folder) -> bool:
    """True for a missing folder or one holding nothing but our lock file and leftover temporary files."""
    folder = Path(folder)
    return not folder.exists() or all(p.name == LOCK_FILE or is_temp_name(p.name) for p in folder.iterdir())
