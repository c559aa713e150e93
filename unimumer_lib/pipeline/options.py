"""The ``unimumer`` command's options: the root parser and one function per subcommand that adds its parser and
returns it (``cli`` sets what each runs). A heavy subcommand imports what its choices need inside its function, so
building only the light ones (``cli.LIGHT_COMMANDS``) imports no task, training or inference module."""

from __future__ import annotations

import argparse

from ..core.errors import at_least
from ..formats.families import INKML_FAMILIES
from ..latex.published import STYLES


def csv_list(text: str) -> list[str]:
    """The items of a comma-separated option value."""
    return [t.strip() for t in text.split(",") if t.strip()]


def root_parser(description: str, version: str) -> tuple[argparse.ArgumentParser, object, argparse.ArgumentParser]:
    """(the ``unimumer`` parser, its subparsers, the ``--debug`` parent every subcommand takes)."""
    debug = argparse.ArgumentParser(add_help=False)
    debug.add_argument("--debug", action="store_true", default=argparse.SUPPRESS,
                       help="show the full traceback of an error")
    p = argparse.ArgumentParser(prog="unimumer", description=description, parents=[debug])
    p.add_argument("--version", action="version", version=f"unimumer {version}")
    return p, p.add_subparsers(dest="command", required=True), debug


def add_prepare(sub, debug) -> argparse.ArgumentParser:
    """``unimumer prepare``."""
    s = sub.add_parser("prepare", parents=[debug], help="InkML folders -> images + caption.txt per split")
    s.add_argument("kind", choices=INKML_FAMILIES,
                   help="input layout: InkML split folders, CROHME (truth + MathML) or MathWriting (normalizedLabel)")
    s.add_argument("--src", required=True,
                   help="folder holding split folders (CROHME: train/, test2014/, ...; MathWriting: train/, valid/, "
                        "test/, synthetic/, symbols/)")
    s.add_argument("--out", required=True, help="folder for the prepared splits (<out>/<split>/caption.txt + images/)")
    s.add_argument("--splits", type=csv_list, default=None, help="comma-separated splits (default: all found)")
    s.add_argument("--no-images", action="store_true", help="write captions only")
    s.add_argument("--height", type=int, default=128, help="rendered image height in pixels, 4-1024 (default 128; "
                   "the smoke/cpu profiles and tiny-base use 64)")
    s.add_argument("--workers", type=at_least(1), default=None, help="processes (default: all cores)")
    s.add_argument("--limit", type=at_least(1), default=None,
                   help="N files per split, taken in turn from each of its sources (for quick looks)")
    s.add_argument("--force", action="store_true",
                   help="write into a split folder holding files not made by prepare (they are kept)")
    return s


def add_eval(sub, debug) -> argparse.ArgumentParser:
    """``unimumer eval``."""
    s = sub.add_parser("eval", parents=[debug], help="metrics of Uni-MuMER-style prediction JSON files")
    s.add_argument("predictions", nargs="+",
                   help="prediction JSON files ({img_id, gt, pred}) or folders of *_pred.json")
    s.add_argument("--format", choices=["table", "csv", "md", "latex", "json"], default="table",
                   help="output format (default: an aligned table)")
    s.add_argument("--out", default=None, help="write here instead of stdout")
    s.add_argument("--normalize", nargs="?", const="crohme", default=None, choices=STYLES,
                   help="normalise gt and pred before scoring: crohme (the literature's captions, the default "
                        "when the flag has no value; texts with unbalanced braces stay as they are) or unimumer "
                        "(the published CROHME 2023 / MathWriting protocol, which also leaves out the items it "
                        "removes)")
    s.add_argument("--by-dataset", action="store_true", help="also one row per 'dataset' value of the records")
    s.add_argument("--write-results", action="store_true",
                   help="write <name>_results.txt (the official layout) beside each prediction file")
    s.add_argument("--results-dir", default=None, help="write the <name>_results.txt files here instead")
    s.add_argument("--force", action="store_true", help="replace existing <name>_results.txt files (refused "
                                                        "otherwise: beside an official file they are the authors')")
    return s


