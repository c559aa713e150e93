"""InkML files: read pen traces, symbol groups and truth annotations; write them back in CROHME style.

The reader survives the defects of the real CROHME package: CRLF line endings, Latin-1 bytes without an
encoding declaration (recovered), files without ``<traceFormat>``, extra channels (``X Y T``, ``X Y F``).
Empty or truncated files raise :class:`InkmlError`; the folder reader turns those into rejects.

Coordinates are checked, because one bad point silently ruins the rendered image (an all-white picture, or the
expression squashed into a line): a non-finite value (nan, inf) or one beyond ``MAX_COORD`` in absolute value
rejects the file, and so does an *absurd extent*: a point lying more than ``MAX_SPREAD`` times the ink's robust
size outside its robust box, where the box is the 10th-90th percentile range of all points per axis and the
size is the larger side of that box. Real CROHME ink stays within 2.4 sizes of its box and 26,406 units of
the origin, so neither rule touches it. The relative rule needs the stray points to be under 10% of all points
(an ink of 10 points or fewer cannot be judged by it); the absolute bound catches a 1e30 point in any ink.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from lxml import etree

from ..formats.rejects import Reject

INKML_NS = "http://www.w3.org/2003/InkML"
MATHML_NS = "http://www.w3.org/1998/Math/MathML"
XML_ID = "{http://www.w3.org/XML/1998/namespace}id"
INKML_SUFFIX = ".inkml"
SEGMENTATION_LABEL = "Segmentation"  # label of the outer traceGroup in CROHME files
LATIN1_NOTE = "decoded as Latin-1: invalid UTF-8 and no encoding declaration"
MAX_COORD = 1e6  # pen devices report at most tens of thousands of units; CROHME's largest is 26,406
MAX_SPREAD = 50.0  # absurd-extent limit, in robust sizes outside the robust box; CROHME's worst is 2.4
ROBUST_PERCENTILES = (10, 90)

# Recover mode, because most CROHME files use xml:id values that are not NCNames ("x_1", "\\sum_1") or
# repeat them, which libxml2 reports as validity errors; every well-formedness error is still fatal.
_PARSER = etree.XMLParser(recover=True, resolve_entities=False, no_network=True, huge_tree=True)
_HARMLESS_ERRORS = {"DTD_XMLID_VALUE", "DTD_ID_REDEFINED"}
_ENCODING_DECL = re.compile(rb"^\s*<\?xml[^>]*encoding=", re.I)


class InkmlError(ValueError):
    """A file that cannot be read as InkML; the message names the file and the reason."""

    def __init__(self, path, reason: str):
        self.path = str(path)
        self.reason = reason
        super().__init__(f"{path}: {reason}")


@dataclass
class SymbolGroup:
    """One segmented symbol: its label, the ids of its traces, and the MathML xml:id it annotates."""

    label: str
    trace_ids: list[str]
    href: str | None = None


@dataclass(eq=False)
class Ink:
    """One handwritten expression. ``traces`` maps trace id -> float32 array (n, 2) of X, Y."""

    id: str
    path: str | None = None
    traces: dict[str, np.ndarray] = field(default_factory=dict)
    groups: list[SymbolGroup] = field(default_factory=list)
    latex: str | None = None
    mathml: str | None = None
    annotations: dict[str, str] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)  # recoveries applied while reading

    def __eq__(self, other) -> bool:
        if not isinstance(other, Ink):
            return NotImplemented
        return (self.id == other.id and self.groups == other.groups and self.latex == other.latex
                and self.mathml == other.mathml and self.annotations == other.annotations
                and list(self.traces) == list(other.traces)
                and all(np.array_equal(a, other.traces[k]) for k, a in self.traces.items()))


def _local(tag) -> str:
    return etree.QName(tag).localname if isinstance(tag, str) else ""


def _children(el, name: str):
    return [c for c in el if _local(c.tag) == name]


def _strict_parse(data: bytes):
    """Parse; return (root, None) or (None, message of the first real error)."""
    root = etree.fromstring(data, _PARSER)
    errors = [e for e in _PARSER.error_log if e.type_name not in _HARMLESS_ERRORS]
    if errors or root is None:
        e = errors[0] if errors else None
        return None, f"{e.message.strip()} (line {e.line})" if e else "no XML content"
    return root, None


def _parse_xml(data: bytes, path) -> tuple[etree._Element, list[str]]:
    if not data.strip():
        raise InkmlError(path, "empty file")
    root, error = _strict_parse(data)
    if root is not None:
        return root, []
    # XML defaults to UTF-8; a file saved as Latin-1 without saying so is still unambiguous to decode.
    if not _ENCODING_DECL.match(data):
        try:
            data.decode("utf-8")
        except UnicodeDecodeError:
            root, error = _strict_parse(data.decode("latin-1").encode("utf-8"))
            if root is not None:
                return root, [LATIN1_NOTE]
    raise InkmlError(path, f"malformed or truncated XML: {error}")


def _channels(root) -> list[str]:
    fmt = next(root.iter("{*}traceFormat", "traceFormat"), None)
    if fmt is None:
        return []
    return [c.get("name", "") for c in fmt if _local(c.tag) == "channel"]


def parse_trace(text: str, channels: list[str] | None = None) -> np.ndarray:
    """``"x y [t ...], x y ..."`` -> float32 array (n, 2) of X, Y, whatever the channel layout."""
    points = [p for p in (text or "").split(",") if p.strip()]
    if not points:
        raise ValueError("trace has no points")
    values = np.array(" ".join(points).split(), dtype=np.float64)
    if values.size % len(points):
        raise ValueError(f"trace points have unequal numbers of values ({values.size} values, {len(points)} points)")
    arr = values.reshape(len(points), -1)
    if arr.shape[1] < 2:
        raise ValueError("trace points have fewer than 2 values")
    cols = [0, 1]
    if channels and len(channels) == arr.shape[1] and "X" in channels and "Y" in channels:
        cols = [channels.index("X"), channels.index("Y")]
    xy = arr[:, cols]
    bad = ~np.isfinite(xy) | (np.abs(np.nan_to_num(xy)) > MAX_COORD)
    if bad.any():
        i = int(np.argmax(bad.any(axis=1)))
        why = "not finite" if not np.isfinite(xy[i]).all() else f"beyond +-{MAX_COORD:g}"
        raise ValueError(f"point {i} ({xy[i, 0]:g}, {xy[i, 1]:g}) is {why}")
    return np.ascontiguousarray(xy, dtype=np.float32)


def check_extent(traces: dict[str, np.ndarray]) -> None:
    """Raise ValueError naming the trace and point when a point lies absurdly far from the rest (see module doc)."""
    points = np.concatenate(list(traces.values())).astype(np.float64)
    lo, hi = np.percentile(points, ROBUST_PERCENTILES, axis=0)
    size = float((hi - lo).max())
    if size <= 0:  # most points coincide: no scale to judge by
        return
    outside = np.maximum(lo - points, points - hi).max(axis=1) / size
    worst = int(np.argmax(outside))
    if outside[worst] > MAX_SPREAD:
        ends = np.cumsum([len(t) for t in traces.values()])
        k = int(np.searchsorted(ends, worst, side="right"))
        tid, first = list(traces)[k], int(ends[k - 1]) if k else 0
        x, y = points[worst]
        raise ValueError(f"trace {tid}: point {worst - first} ({x:g}, {y:g}) lies {outside[worst]:.3g} times the "
                         f"ink's size outside its {ROBUST_PERCENTILES[0]}-{ROBUST_PERCENTILES[1]} percentile box "
                         f"(limit {MAX_SPREAD:g}): absurd extent")


def _groups(root) -> list[SymbolGroup]:
    groups = []
    for tg in root.iter("{*}traceGroup", "traceGroup"):
        refs = [v.get("traceDataRef") for v in _children(tg, "traceView")]
        if not refs:
            continue
        label = next((a.text or "" for a in _children(tg, "annotation") if a.get("type") == "truth"), "")
        href = next((a.get("href") for a in _children(tg, "annotationXML") if a.get("href")), None)
        groups.append(SymbolGroup(label=label.strip(), trace_ids=refs, href=href))
    return groups


def ink_from_xml(data: bytes | str, path=None, id: str | None = None) -> Ink:
    """Parse InkML bytes/text; ``path`` is only used to name the file in errors and to derive the id."""
    raw = data.encode("utf-8") if isinstance(data, str) else data
    root, notes = _parse_xml(raw, path or "<string>")
    if _local(root.tag) != "ink":
        raise InkmlError(path or "<string>", f"root element is <{_local(root.tag)}>, not <ink>")
    channels = _channels(root)
    traces: dict[str, np.ndarray] = {}
    annotations: dict[str, str] = {}
    latex = mathml = None
    for el in root:
        name = _local(el.tag)
        if name == "trace":
            tid = el.get("id") or el.get(XML_ID) or str(len(traces))
            try:
                traces[tid] = parse_trace(el.text, channels)
            except ValueError as err:
                raise InkmlError(path or "<string>", f"trace {tid}: {err}") from None
        elif name == "annotation":
            kind, text = el.get("type", ""), (el.text or "").strip()
            if kind == "truth":
                latex = text
            else:
                annotations.setdefault(kind, text)
        elif name == "annotationXML" and el.get("type") == "truth":
            math = next((c for c in el if _local(c.tag) == "math"), None)
            if math is not None:
                mathml = etree.tostring(math, encoding="unicode", with_tail=False)
    if not traces:
        raise InkmlError(path or "<string>", "no <trace> elements")
    try:
        check_extent(traces)
    except ValueError as err:
        raise InkmlError(path or "<string>", str(err)) from None
    stem = id if id is not None else (Path(path).stem if path else "")
    return Ink(id=stem, path=str(path) if path else None, traces=traces, groups=_groups(root),
               latex=latex, mathml=mathml, annotations=annotations, notes=notes)


def read_inkml(path) -> Ink:
    """Read one InkML file; raises InkmlError naming the file and the reason."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as err:
        raise InkmlError(path, f"cannot read: {err.strerror or err}") from None
    return ink_from_xml(data, path)


