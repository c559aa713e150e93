"""What notebook 01 shows of a corpus: caption statistics (length, nesting, structures, symbols) and the
frames of prepared splits (per source, read = written + rejected, rejects) and of raw InkML folders."""

from __future__ import annotations

from collections import Counter

from .inkml import find_inkml
from .prepare import find_splits, prepared_splits, source_of
from ..formats.records import Record
from ..latex.tree import depth as tree_depth, symbol_counts as caption_symbol_counts

STRUCTURE_COUNTS = {"frac": ("\\frac",), "sqrt": ("\\sqrt",), "sup": ("^",), "sub": ("_",),
                    "sum_int_lim": ("\\sum", "\\int", "\\lim")}


def brace_depth(tokens: list[str]) -> int:
    """Deepest nesting of ``{ }`` groups in a token sequence (0 for a flat caption)."""
    depth = deepest = 0
    for t in tokens:
        if t == "{":
            depth += 1
            deepest = max(deepest, depth)
        elif t == "}":
            depth = max(0, depth - 1)
    return deepest


def caption_stats(caption: str) -> dict:
    """Length, brace nesting depth, layout-tree depth and structure counts of one space-separated caption."""
    tokens = caption.split()
    stats = {"length": len(tokens), "depth": brace_depth(tokens), "tree_depth": None}
    try:
        stats["tree_depth"] = tree_depth(tokens)
    except ValueError:  # a caption the tree parser cannot read keeps tree_depth None
        pass
    for name, names in STRUCTURE_COUNTS.items():
        stats[name] = sum(t in names for t in tokens)
    return stats


def token_frequencies(captions) -> Counter:
    """Token frequencies over captions, without the structural braces (summed ``tree.symbol_counts``)."""
    counts = Counter()
    for c in captions:
        counts.update(caption_symbol_counts(c))
    return counts


def counts_frame(out):
    """One row per (split, source) of every prepared split under ``out``: expressions written."""
    import pandas as pd

    rows = [{"split": d.name, "source": source, "expressions": n}
            for d, manifest in prepared_splits(out) for source, n in manifest["sources"].items()]
    return pd.DataFrame(rows, columns=["split", "source", "expressions"])


def reconcile_frame(out):
    """One row per prepared split: read, written, rejected (read = written + rejected)."""
    import pandas as pd

    rows = [{"split": d.name, **{k: manifest[k] for k in ("read", "written", "rejected")}}
            for d, manifest in prepared_splits(out)]
    return pd.DataFrame(rows, columns=["split", "read", "written", "rejected"])


def rejects_frame(out):
    """All rejects of the prepared splits under ``out`` as (split, file, reason) rows."""
    import pandas as pd

    rows = [{"split": d.name, **r} for d, manifest in prepared_splits(out) for r in manifest["rejects"]]
    return pd.DataFrame(rows, columns=["split", "file", "reason"])  # (the manifest's reject entries)


def stats_frame(records: list[Record]):
    """One row per record: id, split, source and :func:`caption_stats` columns."""
    import pandas as pd

    return pd.DataFrame([{"id": r.id, "split": r.split, "source": r.source, **caption_stats(r.caption)}
                         for r in records])


def inventory_frame(src):
    """InkML files per (split, source) under ``src``, counted without parsing them."""
    import pandas as pd

    rows = Counter((name, source_of(p, folder)) for name, folder in find_splits(src).items()
                   for p in find_inkml(folder))
    return pd.DataFrame([{"split": s, "source": src_name, "files": n} for (s, src_name), n in sorted(rows.items())],
                        columns=["split", "source", "files"])


def describe_inventory(files) -> str:
    """A sentence on an ``inventory_frame``: files per split and how many sources each split pools (a source is
    a collection with its own writers and devices; a split of one source is one hand, e.g. synthetic)."""
    if files.empty:
        return "No InkML file was found."
    parts = []
    for split, group in files.groupby("split", sort=True):
        sources = group.sort_values("files", ascending=False)
        top = ", ".join(f"{s} {n:,}" for s, n in zip(sources.source, sources.files))
        n = int(group.files.sum())
        parts.append(f"{split}: {n:,} file{'s' * (n != 1)} from {len(group)} source{'s' * (len(group) > 1)} "
                     f"({top})")
    return "This run's data: " + "; ".join(parts) + "."


def describe_rejects(rejects) -> str:
    """A sentence on a ``rejects_frame``: none, or how many per split and the most common reason."""
    if rejects.empty:
        return "No file was rejected: every file read was written."
    per_split = ", ".join(f"{s} {n}" for s, n in rejects.split.value_counts().sort_index().items())
    reason, count = Counter(r.split(":")[0] for r in rejects.reason).most_common(1)[0]
    return (f"{len(rejects)} file{'s' * (len(rejects) > 1)} rejected ({per_split}); the most common reason: "
            f"{reason} ({count}).")