def add_compare(sub, debug) -> argparse.ArgumentParser:
    """``unimumer compare``."""
    s = sub.add_parser("compare", parents=[debug], help="two systems on the same test set: fixed/broken, paired tests")
    s.add_argument("a", help="prediction JSON of system A (the baseline)")
    s.add_argument("b", help="prediction JSON of system B, on the same img_ids")
    s.add_argument("--out", default=None, help="TSV of every expression: img_id, status (fixed, broken, ...), gt, "
                                               "both predictions")
    s.add_argument("--samples", type=at_least(1), default=10_000, help="paired bootstrap resamples (default 10,000)")
    s.add_argument("--seed", type=at_least(0), default=0, help="bootstrap seed")
    return s


def add_normalize(sub, debug) -> argparse.ArgumentParser:
    """``unimumer normalize``."""
    s = sub.add_parser("normalize", parents=[debug], help="normalise a prediction JSON to a published convention")
    s.add_argument("predictions", help="prediction JSON to normalise")
    s.add_argument("--style", choices=STYLES, default="unimumer",
                   help="convention: unimumer (the published CROHME 2023 / "
                   "MathWriting protocol, default) or crohme (the literature's captions)")
    s.add_argument("--out", required=True, help="normalised prediction JSON (removed items listed beside it)")
    return s


def add_glyphs(sub, debug) -> argparse.ArgumentParser:
    """``unimumer glyphs``."""
    s = sub.add_parser("glyphs", parents=[debug], help="a bank of real handwritten glyphs from a CROHME train split")
    s.add_argument("--src", required=True, help="a train split of segmented InkML (e.g. <crohme>/train); a test "
                                                "split is refused, by its name and by the leak guard")
    s.add_argument("--out", required=True, help="folder for glyphs.npz and glyphs.rejects.tsv")
    return s


def add_tasks(sub, debug) -> argparse.ArgumentParser:
    """``unimumer tasks``."""
    from ..tasks.spec import TASKS

    s = sub.add_parser("tasks", parents=[debug], help="build multi-task training data (LLaMA-Factory JSON)")
    src = s.add_mutually_exclusive_group(required=True)
    src.add_argument("--captions", help="a split folder or its caption.txt (images/ or img/, png/jpg/bmp), "
                                        "or an official Uni-MuMER prompt JSON")
    src.add_argument("--from-predictions", help="prediction JSON (for error_find,error_fix)")
    s.add_argument("--tasks", default="vanilla,tree,can", help=f"comma-separated tasks, of: {', '.join(TASKS)} "
                   "(default vanilla,tree,can; error_find/error_fix need --from-predictions)")
    s.add_argument("--out", required=True, help="folder for <task>.json + dataset_info.json (LLaMA-Factory layout)")
    s.add_argument("--root", default=None, help="folder that a prompt JSON's relative image paths start from")
    s.add_argument("--prefix", default="crohme_train", help="dataset_info name prefix")
    s.add_argument("--seed", type=at_least(0), default=0, help="seed of the sampled choices (EDL injection)")
    s.add_argument("--confusions", default=None, choices=("lookalikes",),
                   help="with --captions, error_find/error_fix from errors injected into the captions: 'lookalikes' "
                        "(edl.LOOKALIKES, marked synthetic); a model's own errors come with --from-predictions")
    s.add_argument("--test-root", action="append", default=None,
                   help="folder whose test*/ splits must never enter training (repeatable; default: the CROHME root)")
    s.add_argument("--allow-test-images", action="store_true",
                   help="build rows from test-split images anyway (warns loudly; the test set is then not held out)")
    return s


