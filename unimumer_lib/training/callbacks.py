"""Trainer callbacks of a run: each task's loss on a fixed probe (``task_loss_callback``), the held-out learning
curve (``curve_callback``), group-writable files (``umask_callback``) and a notebook log without the loss table.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

from ..core.files import respect_umask


TASK_LOSS_ROWS = 8  # rows of each task in the per-task loss probe


def task_loss_callback(trainer, every: int, n: int = TASK_LOSS_ROWS):
    """A TrainerCallback logging ``loss_<task>`` every ``every`` steps: each task's loss (the trainer's own loss:
    assistant tokens, token mean) on a fixed probe, the first ``n`` training rows of that task, in eval mode
    without gradients. One overall loss hides which task the model is learning; this curve shows each. Every
    process runs the probe (a sharded model needs all of them in each forward pass); the points land in the log
    history, so in ``loss_history.json`` and the trackers."""
    import torch
    from transformers import TrainerCallback

    from .sftdata import example_task

    data = trainer.train_dataset
    picks: dict[str, list[int]] = {}
    for i, messages in enumerate(data["messages"]):
        rows = picks.setdefault(example_task({"messages": messages}), [])
        if len(rows) < n:
            rows.append(i)

    class TaskLoss(TrainerCallback):
        def on_step_end(self, args, state, control, model=None, **kwargs):
            if not every or state.global_step % every:
                return
            was_training, point = model.training, {"step": state.global_step}
            model.eval()
            with torch.no_grad():
                for task, rows in picks.items():
                    batch = trainer._prepare_inputs(trainer.data_collator([data[i] for i in rows]))
                    point[f"loss_{task}"] = round(float(model(**batch).loss), 4)
            model.train(was_training)
            state.log_history.append(point)

    return TaskLoss()


def task_losses(history: list[dict]) -> dict[str, list[tuple[int, float]]]:
    """{task: [(step, loss)]} of the per-task probe points in a run's log history."""
    out: dict[str, list[tuple[int, float]]] = {}
    for h in history:
        for key, value in h.items():
            if key.startswith("loss_"):
                out.setdefault(key[len("loss_"):], []).append((h["step"], value))
    return out


CURVE_POINTS = "points.jsonl"  # beside the curve predictions: one line per point, so a checkpoint can be published
EVAL_CURVE_DIR = "eval_curve"  # in a run folder: train --eval-data's predictions and points


def curve_callback(processor, sets: dict, work: Path, every: int, max_new_tokens: int = 96):
    """A TrainerCallback scoring each record set of ``sets`` ({name: records}) greedily with the vanilla prompt
    every ``every`` steps: ``.points`` = [{step, exprate, ...}] of the first set, each point holding the others
    under their names; each point is also appended to ``work/points.jsonl`` and to the Trainer's log
    (``eval_exprate``...: the validation curve of ``train --eval-data``, and of pretraining)."""
    from transformers import TrainerCallback

    from ..inference.infer import predict
    from ..evaluation.metrics import score

    def measure(model, processor, name: str, records, step: int) -> dict:
        preds = predict(model, processor, records, work / f"curve_{name}_{step}.json", batch_size=16,
                        max_new_tokens=max_new_tokens, progress=False)
        m = score([p.gt for p in preds], [p.pred for p in preds])
        return {"exprate": m.exprate, "le1": m.le1, "le2": m.le2, "cer": m.cer,
                "distinct": len({p.pred for p in preds}), "n": len(preds)}

    class Curve(TrainerCallback):
        def __init__(self):
            self.points: list[dict] = []

        def on_step_end(self, args, state, control, model=None, **kwargs):
            if every and state.global_step % every == 0:
                proc = processor or kwargs["processing_class"]  # None given: the Trainer's own processor
                model.eval()
                (first, records), *others = sets.items()
                point = {"step": state.global_step, **measure(model, proc, first, records, state.global_step)}
                point.update({name: measure(model, proc, name, recs, state.global_step) for name, recs in others})
                model.train()
                point["wall_s"] = round(time.perf_counter() - start, 1)
                self.points.append(point)
                state.log_history.append({"step": state.global_step, **{f"eval_{k}": point[k] for k in
                                                                        ("exprate", "le1", "le2", "cer")}})
                work.mkdir(parents=True, exist_ok=True)
                with open(work / CURVE_POINTS, "a", encoding="utf-8") as f:
                    f.write(json.dumps(point) + "\n")
                print(f"curve: {json.dumps(point)}", flush=True)

    start = time.perf_counter()
    return Curve()


def umask_callback():
    """A TrainerCallback fixing the file modes of every checkpoint folder as it is saved (rank 0)."""
    from transformers import TrainerCallback

    class RespectUmask(TrainerCallback):
        def on_save(self, args, state, control, **kwargs):
            folder = Path(args.output_dir) / f"checkpoint-{state.global_step}"
            if state.is_world_process_zero and folder.is_dir():
                respect_umask(folder)

    return RespectUmask()


def quiet_notebook_log(trainer) -> None:
    """In a headless notebook run (``UNIMUMER_TEXT_PROGRESS``), keep the Trainer's notebook progress bar but not
    the loss table it grows under it (one row per logging step): the loss is plotted from ``loss_history.json``."""
    from transformers.utils.notebook import NotebookProgressCallback

    from .. import TEXT_PROGRESS

    if os.environ.get(TEXT_PROGRESS) != "1" or not any(isinstance(c, NotebookProgressCallback)
                                                       for c in trainer.callback_handler.callbacks):
        return

    class BarOnly(NotebookProgressCallback):
        def on_train_begin(self, args, state, control, **kwargs):
            super().on_train_begin(args, state, control, **kwargs)
            self.training_tracker.inner_table = None  # no table under the bar, not even its header

        def on_log(self, args, state, control, logs=None, **kwargs):
            pass

    trainer.remove_callback(NotebookProgressCallback)
    trainer.add_callback(BarOnly())