def is_inkml(path: Path) -> bool:
    """An .inkml file, whatever the case of its suffix (some packages ship ``.INKML``)."""
    return path.suffix.lower() == INKML_SUFFIX and path.is_file()


def find_inkml(folder) -> list[Path]:
    """All .inkml / .INKML files under ``folder`` (recursive), in a stable order."""
    return sorted(p for p in Path(folder).rglob("*") if is_inkml(p))


LISTING_SEP = "\x00"  # joins path parts in inkml_listing: it sorts below every character, as Path order needs


def _walk_inkml(folder: Path):
    """(relative folder parts, file name) of each InkML file under ``folder``, each folder's entries read one at a
    time (``Path.rglob`` lists a whole folder first: 100k entries for a flat MathWriting split); symlinked folders
    are not entered, as ``Path.rglob`` does not enter them."""
    pending = [folder]
    while pending:
        top = pending.pop()
        rel = top.relative_to(folder).parts
        try:
            entries = os.scandir(top)
        except OSError:
            continue
        with entries:
            for entry in entries:
                if entry.is_dir(follow_symlinks=False):
                    pending.append(Path(entry.path))
                elif entry.name.lower().endswith(INKML_SUFFIX) and entry.is_file():
                    yield rel, entry.name


def inkml_listing(folder, block: int = 8192):
    """The files of ``find_inkml(folder)``, in its order, as one numpy array of relative paths (parts joined by
    ``LISTING_SEP``, UTF-8 bytes): about a file name's length per file instead of a ``Path`` object each, for
    corpora of hundreds of thousands of files (names are packed ``block`` at a time as the folders are read)."""
    import numpy as np

    blocks, names = [], []
    for rel, name in _walk_inkml(Path(folder)):
        names.append(LISTING_SEP.join((*rel, name)).encode("utf-8", "surrogateescape"))
        if len(names) >= block:
            blocks.append(np.array(names, dtype=bytes))
            names = []
    if names:
        blocks.append(np.array(names, dtype=bytes))
    if not blocks:
        return np.array([], dtype="S1")
    listing = np.empty(sum(map(len, blocks)), dtype=max((b.dtype for b in blocks), key=lambda d: d.itemsize))
    at = 0
    while blocks:  # each block freed once copied: the listing is never held twice
        block = blocks.pop(0)
        listing[at:at + len(block)] = block
        at += len(block)
    listing.sort()
    return listing


