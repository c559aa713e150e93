"""A profile's run as notebook steps: which notebook runs with which parameters, in order (``basic_steps`` for the
quick profiles, ``paper_steps`` for the ablation, ``hme100k_steps`` for the HME100K column).
"""

from __future__ import annotations

from dataclasses import asdict, replace
from pathlib import Path
from typing import NamedTuple

from ..evaluation.gates import GATES_FILE
from ..formats.families import dataset_label
from .profiles import (BASELINE_ARM, DATASET_LABELS, HME100K_SPLIT, MAIN_ARM, MATCHED_ARM, PROFILES, TRAIN_LABELS,
                       ZERO_SHOT, Profile, arm_model_name, arm_tasks)


class Step(NamedTuple):
    """One notebook run of a pipeline: ``key`` (in run.json's done list), the notebook, its parameters, the tag of
    its executed copy, and the keys of the steps it reads from."""

    key: str
    notebook: str
    parameters: dict
    tag: str = ""
    needs: tuple[str, ...] = ()


def explore_parameters(p: Profile, data_root: Path, prepared: Path, figures: Path) -> dict:
    """Notebook 01: prepare (a sample of) every split of ``data_root`` into ``prepared``."""
    return dict(data_root=str(data_root), sample_size=p.sample_size, out_dir=str(prepared), figures_dir=str(figures),
                height=p.height, stroke=p.stroke, seed=p.seed)


def synthesis_parameters(p: Profile, captions: Path, out: Path, figures: Path, test_roots: list[Path]) -> dict:
    """Notebook 02: the caption tasks of ``captions`` (basic pipeline: ``p.tasks``, all rows of each) or, for the
    paper pipeline, the caption tasks and the EDL tasks from the profile's mining."""
    params = dict(captions_path=str(captions), out_dir=str(out), figures_dir=str(figures),
                  test_roots=[str(r) for r in test_roots], seed=p.seed)
    if p.paper is None:
        return params | dict(ratios={t: 1.0 for t in p.tasks})
    mining = replace(p.paper.mining, model=p.model, preset=p.preset, batch_size=p.batch_size)  # the profile's recipe
    return params | dict(mining=asdict(mining))


def sft_parameters(p: Profile, train_json: list[Path], out: Path, figures: Path,
                   processes: int | None = None, steps_of: list[Path] | None = None) -> dict:
    """Notebook 03: fine-tune the profile's model on ``train_json`` with its preset (``steps_of``: for as many
    steps as one epoch of those files takes, the compute-matched control)."""
    return dict(train_json=[str(f) for f in train_json], preset=p.preset, model_path=p.model, out_dir=str(out),
                figures_dir=str(figures), max_steps=p.max_steps, seed=p.seed,
                **({"processes": processes} if processes else {}),
                **({"task_loss_every": p.task_loss_every} if p.task_loss_every else {}),
                **({"steps_of": [str(f) for f in steps_of]} if steps_of else {}))


def inference_parameters(p: Profile, model_path: str, tests: dict[str, Path], predictions: Path, out: Path,
                         model_name: str, arm: str | None = None) -> dict:
    """Notebook 04 (inference): ``model_path`` recognises each prepared test split into ``predictions/<split>.json``,
    evaluated into ``out``; with the profile's ``gate_images`` (for ``arm``), its learnability gates on the first
    test split (``out/gates.json``)."""
    gate_images = p.paper.gates(arm) if p.paper and arm else 0
    return dict(model_path=str(model_path), test_dirs={t: str(d) for t, d in tests.items()},
                predictions_dir=str(predictions), pred_paths=[],
                datasets=[DATASET_LABELS.get(t) or dataset_label(t) or t for t in tests],
                model_name=model_name, out_dir=str(out), batch_size=p.batch_size, max_new_tokens=p.max_new_tokens,
                **({"gate_images": gate_images} if gate_images else {}))


