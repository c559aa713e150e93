"""The ``unimumer`` console script: thin argparse wrappers over the library, one subcommand each."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from .errors import at_least, describe, naming_output
from .normalize import STYLES
from .families import INKML_FAMILIES


def _csv(text: str) -> list[str]:
    return [t.strip() for t in text.split(",") if t.strip()]


def cmd_prepare(args: argparse.Namespace) -> int:
    from .prepare import prepare_crohme
    from .tally import Tally

    summaries = prepare_crohme(Path(args.src), Path(args.out), splits=args.splits, images=not args.no_images,
                               height=args.height, workers=args.workers, limit=args.limit, force=args.force)
    for split, s in summaries.items():
        print(Tally.of(s).line(split))
    return 0


def cmd_eval(args: argparse.Namespace) -> int:
    from .predictions import prediction_files
    from .report import REMOVED, UNBALANCED, evaluate_files, format_results, write_results_files

    paths = prediction_files(args.predictions)
    _refuse_overwriting_inputs(args.out, paths)
    rows = evaluate_files(paths, normalize=args.normalize, by_dataset=args.by_dataset)
    text = format_results(rows, args.format)
    if args.out:
        from .files import atomic_write_text

        atomic_write_text(args.out, text)
    else:
        print(text)
    for row in rows if args.normalize else []:
        if row.get(UNBALANCED):
            print(f"{row['file']}: {row[UNBALANCED]} gt/pred texts with unbalanced braces scored as they are "
                  "(--normalize does not invent tokens)", file=sys.stderr)
        if row.get(REMOVED):
            print(f"{row['file']}: {row[REMOVED]} items removed by the published normalisation protocol, not scored "
                  "(unimumer normalize lists them with the rule)", file=sys.stderr)
    if args.write_results or args.results_dir:
        for path in write_results_files(rows, Path(args.results_dir) if args.results_dir else None, args.force):
            print(f"wrote {path}", file=sys.stderr)
    return 0


def cmd_compare(args: argparse.Namespace) -> int:
    from collections import Counter

    from .analysis import token_label
    from .compare import STATUSES, compare_predictions, confusion_changes
    from .files import atomic_write_text
    from .predictions import read_predictions

    a, b = read_predictions(args.a), read_predictions(args.b)
    results, rows = compare_predictions(a, b, samples=args.samples, seed=args.seed)
    print(f"A = {args.a}\nB = {args.b}\n{results[0].n} expressions in both")
    print(f"{'metric':>8} {'A %':>7} {'B %':>7} {'B-A':>7} {'95% interval':>17} {'fixed':>6} {'broken':>6} "
          f"{'McNemar p':>10}")
    for r in results:
        print(f"{r.metric:>8} {r.rate_a:7.2f} {r.rate_b:7.2f} {r.diff:+7.2f} [{r.low:+6.2f}, {r.high:+6.2f}] "
              f"{r.fixed:6d} {r.broken:6d} {r.p_value:10.3g}")
    counts = Counter(r["status"] for r in rows)
    print("ExpRate per expression: " + ", ".join(f"{s} {counts[s]}" for s in STATUSES))
    changed = confusion_changes(a, b)
    if changed:
        print("confusions that changed most (gt -> pred: A, B):")
        for r in changed:
            print(f"  {token_label(r['gt_token'])} -> {token_label(r['pred_token'])}: {r['A']}, {r['B']} "
                  f"({r['B - A']:+d})")
    if args.out:
        _refuse_overwriting_inputs(args.out, [Path(args.a), Path(args.b)])
        lines = ["img_id\tstatus\tgt\tpred_a\tpred_b\n"] + [
            "\t".join(" ".join(str(r[k]).split()) for k in ("img_id", "status", "gt", "pred_a", "pred_b")) + "\n"
            for r in rows]
        atomic_write_text(args.out, "".join(lines))
        print(f"per-expression changes: {args.out}")
    return 0


def cmd_normalize(args: argparse.Namespace) -> int:
    from .normalize import normalize_file

    _refuse_overwriting_inputs(args.out, [Path(args.predictions)])
    summary = normalize_file(Path(args.predictions), Path(args.out), style=args.style)
    print(f"read {summary['read']} = kept {summary['kept']} + removed {summary['removed']}"
          + "".join(f"\n  {rule}: {n}" for rule, n in summary["rules"].items()))
    if summary["removed"]:
        print(f"removed items and reasons: {summary['removed_file']}")
    return 0


def _refuse_overwriting_inputs(out, inputs: list[Path]) -> None:
    if out and Path(out).exists() and any(p.exists() and Path(out).samefile(p) for p in inputs):
        raise ValueError(f"{out}: --out is one of the input files; it would overwrite them")


def cmd_tasks(args: argparse.Namespace) -> int:
    from .tally import Tally
    from .tasks import build_task_files

    test_roots = [Path(r) for r in args.test_root] if args.test_root else None
    summary = build_task_files(out=Path(args.out), tasks=_csv(args.tasks),
                               captions=Path(args.captions) if args.captions else None,
                               predictions=Path(args.from_predictions) if args.from_predictions else None,
                               prefix=args.prefix, test_roots=test_roots, allow_test_images=args.allow_test_images,
                               root=args.root, **(dict(seed=args.seed, confusions=_confusions(args.confusions))
                                                  if args.captions else {}))
    for task, s in summary.items():
        print(Tally.of(s).line(task))
    if not any(s["written"] for s in summary.values()):
        print(f"unimumer tasks: error: no row written (rejects in {Path(args.out)})", file=sys.stderr)
        return 1
    return 0


def _confusions(name: str | None):
    """The confusion table ``tasks --confusions`` names (None: none given; argparse allows only ``lookalikes``)."""
    from .edl import LOOKALIKES

    return LOOKALIKES if name else None


def cmd_synth(args: argparse.Namespace) -> int:
    from .synth import synthesize_dataset
    from .tally import Tally

    summary = synthesize_dataset(n=args.n, seed=args.seed, out=Path(args.out), workers=args.workers,
                                 force=args.force, glyphs=args.glyphs, writers=args.writers)
    print(Tally.of(summary).line(f"synthetic inks -> {args.out}"))
    return 0


def cmd_glyphs(args: argparse.Namespace) -> int:
    from .glyphs import build_bank
    from .tally import Tally

    summary = build_bank(Path(args.src), Path(args.out))
    print(Tally.of(summary).line(f"glyph bank {args.src} -> {summary['bank']}: files", "used")
          + f"; {summary['glyphs']:,} glyphs of {summary['labels']} symbols by {summary['writers']:,} writers")
    return 0


def cmd_infer(args: argparse.Namespace) -> int:
    from .files import tsv_line
    from .infer import REJECTS_SUFFIX, open_checked, recognize, run, side_file, tally
    from .workers import gpu_processes, set_torch_threads

    set_torch_threads()  # OMP_NUM_THREADS when set (the shards get their share), else this process's cores
    knobs = dict(task=args.task, sampling=args.sampling, max_new_tokens=args.max_new_tokens, num_beams=args.num_beams,
                 sizing=args.sizing)
    if args.image is None and args.data is None:
        raise ValueError("nothing to recognise: give --data (a data set or a folder of images) or --image FILE ...")
    if args.image is not None and args.data is not None:
        raise ValueError("give --data (a data set or a folder of images) or --image FILE [FILE ...], not both")
    from .model import check_model

    check_model(args.model, inference=True, allow_untrained=args.allow_untrained)  # before any data or weights
    if args.image is not None and args.out is None:  # just show what the model reads
        from .records import image_records

        opened = [(r, *open_checked(r)) for r in image_records(args.image)]
        for r, _, why in opened:
            if why:
                print(f"unimumer infer: rejected: {why}", file=sys.stderr)
        good = [(r, image) for r, image, why in opened if not why]
        latex = recognize([image for _, image in good], args.model, batch_size=args.batch_size,
                          allow_untrained=args.allow_untrained, **knobs) if good else []
        for (r, _), text in zip(good, latex):
            print(tsv_line(r.image_path, text), end="")
        return 0 if len(good) == len(opened) else 1
    if args.out is None:
        raise ValueError("--data needs --out (the prediction JSON to write)")
    data = args.image if args.image is not None else args.data
    processes = gpu_processes(args.processes)
    if processes > 1 and args.shard is None:  # one process per GPU, merged in record order
        from .infer import run_sharded

        passed = ["--backend", args.backend, "--batch-size", str(args.batch_size), "--task", args.task,
                  "--sampling", args.sampling, "--num-beams", str(args.num_beams), "--sizing", args.sizing,
                  *(["--allow-untrained"] if args.allow_untrained else []),
                  *(["--max-new-tokens", str(args.max_new_tokens)] if args.max_new_tokens is not None else [])]
        rows = run_sharded(args.model, data, args.out, processes, passed, root=args.root, force=args.force,
                           task=args.task)
    else:
        rows = run(args.model, data, args.out, backend=args.backend, batch_size=args.batch_size, root=args.root,
                   force=args.force, shard=_shard(args.shard), allow_untrained=args.allow_untrained, **knobs)
    counts = tally(rows)
    print(counts.line(f"infer: {counts.read} records -> {args.out}", "predicted")
          + (f" (rejects: {side_file(Path(args.out), REJECTS_SUFFIX)})" if counts.rejected else ""))
    return 0


def _shard(text: str | None) -> tuple[int, int] | None:
    if text is None:
        return None
    index, _, count = text.partition("/")
    if not (index.isdigit() and count.isdigit()):
        raise ValueError(f"--shard {text!r}: expected I/N")
    return int(index), int(count)


def cmd_train(args: argparse.Namespace) -> int:
    from .train import main as train_main
    from .workers import set_torch_threads

    set_torch_threads()  # OMP_NUM_THREADS when set, else this process's cores
    return train_main(args)


def cmd_pretrain(args: argparse.Namespace) -> int:
    from dataclasses import replace

    from .pretrain import RECIPES, pretrain, publish_checkpoint
    from .workers import set_torch_threads

    set_torch_threads(args.threads)
    chosen = {k: getattr(args, k) for k in ("n", "steps", "size", "seed", "curve_every", "init")
              if getattr(args, k) is not None}
    recipe = replace(RECIPES[args.recipe], **chosen)
    if args.publish is not None:
        record = publish_checkpoint(Path(args.work), Path(args.out), recipe, args.publish or None, args.notes)
    else:
        record = pretrain(Path(args.out), Path(args.work), recipe, resume=args.resume, workers=args.workers)
    last = record["learning_curve"][-1] if record["learning_curve"] else None
    print(f"pretrain: {record['steps']} steps on {record['stream']['written']} samples; base in {args.out}"
          + (f"; held-out ExpRate {last['exprate']:.1f}% (n={last['n']})" if last else ""))
    return 0


def cmd_reproduce(args: argparse.Namespace) -> int:
    from .reproduce import reproduce

    if _CONSOLE:  # papermill's kernel takes seconds to wind down after Ctrl-C: stop it and leave at once
        from .workers import stop_at_once

        stop_at_once("unimumer reproduce")

    return reproduce(profile=args.profile, out=Path(args.out) if args.out else None, data=args.data, arms=args.arms,
                     data_hme100k=args.data_hme100k, train_processes=args.train_processes)


# their options need none of the training modules
LIGHT_COMMANDS = ("prepare", "eval", "compare", "normalize", "glyphs")


def package_version() -> str:
    """The installed package's version (pyproject.toml), or the source tree's when it is not installed."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("unimumer")
    except PackageNotFoundError:
        return "unknown (not installed: pip install -e .)"