def holds_inkml(folder) -> bool:
    """True when ``folder`` holds an InkML file at any depth (stops at the first one)."""
    return next(_walk_inkml(Path(folder)), None) is not None


def listing_path(folder, entry) -> Path:
    """The path of one ``inkml_listing`` entry."""
    return Path(folder).joinpath(*entry.decode("utf-8", "surrogateescape").split(LISTING_SEP))


def read_inkml_folder(folder) -> tuple[list[Ink], list[Reject]]:
    """Read every .inkml under ``folder``; a bad file becomes a ``formats.rejects.Reject`` (source = its path,
    reason), never an exception."""
    inks, rejects = [], []
    for path in find_inkml(folder):
        try:
            inks.append(read_inkml(path))
        except InkmlError as err:
            rejects.append(Reject(str(path), "", err.reason))
    return inks, rejects


def caption_of(ink: Ink) -> str:
    """The literature-format caption of an ink (derived from its MathML, else its raw LaTeX; a MathWriting file
    has neither, and its label is the caption: see ``mathwriting_caption``)."""
    from ..latex.tokens import canonical_caption

    if ink.latex is None and ink.mathml is None:
        if mathwriting_label(ink) is None:
            raise ValueError(f"no truth annotation, MathML, {' or '.join(MATHWRITING_LABELS)}")
        return mathwriting_caption(ink)
    return canonical_caption(ink.mathml, ink.latex)


