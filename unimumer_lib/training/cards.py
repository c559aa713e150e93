"""The model cards of the pretrained bases (``README.md`` beside the weights): data, tasks, recipe, segments, curve,
licence, made from a base's ``run_config.json`` record.
"""

from __future__ import annotations




def _head(record: dict, licence: str, tag: str, name: str) -> str:
    """A card's front matter (licence, library, task, tags), title and first words: the model's size and shape."""
    return f"""---
license: {licence}
library_name: transformers
pipeline_tag: image-text-to-text
tags: [handwritten-mathematical-expression-recognition, qwen2_5_vl, unimumer, {tag}]
---
# unimumer {name}

A {record['parameters'] / 1e6:.2f} M-parameter Qwen2.5-VL (the `{record['size']}` shape of
`unimumer_lib.models.tiny.SIZES`)"""


def model_card(record: dict) -> str:
    """The base's model card: data, recipe, steps, held-out numbers, how to rebuild it, licence."""
    last = record["learning_curve"][-1] if record["learning_curve"] else {}
    curve = "\n".join(f"| {p['step']:,} | {p['exprate']:.1f} | {p['le1']:.1f} | {p['le2']:.1f} | "
                      f"{p['distinct']}/{p['n']} |" for p in record["learning_curve"])
    s = record["stream"]
    data_min = (record.get("stream_wall_s", 0) + record["data_wall_s"]) / 60  # a reused stream: its first run's time
    notes = f" (and `notes`: {record['notes']})" if record.get("notes") else ""
    return f"""{_head(record, "apache-2.0", "synthetic", "tiny-base")}
pretrained on CPU to read synthetic handwritten expressions: image -> LaTeX with Uni-MuMER's vanilla prompt. It is the
CPU stand-in for Qwen2.5-VL-3B-Instruct: the smoke and cpu profiles fine-tune from it, as the paper fine-tunes
from a model that already reads. It is not a model for real handwriting: it has seen only synthetic writers.

- **Data**: {s['written']:,} unique synthetic samples (`unimumer_lib.data.synth`, seeds {record['pretrain_seeds'][0]}..
  {record['pretrain_seeds'][-1]}, {s['settings']['shard_size']:,} per seed), rendered {record['height']} px high as
  `prepare --height {record['height']}` renders them. Left out: {s['excluded_held_out']:,} samples whose caption is
  in the held-out pool (the first {record['held_out_pool']:,} samples of seed {record['held_out_seed']}, from which
  every synthetic test set is drawn: {record['excluded_captions']['held_out_pool']:,} captions) or in the CROHME test
  splits ({record['excluded_captions']['crohme_test']:,} captions); {s['rejected']} could not be laid out.
- **Recipe**: TRL `SFTTrainer` through `unimumer_lib.training.train`, preset `{record['preset']}`,
  {record['steps']:,} steps of
  {record['batch_size']}, seed {record['seed']}, assistant-only loss; final logged loss {record['final_loss']:.3f}.
- **Compute**: {record['train_wall_s'] / 60:.0f} min of training on a 2-core CPU (+ {data_min:.0f} min making the
  data), commit `{record['commit']}`.
- **Held-out** (greedy, {last.get('n', 0)} expressions of the held-out pool, unseen writers and captions):
  ExpRate {last.get('exprate', 0):.1f} %, <=1 {last.get('le1', 0):.1f} %, <=2 {last.get('le2', 0):.1f} %.

| step | ExpRate % | <=1 % | <=2 % | distinct |
| --- | --- | --- | --- | --- |
{curve}

**Rebuild**: `unimumer pretrain --out DIR --work WORKDIR` (its defaults are the shipped recipe; about 90 min on 2
cores); `run_config.json` records every setting{notes}.

**Use**: `unimumer_lib.models.model.load_model("tiny-base")`, or `from_pretrained` on this folder.

**Licence**: Apache-2.0, as the unimumer code. The data is synthetic (Hershey glyph outlines from `hershey-fonts`).
"""


def _segments_line(record: dict) -> str:
    """The model card's note that its data/recipe lines describe the last of several segments ("" for one)."""
    n = len(record["segments"])
    return (f"The data, tasks and recipe below are those of the last segment ({n}); the table after them lists every "
            f"segment, each continuing the one before (`training.pretrain.GLYPH_SEGMENTS` holds the recipes).\n\n"
            if n > 1 else "")