def build_parser(light_only: bool = False) -> argparse.ArgumentParser:
    """The ``unimumer`` parser; ``light_only``: just the LIGHT_COMMANDS (``main`` builds that when one of them is
    asked for, so that ``unimumer eval`` does not import the task, training and inference modules)."""
    debug = argparse.ArgumentParser(add_help=False)
    debug.add_argument("--debug", action="store_true", default=argparse.SUPPRESS,
                       help="show the full traceback of an error")
    p = argparse.ArgumentParser(prog="unimumer", description=__doc__, parents=[debug])
    p.add_argument("--version", action="version", version=f"unimumer {package_version()}")
    sub = p.add_subparsers(dest="command", required=True)

    s = sub.add_parser("prepare", parents=[debug], help="InkML folders -> images + caption.txt per split")
    s.add_argument("kind", choices=INKML_FAMILIES,
                   help="input layout: InkML split folders, CROHME (truth + MathML) or MathWriting (normalizedLabel)")
    s.add_argument("--src", required=True,
                   help="folder holding split folders (CROHME: train/, test2014/, ...; MathWriting: train/, valid/, "
                        "test/, synthetic/, symbols/)")
    s.add_argument("--out", required=True, help="folder for the prepared splits (<out>/<split>/caption.txt + images/)")
    s.add_argument("--splits", type=_csv, default=None, help="comma-separated splits (default: all found)")
    s.add_argument("--no-images", action="store_true", help="write captions only")
    s.add_argument("--height", type=int, default=128, help="rendered image height in pixels, 4-1024 (default 128; "
                   "the smoke/cpu profiles and tiny-base use 64)")
    s.add_argument("--workers", type=at_least(1), default=None, help="processes (default: all cores)")
    s.add_argument("--limit", type=at_least(1), default=None,
                   help="N files per split, taken in turn from each of its sources (for quick looks)")
    s.add_argument("--force", action="store_true",
                   help="write into a split folder holding files not made by prepare (they are kept)")
    s.set_defaults(func=cmd_prepare)

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
    s.set_defaults(func=cmd_eval)

    s = sub.add_parser("compare", parents=[debug], help="two systems on the same test set: fixed/broken, paired tests")
    s.add_argument("a", help="prediction JSON of system A (the baseline)")
    s.add_argument("b", help="prediction JSON of system B, on the same img_ids")
    s.add_argument("--out", default=None, help="TSV of every expression: img_id, status (fixed, broken, ...), gt, "
                                               "both predictions")
    s.add_argument("--samples", type=at_least(1), default=10_000, help="paired bootstrap resamples (default 10,000)")
    s.add_argument("--seed", type=at_least(0), default=0, help="bootstrap seed")
    s.set_defaults(func=cmd_compare)

    s = sub.add_parser("normalize", parents=[debug], help="normalise a prediction JSON to a published convention")
    s.add_argument("predictions", help="prediction JSON to normalise")
    s.add_argument("--style", choices=STYLES, default="unimumer",
                   help="convention: unimumer (the published CROHME 2023 / "
                   "MathWriting protocol, default) or crohme (the literature's captions)")
    s.add_argument("--out", required=True, help="normalised prediction JSON (removed items listed beside it)")
    s.set_defaults(func=cmd_normalize)
    s = sub.add_parser("glyphs", parents=[debug], help="a bank of real handwritten glyphs from a CROHME train split")
    s.add_argument("--src", required=True, help="a train split of segmented InkML (e.g. <crohme>/train); a test "
                                                "split is refused, by its name and by the leak guard")
    s.add_argument("--out", required=True, help="folder for glyphs.npz and glyphs.rejects.tsv")
    s.set_defaults(func=cmd_glyphs)
    if light_only:
        return p
    from .taskspec import TASKS

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
    s.set_defaults(func=cmd_tasks)

    from .glyphs import WRITER_GROUPS

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
    s.set_defaults(func=cmd_synth)

    from .infer import SAMPLING
    from .model import SIZINGS
    from .train import add_train_arguments

    s = sub.add_parser("train", parents=[debug], help="fine-tune a Qwen-VL model on task files (TRL SFT)")
    add_train_arguments(s)
    s.set_defaults(func=cmd_train)

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
    s.add_argument("--task", choices=TASKS, default="vanilla", help="prompt and answer extraction")
    s.add_argument("--max-new-tokens", type=at_least(1), default=None, help="default: per task (official: 2048)")
    s.add_argument("--num-beams", type=at_least(1), default=1, help="beam search width with greedy (default 1)")
    s.add_argument("--sampling", choices=[m for m in SAMPLING if m != "sample"], default="greedy",
                   help="greedy (default, deterministic) or official (the Uni-MuMER vLLM script's sampling)")
    s.add_argument("--sizing", choices=SIZINGS, default=SIZINGS[0],
                   help="paper (default: LLaMA-Factory's fit, at most 262,144 pixels, as the model was trained) or "
                        "official (the official inference script's qwen_vl_utils sizing: 3,136-12,845,056 pixels)")
    s.set_defaults(func=cmd_infer)

    s = sub.add_parser("pretrain", parents=[debug], help="pretrain the tiny base model on synthetic handwriting")
    s.add_argument("--out", required=True, help="new or empty folder for the base (a Hugging Face model folder)")
    s.add_argument("--work", required=True, help="folder for the sample stream, checkpoints and curve predictions")
    from .pretrain import RECIPE, RECIPES

    s.add_argument("--recipe", choices=sorted(RECIPES), default=RECIPE.name,
                   help=f"the base to make (default {RECIPE.name}); the options below override its settings")
    s.add_argument("--n", type=at_least(1), help=f"unique synthetic training samples ({RECIPE.name}: {RECIPE.n:,})")
    s.add_argument("--steps", type=at_least(1), help=f"optimizer steps of 8 samples ({RECIPE.name}: {RECIPE.steps:,})")
    s.add_argument("--size", help="model shape (unimumer_lib.model.SIZES)")
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
    s.set_defaults(func=cmd_pretrain)

    from .reproduce import PROFILES

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
    s.set_defaults(func=cmd_reproduce)
    return p