# ---- writing -------------------------------------------------------------------------------------

def _format_points(arr: np.ndarray) -> str:
    arr = np.asarray(arr, dtype=np.float32).reshape(-1, 2)
    if np.all(arr == np.round(arr)) and np.all(np.abs(arr) < 2**24):
        text = arr.astype(np.int64).astype(str)
    else:
        text = np.char.mod("%.7g", arr)
        if not np.array_equal(text.astype(np.float32), arr):  # 9 significant digits always round-trip float32
            text = np.char.mod("%.9g", arr)
    return ", ".join(f"{x} {y}" for x, y in text)


def _element(parent, tag: str, text: str | None = None, **attrib):
    el = etree.SubElement(parent, f"{{{INKML_NS}}}{tag}", {k: v for k, v in attrib.items() if v is not None})
    el.text = text
    return el


def ink_to_xml(ink: Ink) -> str:
    """Serialise an Ink as CROHME-style InkML (X Y traces, truth annotations, symbol traceGroups)."""
    root = etree.Element(f"{{{INKML_NS}}}ink", nsmap={None: INKML_NS})
    fmt = _element(root, "traceFormat")
    for name in ("X", "Y"):
        _element(fmt, "channel", name=name, type="decimal")
    if ink.latex is not None:
        _element(root, "annotation", ink.latex, type="truth")
    for kind, text in ink.annotations.items():
        _element(root, "annotation", text, type=kind)
    if ink.mathml is not None:
        holder = _element(root, "annotationXML", type="truth", encoding="Content-MathML")
        holder.append(etree.fromstring(ink.mathml.encode("utf-8"), _PARSER))
    for tid, arr in ink.traces.items():
        _element(root, "trace", _format_points(arr), id=tid)
    if ink.groups:
        outer = _element(root, "traceGroup", **{XML_ID: f"{len(ink.traces)}"})
        _element(outer, "annotation", SEGMENTATION_LABEL, type="truth")
        for i, g in enumerate(ink.groups, start=len(ink.traces) + 1):
            tg = _element(outer, "traceGroup", **{XML_ID: str(i)})
            _element(tg, "annotation", g.label, type="truth")
            for tid in g.trace_ids:
                _element(tg, "traceView", traceDataRef=tid)
            if g.href is not None:
                _element(tg, "annotationXML", href=g.href)
    etree.indent(fmt, level=1)
    for el in root:
        el.tail = "\n"
    root.text = "\n"
    text = etree.tostring(root, encoding="unicode")
    return '<?xml version="1.0" encoding="UTF-8"?>\n' + text + "\n"