def add_synth(sub, debug) -> argparse.ArgumentParser:
    """``unimumer synth``."""
    from ..data.glyphs import WRITER_GROUPS

    s = sub.add_parser("synth", parents=[debug], help="synthetic handwritten expressions (InkML + captions.tsv)")
    s.add_argument("--n", type=at_least(0), default=2000, help="number of expressions (default 2,000)")
    s.add_argument("--seed", type=at_least(0), default=0, help="dataset seed; sample i is drawn from (seed, i), so the "
                   "files are the same whatever --workers (seeds >= 1,000,000 are the tiny base's pretraining)")
    s.add_argument("--out", required=True, help="folder: <out>/synthetic/*.inkml + captions.tsv")
    s.add_argument("--workers", type=at_least(1), default=None, help="processes (default: all cores)")
    s.add_argument("--force", action="store_true", help="write into a non-empty --out, clearing what synth made there")
    s.add_argument("--glyphs", default=None, metavar="BANK",
                   help="write with real glyphs of a glyph bank ('shipped': the package's CROHME-train bank, or a "
                        "folder/.npz from 'unimumer glyphs'); default: Hershey glyphs")
    s.add_argument("--writers", default=None, choices=[g for g, _ in WRITER_GROUPS],
                   help="only the bank's writers of this group (pretrain writers trained the glyph base)")
    return s


def add_train(sub, debug) -> argparse.ArgumentParser:
    """``unimumer train``."""
    from ..training.launch import add_train_arguments

    s = sub.add_parser("train", parents=[debug], help="fine-tune a Qwen-VL model on task files (TRL SFT)")
    add_train_arguments(s)
    return s


def add_infer(sub, debug) -> argparse.ArgumentParser:
    """``unimumer infer``."""
    from ..inference.infer import SAMPLING
    from ..models.images import SIZINGS
    from ..tasks.spec import BASE_TASK, TASKS

    s = sub.add_parser("infer", parents=[debug], help="recognise images with a checkpoint -> Uni-MuMER prediction JSON")
    s.add_argument("--model", required=True,
                   help="checkpoint folder, hub id (e.g. phxember/Uni-MuMER-Qwen2.5-VL-3B) or "
                                                 "tiny-base (the shipped CPU model)")
    s.add_argument("--allow-untrained", action="store_true",
                   help="run a random-weight shape (tiny, small, ...) anyway: its output is noise")
    s.add_argument("--data", default=None, help="split folder (caption.txt + images/ or img/), a prompt JSON, or a "
                                                "folder of images without captions (gt \"\")")
    s.add_argument("--image", nargs="+", default=None, metavar="FILE",
                   help="recognise these image files: prints path<TAB>LaTeX (writes --out too when given)")
    s.add_argument("--root", default=None, help="base folder of a prompt JSON's relative image paths")
    s.add_argument("--out", default=None, help="prediction JSON to write (needed with --data); a rerun with the same "
                   "settings resumes it, other settings are refused")
    s.add_argument("--force", action="store_true", help="recompute an --out written earlier with other settings "
                   "(a file this tool did not write is never replaced)")
    s.add_argument("--backend", choices=["hf", "vllm"], default="hf",
                   help="hf (transformers generate, default) or vllm "
                   "(GPU; install the vllm extra)")
    s.add_argument("--batch-size", type=at_least(1), default=8, help="images per generate call (default 8)")
    s.add_argument("--processes", type=at_least(1), default=None, metavar="N",
                   help="data-parallel processes, each on its "
                   "own GPU, merged in record order (default: one per visible GPU; 1 on CPU)")
    s.add_argument("--shard", default=None, help=argparse.SUPPRESS)  # I/N: one process of --processes
    s.add_argument("--task", choices=TASKS, default=BASE_TASK, help="prompt and answer extraction")
    s.add_argument("--max-new-tokens", type=at_least(1), default=None, help="default: per task (official: 2048)")
    s.add_argument("--num-beams", type=at_least(1), default=1, help="beam search width with greedy (default 1)")
    s.add_argument("--sampling", choices=[m for m in SAMPLING if m != "sample"], default="greedy",
                   help="greedy (default, deterministic) or official (the Uni-MuMER vLLM script's sampling)")
    s.add_argument("--sizing", choices=SIZINGS, default=SIZINGS[0],
                   help="paper (default: LLaMA-Factory's fit, at most 262,144 pixels, as the model was trained) or "
                        "official (the official inference script's qwen_vl_utils sizing: 3,136-12,845,056 pixels)")
    return s