def _exit_now(code: int) -> int:
    """Leave at once after Ctrl-C (under a second): every ``with`` block has already closed its files, locks and
    worker pools on the way here; what is left is interpreter teardown (torch, tokenizers, thread joins), which
    takes seconds. Only for the console script: from Python (``main([...])``) the code is returned."""
    import os

    if _CONSOLE:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
    return code


_CONSOLE = False


def console() -> int:
    """The ``unimumer`` entry point."""
    global _CONSOLE
    _CONSOLE = True
    return main()


def main(argv: list[str] | None = None) -> int:
    words = sys.argv[1:] if argv is None else argv
    parser = build_parser(light_only=bool(words) and words[0] in LIGHT_COMMANDS)
    args, extra = parser.parse_known_args(argv)
    if extra and args.command != "train":  # train passes the others to TRL's parser (train.TRL_OPTIONS_HELP)
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    args.trl_options = extra
    if getattr(args, "out", None) == "":
        parser.error("argument --out: an empty path names no file or folder")
    try:
        return args.func(args)
    except KeyboardInterrupt:
        if getattr(args, "debug", False):
            raise
        print(f"unimumer {args.command}: interrupted", file=sys.stderr)
        return _exit_now(130)
    except Exception as err:
        if getattr(args, "debug", False):
            raise
        print(f"unimumer {args.command}: error: {naming_output(describe(err), getattr(args, 'out', None))}",
              file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(console())
