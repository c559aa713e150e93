"""Data-parallel inference: one process per GPU, each recognising a shard of the records, merged in record order
into the file one process would write (``run_sharded``); several test splits with one model (``predict_splits``).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from ..formats.predictions import RUN_SUFFIX, Prediction, read_rows
from ..formats.records import Record
from ..tasks.spec import BASE_TASK
from .infer import _write_rejects, load_for_inference, predict, read_inputs
from .resume import RUN_KEYS, _check_side_files, _write_final, claim_output, data_key, held_settings, side_file


def predict_splits(model_path: str | Path, jobs: dict, batch_size: int = 8, max_new_tokens: int | None = None,
                   processes: int | None = None) -> dict[str, Path]:
    """Recognise several test splits (``jobs``: {name: (split folder, prediction file)}) with one model: in this
    process (the model loaded once, on its GPU when there is one), or with several GPUs one shard process per GPU
    (``run_sharded``, merged in record order). Returns {name: prediction file}."""
    from ..models.model import resolve_model_path
    from ..core.workers import gpu_processes

    processes = gpu_processes(processes)
    knobs = {"max_new_tokens": max_new_tokens} if max_new_tokens is not None else {}
    if processes > 1:
        cli_args = ["--batch-size", str(batch_size)] + (["--max-new-tokens", str(max_new_tokens)]
                                                       if max_new_tokens is not None else [])
        for name, (folder, pred_file) in jobs.items():
            rows = run_sharded(resolve_model_path(model_path), Path(folder), pred_file, processes, cli_args)
            print(f"{name}: {len(rows)} predictions -> {pred_file} ({processes} processes)")
        return {name: Path(pred) for name, (_, pred) in jobs.items()}
    net, processor = load_for_inference(resolve_model_path(model_path))
    for name, (folder, pred_file) in jobs.items():
        rows = predict(net, processor, Path(folder), pred_file, batch_size=batch_size, **knobs)
        print(f"{name}: {len(rows)} predictions -> {pred_file}")
    return {name: Path(pred) for name, (_, pred) in jobs.items()}


def shard_file(out: Path, index: int, count: int) -> Path:
    return out.with_name(f"{out.stem}.shard-{index}-of-{count}{out.suffix}")


def run_sharded(model_path: str | Path, data, out: str | Path, processes: int, cli_args: list[str],
                root=None, force: bool = False, task: str = BASE_TASK) -> list[Prediction]:
    """Data-parallel inference: ``processes`` ``unimumer infer --shard i/n`` processes, one per GPU this process
    may use (``workers.shard_device``: the i-th of its ``CUDA_VISIBLE_DEVICES``; on a CPU machine they share the
    cores), each writing (and resuming) its own shard
    file; the shards are merged in record order into ``out``. ``cli_args``: the decoding/batch options passed on."""
    from ..core.files import atomic_write_text
    from ..core.outdir import OutputLock

    out = Path(out)
    with OutputLock(out.parent, name=f".{out.name}.unimumer.lock"):
        _check_side_files(out)  # a file this tool did not write is refused before any shard starts
        held_settings(out)
        rows, records = _run_shards(model_path, data, out, processes, cli_args, root, force)
        shards = [_settings_of(shard_file(out, i, processes)) for i in range(processes)]
        merged = {**{k: shards[0].get(k) for k in RUN_KEYS}, "task": task, "data": data_key(records),
                  "shards": shards}
        claim_output(out, merged, force)
        _write_final(out, rows)
        _write_rejects(out, rows)
        atomic_write_text(side_file(out, RUN_SUFFIX), json.dumps({**merged, "complete": True}, indent=1) + "\n")
    return rows  # the shard files stay: they are what a rerun resumes from


def _run_shards(model_path, data, out: Path, processes: int, cli_args: list[str], root, force: bool
                ) -> tuple[list[Prediction], list[Record]]:
    """Run the shard processes; their rows merged in record order, and the records."""
    import subprocess
    import sys

    import torch

    from ..core.workers import shard_device, threads

    records = read_inputs(data, root)
    gpus = torch.cuda.device_count()
    procs = []
    for i in range(processes):
        cmd = [sys.executable, "-m", "unimumer_lib.pipeline.cli", "infer", "--model", str(model_path), "--out",
               str(shard_file(out, i, processes)), "--shard", f"{i}/{processes}", *cli_args,
               *(["--data", *map(str, data)] if isinstance(data, list) else ["--data", str(data)]),
               *(["--root", str(root)] if root is not None else []), *(["--force"] if force else [])]
        env = {**os.environ, **({"CUDA_VISIBLE_DEVICES": shard_device(i, gpus)} if gpus else {}),
               "OMP_NUM_THREADS": str(threads(workers=processes))}  # never more threads x processes than cores
        procs.append(subprocess.Popen(cmd, env=env))
    failed = [i for i, proc in enumerate(procs) if proc.wait()]
    if failed:
        raise RuntimeError(f"{out}: inference shard(s) {', '.join(map(str, failed))} of {processes} failed (their "
                           f"messages are above); rerun to resume them")
    rows = [row for i in range(processes) for row in read_rows(shard_file(out, i, processes))]  # (one may be empty)
    if [r.img_id for r in rows] != [r.id for r in records]:  # pragma: no cover - a bug guard
        raise RuntimeError(f"{out}: merged shards do not follow the records' order")
    return rows, records


def _settings_of(shard: Path) -> dict:
    record = json.loads(side_file(shard, RUN_SUFFIX).read_text(encoding="utf-8"))
    return {k: v for k, v in record.items() if k != "complete"}