def analysis_parameters(pred: Path, images: Path, out: Path, figures: Path, baseline: Path | None = None) -> dict:
    """Notebook 05: the errors of ``pred`` (and, with ``baseline``, what it fixed and broke against it)."""
    return dict(pred_path=str(pred), images_dir=str(images), out_dir=str(out), figures_dir=str(figures),
                **({"baseline_path": str(baseline)} if baseline else {}))


def notebook_parameters(profile: str, run_dir: Path, data_root: Path, test_split: str, figures: Path) -> list:
    """(notebook, parameters) in pipeline order for the basic pipeline (ci); each notebook reads what the previous
    one wrote."""
    p = PROFILES[profile]
    prepared, tasks_dir, sft, tables = (run_dir / "prepared", run_dir / "tasks", run_dir / "sft",
                                        run_dir / "tables")
    evaluate = dict(model_path=str(sft / "final"), test_dir=str(prepared / test_split), pred_paths=[],
                    datasets=[DATASET_LABELS.get(test_split, test_split)],
                    model_name=p.label.format(name=p.name, train=TRAIN_LABELS[test_split == "test"]),
                    out_dir=str(tables), batch_size=p.batch_size, max_new_tokens=p.max_new_tokens)
    return [
        ("01_data_exploration.ipynb", explore_parameters(p, data_root, prepared, figures)),
        ("02_task_synthesis.ipynb", synthesis_parameters(p, prepared / "train" / "caption.txt", tasks_dir, figures,
                                                         [data_root, prepared])),
        ("03_sft_trl.ipynb", sft_parameters(p, [tasks_dir / "tasks" / f"{t}.json" for t in p.tasks], sft, figures)),
        ("04_inference_evaluation.ipynb", evaluate),
        ("05_error_analysis.ipynb", analysis_parameters(tables / "predictions.json",
                                                        prepared / test_split / "images", run_dir / "analysis",
                                                        figures)),
    ]


def basic_steps(profile: str, run_dir: Path, data_root: Path, tests: list[str]) -> list[Step]:
    """The basic pipeline (ci) as steps, each needing the ones before it."""
    names = notebook_parameters(profile, run_dir, data_root, tests[0], run_dir / "figures")
    keys = [Path(name).stem for name, _ in names]
    return [Step(key, name, params, "", tuple(keys[:i])) for i, (key, (name, params)) in enumerate(zip(keys, names))]


