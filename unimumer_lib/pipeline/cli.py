"""The ``unimumer`` console script: thin argparse wrappers over the library, one subcommand each."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ..core.errors import describe, naming_output
from . import options


def cmd_prepare(args: argparse.Namespace) -> int:
    from ..data.prepare import prepare_crohme
    from ..core.tally import Tally

    summaries = prepare_crohme(Path(args.src), Path(args.out), splits=args.splits, images=not args.no_images,
                               height=args.height, workers=args.workers, limit=args.limit, force=args.force,
                               kind=args.kind)
    for split, s in summaries.items():
        print(Tally.of(s).line(split))
    return 0


def cmd_eval(args: argparse.Namespace) -> int:
    from ..formats.predictions import prediction_files
    from ..evaluation.report import REMOVED, UNBALANCED, evaluate_files, format_results, write_results_files

    paths = prediction_files(args.predictions)
    _refuse_overwriting_inputs(args.out, paths)
    rows = evaluate_files(paths, normalize=args.normalize, by_dataset=args.by_dataset)
    text = format_results(rows, args.format)
    if args.out:
        from ..core.files import atomic_write_text

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

    from ..evaluation.analysis import token_label
    from ..evaluation.compare import STATUSES, compare_predictions, confusion_changes
    from ..core.files import atomic_write_text
    from ..formats.predictions import read_predictions

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
    from ..latex.published import normalize_file

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
    from ..core.tally import Tally
    from ..tasks.build import build_task_files

    test_roots = [Path(r) for r in args.test_root] if args.test_root else None
    summary = build_task_files(out=Path(args.out), tasks=options.csv_list(args.tasks),
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
    from ..tasks.edl import LOOKALIKES

    return LOOKALIKES if name else None


def cmd_synth(args: argparse.Namespace) -> int:
    from ..data.synth import synthesize_dataset
    from ..core.tally import Tally

    summary = synthesize_dataset(n=args.n, seed=args.seed, out=Path(args.out), workers=args.workers,
                                 force=args.force, glyphs=args.glyphs, writers=args.writers)
    print(Tally.of(summary).line(f"synthetic inks -> {args.out}"))
    return 0


def cmd_glyphs(args: argparse.Namespace) -> int:
    from ..data.glyphs import build_bank
    from ..core.tally import Tally

    summary = build_bank(Path(args.src), Path(args.out))
    print(Tally.of(summary).line(f"glyph bank {args.src} -> {summary['bank']}: files", "used")
          + f"; {summary['glyphs']:,} glyphs of {summary['labels']} symbols by {summary['writers']:,} writers")
    return 0


def cmd_infer(args: argparse.Namespace) -> int:
    from ..core.files import tsv_line
    from ..inference.infer import open_checked, recognize, run, tally
    from ..inference.resume import REJECTS_SUFFIX, side_file
    from ..core.workers import gpu_processes, set_torch_threads

    set_torch_threads()  # OMP_NUM_THREADS when set (the shards get their share), else this process's cores
    knobs = dict(task=args.task, sampling=args.sampling, max_new_tokens=args.max_new_tokens, num_beams=args.num_beams,
                 sizing=args.sizing)
    if args.image is None and args.data is None:
        raise ValueError("nothing to recognise: give --data (a data set or a folder of images) or --image FILE ...")
    if args.image is not None and args.data is not None:
        raise ValueError("give --data (a data set or a folder of images) or --image FILE [FILE ...], not both")
    from ..models.model import check_model

    check_model(args.model, inference=True, allow_untrained=args.allow_untrained)  # before any data or weights
    if args.image is not None and args.out is None:  # just show what the model reads
        from ..formats.records import image_records

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
        from ..inference.shards import run_sharded

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
    from ..training.launch import train_main
    from ..core.workers import set_torch_threads

    set_torch_threads()  # OMP_NUM_THREADS when set, else this process's cores
    return train_main(args)


def cmd_pretrain(args: argparse.Namespace) -> int:
    from dataclasses import replace

    from ..training.pretrain import RECIPES, pretrain, publish_checkpoint
    from ..core.workers import set_torch_threads

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
        from ..core.workers import stop_at_once

        stop_at_once("unimumer reproduce")

    return reproduce(profile=args.profile, out=Path(args.out) if args.out else None, data=args.data, arms=args.arms,
                     data_hme100k=args.data_hme100k, train_processes=args.train_processes)


# their options need none of the training modules
LIGHT_COMMANDS = ("prepare", "eval", "compare", "normalize", "glyphs")
# Each subcommand: what runs it (its options: ``options.add_<name>``), in the order ``unimumer --help`` lists them.
COMMANDS = {"prepare": cmd_prepare, "eval": cmd_eval, "compare": cmd_compare, "normalize": cmd_normalize,
            "glyphs": cmd_glyphs, "tasks": cmd_tasks, "synth": cmd_synth, "train": cmd_train, "infer": cmd_infer,
            "pretrain": cmd_pretrain, "reproduce": cmd_reproduce}


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
    parser, sub, debug = options.root_parser(__doc__, package_version())
    for name, func in COMMANDS.items():
        if name in LIGHT_COMMANDS or not light_only:
            getattr(options, f"add_{name}")(sub, debug).set_defaults(func=func)
    return parser


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
    if extra and args.command != "train":  # train passes the others to TRL's parser (launch.TRL_OPTIONS_HELP)
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