def add_pretrain(sub, debug) -> argparse.ArgumentParser:
    """``unimumer pretrain``."""
    s = sub.add_parser("pretrain", parents=[debug], help="pretrain the tiny base model on synthetic handwriting")
    s.add_argument("--out", required=True, help="new or empty folder for the base (a Hugging Face model folder)")
    s.add_argument("--work", required=True, help="folder for the sample stream, checkpoints and curve predictions")
    from ..training.pretrain import RECIPE, RECIPES

    s.add_argument("--recipe", choices=sorted(RECIPES), default=RECIPE.name,
                   help=f"the base to make (default {RECIPE.name}); the options below override its settings")
    s.add_argument("--n", type=at_least(1), help=f"unique synthetic training samples ({RECIPE.name}: {RECIPE.n:,})")
    s.add_argument("--steps", type=at_least(1), help=f"optimizer steps of 8 samples ({RECIPE.name}: {RECIPE.steps:,})")
    s.add_argument("--size", help="model shape (unimumer_lib.models.tiny.SIZES)")
    s.add_argument("--seed", type=at_least(0), help="initialisation and data-order seed")
    s.add_argument("--curve-every", type=at_least(1), help="score the held-out set every N steps")
    s.add_argument("--init", help="continue from this base (a shipped name or folder) as a new segment")
    s.add_argument("--publish", type=at_least(1), nargs="?", const=0, default=None, metavar="STEP",
                   help="write the base from a checkpoint of the run in --work (STEP, default the best held-out "
                        "one) instead of training")
    s.add_argument("--notes", default=None, help="with --publish: a note for the model card and run_config.json")
    s.add_argument("--threads", type=at_least(1), default=None, help="torch threads (default: $OMP_NUM_THREADS or all)")
    s.add_argument("--workers", type=at_least(1), default=None,
                   help="processes making the sample stream (default: cores)")
    s.add_argument("--resume", action="store_true", help="continue from the last checkpoint in --work")
    return s


def add_reproduce(sub, debug) -> argparse.ArgumentParser:
    """``unimumer reproduce``."""
    from .profiles import PROFILES

    s = sub.add_parser("reproduce", parents=[debug], help="run the notebooks with papermill for a profile")
    s.add_argument("--profile", choices=sorted(PROFILES), default="smoke",
                   help="smoke (the main job: the ablation in miniature on synthetic data, ~10 min CPU), ci "
                        "(seconds), cpu (from tiny-base on CROHME, <= 1 h CPU), paper (Qwen2.5-VL-3B on GPUs), "
                        "paper-dry (the paper pipeline on CPU in minutes)")
    s.add_argument("--out", default=None, help="run folder (default runs/<profile>)")
    s.add_argument("--data", default=None,
                   help="'synthetic' or a CROHME root folder (default: synthetic; paper profiles: the CROHME root)")
    s.add_argument("--arms", default=None,
                   help="paper-pipeline profiles: comma-separated arms, e.g. tree+edl (default: the profile's own, "
                        "smoke vanilla,all, cpu all; else vanilla,tree,edl,can,all)")
    s.add_argument("--data-hme100k", default=None, metavar="DIR",
                   help="paper profiles: an HME100K-style root (train/ and test/, each caption.txt + jpg images); "
                        "the 'all' arm is also trained on its train split and tested on its test split (the main "
                        "table's HME100K column)")
    s.add_argument("--train-processes", type=at_least(1), default=None, metavar="N",
                   help="paper-pipeline profiles: train each arm in N processes (accelerate launch; default one per "
                        "visible GPU; the effective batch stays the preset's)")
    return s