def paper_steps(profile: str, run_dir: Path, data_root: Path, tests: list[str], arms: list[str],
                hme100k: Path | None = None, processes: int | None = None) -> list[Step]:
    """The paper pipeline as steps; with an HME100K root, the HME100K model's steps (``hme100k_steps``) come
    before the tables."""
    p = PROFILES[profile]
    prepared, tasks_dir, preds, figures = (run_dir / "prepared", run_dir / "tasks", run_dir / "predictions",
                                           run_dir / "figures")
    labels = {t: DATASET_LABELS.get(t, t) for t in tests}
    splits = {t: prepared / t for t in tests}
    main_arm = MAIN_ARM if MAIN_ARM in arms else arms[-1]
    explore = explore_parameters(p, data_root, prepared, figures)
    if hme100k is not None:
        explore.update(hme100k_root=str(hme100k), hme100k_out=str(run_dir / "hme100k_prepared"))
    steps = [Step("01", "01_data_exploration.ipynb", explore),
             Step("02", "02_task_synthesis.ipynb", synthesis_parameters(
                 p, prepared / "train" / "caption.txt", run_dir, figures, [data_root, prepared]), "", ("01",))]
    for arm in arms:
        matched = [tasks_dir / f"{t}.json" for t in arm_tasks(MAIN_ARM)] if arm == MATCHED_ARM else None
        steps.append(Step(f"03[{arm}]", "03_sft_trl.ipynb", sft_parameters(
            p, [tasks_dir / f"{t}.json" for t in arm_tasks(arm)], run_dir / "sft" / arm, figures / arm, processes,
            matched), arm, ("02",)))
    for arm in arms:
        steps.append(Step(f"04[{arm}]", "04_inference_evaluation.ipynb", inference_parameters(
            p, run_dir / "sft" / arm / "final", splits, preds / arm, run_dir / "results" / arm,
            arm_model_name(profile, arm), arm), arm, ("01", f"03[{arm}]")))
    table_arms = list(arms)
    if p.paper.zero_shot:  # the base itself, no SFT: the paper's zero-shot rows
        table_arms.insert(0, ZERO_SHOT)
        steps.append(Step(f"04[{ZERO_SHOT}]", "04_inference_evaluation.ipynb", inference_parameters(
            p, p.model, splits, preds / ZERO_SHOT, run_dir / "results" / ZERO_SHOT,
            arm_model_name(profile, ZERO_SHOT), ZERO_SHOT), ZERO_SHOT, ("01",)))
    main_tests = {}
    if hme100k is not None:
        steps += hme100k_steps(profile, run_dir, data_root, hme100k)
        main_tests = {HME100K_SPLIT: dataset_label(HME100K_SPLIT)}
    gate_paths = {arm: str(run_dir / "results" / arm / GATES_FILE) for arm in table_arms if p.paper.gates(arm)}
    steps.append(Step("tables", "04_inference_evaluation.ipynb", dict(
        pred_paths=[str(preds / main_arm / f"{t}.json") for t in tests], datasets=list(labels.values()),
        model_name=arm_model_name(profile, main_arm), out_dir=str(run_dir / "tables"), paper_arms=table_arms,
        predictions_root=str(preds), tests=labels, main_arm=main_arm, figures_dir=str(figures),
        arm_names={arm: arm_model_name(profile, arm) for arm in table_arms},
        main_tests=main_tests, **({"gate_paths": gate_paths} if p.paper.gate_images else {})), "tables",
        tuple(f"04[{arm}]" for arm in table_arms) + tuple(f"04[{t}]" for t in main_tests)))
    baseline = BASELINE_ARM if BASELINE_ARM in arms and BASELINE_ARM != main_arm else None
    for t in tests:  # the main arm's errors, and (with the vanilla arm) what it fixed and broke against vanilla
        steps.append(Step(f"05[{t}]", "05_error_analysis.ipynb", analysis_parameters(
            preds / main_arm / f"{t}.json", prepared / t / "images", run_dir / "analysis" / t,
            figures / main_arm / t, preds / baseline / f"{t}.json" if baseline else None),
            t, (f"04[{main_arm}]",) + ((f"04[{baseline}]",) if baseline else ())))
    return steps


def hme100k_steps(profile: str, run_dir: Path, data_root: Path, hme100k: Path) -> list[Step]:
    """The HME100K model: tasks (with mined EDL) from HME100K train, the main arm trained on them with the same
    recipe, recognition of HME100K test into ``predictions/<main arm>/hme100k.json``. Every HME100K and CROHME
    test split is a leak-guard root."""
    p = PROFILES[profile]
    prepared, work, figures = run_dir / "hme100k_prepared", run_dir / HME100K_SPLIT, run_dir / "figures" / HME100K_SPLIT
    test_roots = [hme100k, prepared, data_root, run_dir / "prepared"]
    key = f"[{HME100K_SPLIT}]"
    return [
        Step("02" + key, "02_task_synthesis.ipynb", synthesis_parameters(
            p, prepared / "train" / "caption.txt", work, figures, test_roots), HME100K_SPLIT, ("01",)),
        Step("03" + key, "03_sft_trl.ipynb", sft_parameters(
            p, [work / "tasks" / f"{t}.json" for t in arm_tasks(MAIN_ARM)], work / "sft" / MAIN_ARM,
            figures / MAIN_ARM), f"{HME100K_SPLIT}-{MAIN_ARM}", ("02" + key,)),
        Step("04" + key, "04_inference_evaluation.ipynb", inference_parameters(
            p, work / "sft" / MAIN_ARM / "final", {HME100K_SPLIT: prepared / "test"},
            run_dir / "predictions" / MAIN_ARM, run_dir / "results" / HME100K_SPLIT,
            arm_model_name(profile, MAIN_ARM)), HME100K_SPLIT, ("01", "03" + key)),
    ]