def _crohme_line(record: dict) -> str:
    """The data line of the CROHME-train part of the last segment's stream, if it had one."""
    c = record.get("crohme_train")
    if not c:
        return ""
    return (f"- **Real handwriting** (last segment): {c['written']:,} CROHME `{c['settings']['src']}` expressions "
            f"of the `{c['settings']['writer_group']}` writers, each {c['repeats']} times ({c['read']:,} files read; "
            f"{c['other_writers']:,} of other writers and {c['excluded_held_out']:,} with a held-out caption left "
            f"out, {c['rejected']} rejected).\n")


def glyph_model_card(record: dict) -> str:
    """The real-glyph base's model card: data (glyph bank, writers, tasks), recipe, segments, curve, licence."""
    last = record["learning_curve"][-1] if record["learning_curve"] else {}
    sets = [k for k in ("hershey", "crohme2014") if k in last]
    head = "| step | held-out real glyphs ExpRate % | <=1 % | <=2 % | " + " | ".join(f"{k} ExpRate %" for k in sets)
    rows = "\n".join(f"| {p['step']:,} | {p['exprate']:.1f} | {p['le1']:.1f} | {p['le2']:.1f} | "
                     + " | ".join(f"{p[k]['exprate']:.1f}" for k in sets if k in p) + " |"
                     for p in record["learning_curve"])
    segments = "\n".join(f"| {i + 1} | `{g['commit']}` | {g.get('init') or 'random'} | "
                         f"{(g.get('recipe') or {}).get('size', 'tiny')} | {g['steps']:,} | "
                         f"{(g['train_wall_s'] or 0) / 60:.0f} |" for i, g in enumerate(record["segments"]))
    g, s, r = record["glyphs"], record["stream"], record["recipe"]
    shares = ", ".join(f"{t} {x:.0%}" for t, x in zip(r["tasks"], r["task_shares"] or [1] * len(r["tasks"])))
    return f"""{_head(record, "cc-by-nc-sa-3.0", "crohme", record['name'])}
pretrained on CPU to read handwritten expressions composed from **real handwritten glyphs**, with a share of every
Uni-MuMER task's prompt and answer format (the CPU stand-in for an instruction-following VLM).

{_segments_line(record)}- **Data**: {s['written']:,} unique expressions (`unimumer_lib.data.synth` captions and
  layout, seeds
  {record['pretrain_seeds'][0]}..{record['pretrain_seeds'][-1]}), {g['share']:.0%} written with real glyphs from the
  glyph bank `{g['bank']}` (symbols of CROHME `{g['source']}`), only its `{g['writer_group']}` writers
  ({g['writers']:,} of {g['bank_writers']:,}; the others are kept for fine-tuning and test sets), one writer per
  expression where that writer wrote the symbol, the rest Hershey glyphs; rendered {record['height']} px high.
  Left out: samples whose caption is in the held-out pool ({record['excluded_captions']['held_out_pool']:,}
  captions) or in the CROHME test splits ({record['excluded_captions']['crohme_test']:,} captions).
{_crohme_line(record)}- **Tasks** (each sample trains one, drawn with these shares): {shares}; rows
  {record['rows']}. EDL rows carry 1-2 look-alike errors (`edl.LOOKALIKES`).
- **Recipe**: TRL `SFTTrainer` through `unimumer_lib.training.train`, preset `{record['preset']}`,
  {record['steps']:,} steps of
  {record['batch_size']}, assistant-only loss (plain token mean); published from `{record['published_from']}`.
- **Held-out** (greedy, vanilla prompt; {last.get('n', 0)} expressions of the held-out pool in the glyphs of the
  bank's test writers, which pretraining never saw): ExpRate {last.get('exprate', 0):.1f} %.
  CROHME 2014 is measured on a fixed sample for the curve only; it never chose a checkpoint.
  The curve below is the last segment's (step 0 is where the segment started).

| segment | commit | started from | shape (a deeper one: grown, `models.tiny.grow`) | steps | minutes |
| --- | --- | --- | --- | --- | --- |
{segments}

{head} |
| {' | '.join(['---'] * (4 + len(sets)))} |
{rows}

{("**Notes**: " + record["notes"] + chr(10)) if record.get("notes") else ""}
**Rebuild / continue**: `unimumer pretrain --recipe {record['name']} --out DIR --work WORKDIR` runs the last
segment's recipe from the base it started from (`--init` another base to continue that one instead);
`run_config.json` records every setting.

**Licence**: the weights are derived from CROHME glyphs: CC BY-NC-SA 3.0 (attribution: the CROHME organisers,
TC-11 / IAPR; research use only). The code that made them is Apache-2.0.
"""
