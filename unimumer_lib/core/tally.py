"""The count every batch command reconciles, ``read = written + rejected``: checked in one place, printed one way."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Tally:
    """What a batch job did with its inputs: each one read is written or rejected (with a reason, in its rejects
    file). Making one whose counts do not add up raises: a bug guard, never a user error."""

    read: int
    written: int
    rejected: int

    def __post_init__(self):
        if self.read != self.written + self.rejected:
            raise RuntimeError(f"read {self.read} != written {self.written} + rejected {self.rejected}: an input "
                               f"was neither written nor rejected (a bug)")

    @classmethod
    def of(cls, counts) -> "Tally":
        """The tally of a summary or manifest holding ``read``, ``written`` and ``rejected``."""
        return cls(counts["read"], counts["written"], counts["rejected"])

    def as_dict(self) -> dict[str, int]:
        """``{"read", "written", "rejected"}``: the shape summaries and manifests store."""
        return {"read": self.read, "written": self.written, "rejected": self.rejected}

    def line(self, what: str = "", written: str = "written") -> str:
        """``<what>: read N = written W + rejected R`` (``written`` names the middle term: used, predicted, ...)."""
        counts = f"read {self.read} = {written} {self.written} + rejected {self.rejected}"
        return f"{what}: {counts}" if what else counts


def summary_lines(summary: dict, width: int = 10) -> str:
    """One ``Tally.line`` per entry of a ``{name: counts}`` summary (per task, per split), names right-aligned."""
    return "\n".join(Tally.of(counts).line(f"{name:>{width}}") for name, counts in summary.items())