def write_inkml(path, ink: Ink) -> Path:
    """Write ``ink`` to ``path`` atomically (temp file + rename)."""
    from ..core.files import atomic_write_text

    return atomic_write_text(Path(path), ink_to_xml(ink))


# ---- MathWriting ---------------------------------------------------------------------------------
# Google's MathWriting (2024) InkML: <annotation type="label"> (the LaTeX as written), "normalizedLabel" (the
# dataset's own normalised label), other annotations (sampleId, splitTagOriginal, inkCreationMethod, ...) and
# <trace>s of "x y t" points, no traceFormat. ``ink_from_xml`` reads it as it is (labels and metadata land in
# ``Ink.annotations``); folders train/, valid/, test/, synthetic/, symbols/ are splits as CROHME's are.

MATHWRITING_LABELS = ("normalizedLabel", "label")  # preferred first
MATHWRITING_TIME_STEP = 10.0  # ms between written points: Ink keeps no time channel


def mathwriting_label(ink: Ink) -> str | None:
    """The MathWriting label of an ink: its normalizedLabel when present and not empty, else its label."""
    return next((ink.annotations[k] for k in MATHWRITING_LABELS if ink.annotations.get(k)), None)


def mathwriting_caption(ink: Ink) -> str:
    """The label as space-separated tokens (``latex.tokenize``): ``\\frac{a}{12}`` -> ``\\frac { a } { 1 2 }``."""
    from ..latex.tokens import tokenize

    label = mathwriting_label(ink)
    if label is None:
        raise ValueError(f"no {' or '.join(MATHWRITING_LABELS)} annotation")
    return " ".join(tokenize(label))


def ink_to_mathwriting_xml(ink: Ink) -> str:
    """Serialise an Ink in MathWriting's layout (annotations, then "x y t" traces with evenly spaced times)."""
    root = etree.Element(f"{{{INKML_NS}}}ink", nsmap={None: INKML_NS})
    for kind, text in ink.annotations.items():
        _element(root, "annotation", text, type=kind)
    t = 0.0
    for arr in ink.traces.values():
        times = t + MATHWRITING_TIME_STEP * np.arange(len(arr))
        t = float(times[-1]) + MATHWRITING_TIME_STEP if len(arr) else t
        _element(root, "trace", ",".join(f"{x:.7g} {y:.7g} {s:g}" for (x, y), s in zip(arr.tolist(), times)))
    for el in root:
        el.tail = "\n"
    root.text = "\n"
    return '<?xml version="1.0" encoding="UTF-8"?>\n' + etree.tostring(root, encoding="unicode") + "\n"


def check_kind(folders, kind: str) -> None:
    """Refuse a ``kind`` (``unimumer prepare <kind>``: ``crohme`` or ``mathwriting``) that names the other InkML
    layout than the first readable file in ``folders`` has (a MathWriting label, or not)."""
    for folder in folders:
        for path in find_inkml(folder):
            try:
                ink = read_inkml(path)
            except (InkmlError, ValueError):
                continue
            found = "mathwriting" if mathwriting_label(ink) is not None else "crohme"
            if found != kind:
                raise ValueError(f"{path}: {found} InkML, but `prepare {kind}` was asked for; run `unimumer "
                                 f"prepare {found}` on it")
            return
