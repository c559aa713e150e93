"""The fast paths of issue 24 give what the plain definitions give: eval's start-up imports, the corpus-wide CER
check, the compact InkML listing, the thread policy and the pool fed a block at a time."""

from __future__ import annotations

import subprocess
import sys

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from rapidfuzz.distance import Levenshtein

from unimumer_lib.evaluation import metrics
from unimumer_lib.core import workers
from unimumer_lib.data.inkml import find_inkml, inkml_listing, listing_path

HEAVY = ("pandas", "torch", "transformers", "PIL", "matplotlib", "datasets", "trl")


def test_eval_starts_without_the_heavy_libraries(reference_predictions):
    code = ("import sys; from unimumer_lib.pipeline import cli; cli.main(['eval', sys.argv[1]]); "
            f"print(sorted(m for m in {HEAVY!r} if m in sys.modules))")
    done = subprocess.run([sys.executable, "-c", code, str(reference_predictions)], capture_output=True, text=True,
                          check=True)
    assert "83.87" in done.stdout and done.stdout.strip().splitlines()[-1] == "[]"


texts = st.lists(st.sampled_from(["a", "b", "\\x", " ", "  ", "\t", "\n", "{", "é"]), max_size=8).map("".join)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(texts, texts), min_size=1, max_size=6))
def test_cer_equals_its_definition_whatever_the_whitespace(pairs):
    gts, preds = [g for g, _ in pairs], [p for _, p in pairs]
    refs, hyps = [" ".join(g.split()) for g in gts], [" ".join(p.split()) for p in preds]
    total = sum(map(len, refs))
    expected = (100.0 * sum(Levenshtein.distance(r, h) for r, h in zip(refs, hyps)) / total if total
                else 0.0 if not any(hyps) else 100.0)
    assert metrics.char_error_rate(gts, preds) == pytest.approx(expected)
    assert metrics.char_error_rate(gts, preds, threads=2) == pytest.approx(expected)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(texts, texts), min_size=1, max_size=6))
def test_scores_equal_those_of_the_single_spaced_texts_whatever_the_whitespace(pairs):
    """The shortcuts (exact pairs, the corpus-wide spacing check of the CER) give the numbers of the texts written
    with single spaces (all but ``cer``, which divides by the raw caption lengths, as
    the official script does)."""
    gts, preds = [g for g, _ in pairs], [p for _, p in pairs]
    spaced = metrics.score([" ".join(g.split()) for g in gts], [" ".join(p.split()) for p in preds]).as_dict()
    got = metrics.score(gts, preds).as_dict()
    del got["cer"], spaced["cer"]
    assert got == pytest.approx(spaced)


def test_listing_has_find_inkml_files_and_order(crohme_root, tmp_path):
    for split in ("train", "test2014"):
        folder = crohme_root / split
        assert [listing_path(folder, e) for e in inkml_listing(folder)] == find_inkml(folder)
    for rel in ("a/b.inkml", "a-b.inkml", "a/c.INKML", "ab/x.inkml", "a b.inkml", "z.txt"):
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_text("")
    (tmp_path / "link").symlink_to(tmp_path / "a")  # not entered, as rglob does not enter it
    assert [listing_path(tmp_path, e) for e in inkml_listing(tmp_path)] == find_inkml(tmp_path)
    assert len(inkml_listing(tmp_path / "empty-does-not-exist")) == 0


def test_thread_policy(monkeypatch):
    monkeypatch.setattr(workers, "cores", lambda: 4)
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    assert workers.threads() == 4 and workers.threads(workers=2) == 2 and workers.threads(workers=8) == 1
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    assert workers.threads() == 1 and workers.threads(3) == 3  # a count given wins over the environment
    assert workers.threads(16) == 4  # never more than the cores
    monkeypatch.setenv("OMP_NUM_THREADS", "junk")
    assert workers.threads() == 4
    with pytest.raises(ValueError, match=">= 1"):
        workers.threads(0)


def _square(x):
    return x * x


def test_pool_takes_jobs_a_block_at_a_time():
    taken = []

    def jobs():
        for i in range(5000):
            taken.append(i)
            yield i

    results = workers.imap_ordered(_square, jobs(), workers=2, chunksize=4)
    assert next(results) == 0
    assert len(taken) < 5000  # not every job was drawn before the first result
    assert list(results) == [i * i for i in range(1, 5000)]
    assert list(workers.imap_ordered(_square, iter([3]), workers=2)) == [9]
