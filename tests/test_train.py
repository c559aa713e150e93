"""SFT with TRL on real CROHME images: format conversion, assistant-only labels, learning, resume, LoRA, presets."""

from __future__ import annotations

import json
import os
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from PIL import Image
from transformers import TrainerCallback

from unimumer_lib.inference.infer import exprate, predict
from unimumer_lib.pipeline.mining import sample_caption_set
from unimumer_lib.models.images import INPUT_SPEC_FILE
from unimumer_lib.models.tiny import tiny_model
from unimumer_lib.formats.sharegpt import sharegpt_row
from unimumer_lib.tasks.build import PROMPTS, caption_rows, write_task_files
from unimumer_lib.training.train import LOSS_HISTORY_FILE, one_gpu_unless_launched, plot_loss, read_loss_history, train
from unimumer_lib.training.sftconfig import (PAPER_EFFECTIVE_BATCH, PRESET_DIR, PRESETS, known_settings, make_config,
                                    read_config_file)
from unimumer_lib.training.sftdata import load_sharegpt_dataset, sharegpt_to_trl

os.environ.setdefault("MPLBACKEND", "Agg")
QUIET = dict(disable_tqdm=True, save_steps=10**6)


@pytest.fixture(scope="module")
def crohme6(crohme_root, tmp_path_factory):
    """Six short real CROHME training expressions rendered at height 64, as a vanilla sharegpt file."""
    folder = tmp_path_factory.mktemp("crohme6")
    records = sample_caption_set(crohme_root / "train", folder / "set", 6, min_tokens=3, max_tokens=8, height=64)
    rows, rejects = caption_rows([(r.id, r.caption, r.image_path) for r in records], ["vanilla"], progress=False)
    assert not rejects
    return records, write_task_files(folder / "tasks", rows)["vanilla"]


def test_sharegpt_to_trl_places_images_at_placeholders(tmp_path):
    (tmp_path / "a.png").write_bytes(b"")
    row = sharegpt_row("<image>" + PROMPTS["vanilla"], "x ^ { 2 }", ["a.png"])
    got = sharegpt_to_trl(row, tmp_path)
    assert got["images"] == [str(tmp_path / "a.png")]
    assert got["messages"] == [
        {"role": "user", "content": [{"type": "image"}, {"type": "text", "text": PROMPTS["vanilla"]}]},
        {"role": "assistant", "content": [{"type": "text", "text": "x ^ { 2 }"}]}]


def test_labels_cover_only_the_assistant_answer(crohme6, tmp_path):
    records, path = crohme6
    model, processor = tiny_model()
    result = train(path, model=model, processor=processor, out_dir=tmp_path, max_steps=1, **QUIET)
    collator = result.trainer.data_collator
    batch = collator([dict(x) for x in load_sharegpt_dataset(path).select(range(2))])
    tok = processor.tokenizer
    for ids, labels in zip(batch["input_ids"], batch["labels"]):
        trained = tok.decode(ids[labels != -100])
        assert trained in {r.caption + "<|im_end|>\n" for r in records}, trained


def test_tiny_model_learns_to_read_six_images(crohme6, tmp_path):
    records, path = crohme6
    torch.manual_seed(0)
    result = train(path, model_path="tiny", out_dir=tmp_path / "run", max_steps=60, per_device_train_batch_size=6,
                   logging_steps=10, **QUIET)
    history = read_loss_history(tmp_path / "run")
    assert history[-1]["loss"] < history[0]["loss"] / 10
    rows = predict(result.model, result.processor, records, tmp_path / "pred.json", max_new_tokens=32,
                   progress=False)
    assert exprate(rows) >= 5 / 6, [(r.gt, r.pred) for r in rows]
    assert len({r.pred for r in rows}) >= 5  # image-dependent, not one string for all
    assert plot_loss(history, tmp_path / "loss.png").stat().st_size > 1000
    card = (tmp_path / "run" / "final" / "README.md").read_text()  # a real card, not TRL's template
    assert "fine-tuned version of [None]" not in card and "# A unimumer fine-tune of `tiny`" in card
    assert "| vanilla | 6 |" in card and "60 steps" in card and f"{history[-1]['loss']:.4f}" in card
    assert json.loads((tmp_path / "run" / "final" / INPUT_SPEC_FILE).read_text())["height"] == \
        Image.open(records[0].image_path).height  # the input it trained on, measured from its images


class _Kill(TrainerCallback):
    def on_step_end(self, args, state, control, **kwargs):
        if state.global_step == 4:
            raise KeyboardInterrupt("simulated kill after checkpoint-3")


def test_resume_after_kill_reaches_same_step_and_loss(crohme6, tmp_path):
    _, path = crohme6
    common = dict(max_steps=6, save_steps=3, logging_steps=1, per_device_train_batch_size=4, disable_tqdm=True)
    full = train(path, out_dir=tmp_path / "full", **common)
    with pytest.raises(KeyboardInterrupt):
        train(path, out_dir=tmp_path / "killed", callbacks=[_Kill()], **common)
    assert (tmp_path / "killed" / "checkpoint-3").is_dir()
    resumed = train(path, out_dir=tmp_path / "killed", resume=True, **common)
    assert resumed.global_step == full.global_step == 6
    assert resumed.last_loss == pytest.approx(full.last_loss, rel=1e-4)


def test_lora_trains_only_adapters(crohme6, tmp_path):
    _, path = crohme6
    result = train(path, out_dir=tmp_path, max_steps=2, model_path="tiny-base",
                   lora={"r": 4, "lora_alpha": 8, "target_modules": "all-linear"}, **QUIET)
    trainable = [n for n, p in result.model.named_parameters() if p.requires_grad]
    assert trainable and all("lora_" in n for n in trainable)
    assert (tmp_path / "final" / "adapter_config.json").exists()
    assert json.loads((tmp_path / LOSS_HISTORY_FILE).read_text())


def test_paper_preset_matches_the_paper(tmp_path):
    for devices in (1, 2, 4, 8):
        cfg = make_config("paper", tmp_path, devices=devices, use_cpu=True)
        assert cfg.per_device_train_batch_size * cfg.gradient_accumulation_steps * devices == PAPER_EFFECTIVE_BATCH
    assert cfg.learning_rate == 1e-5 and cfg.lr_scheduler_type == "cosine" and cfg.num_train_epochs == 1
    assert cfg.warmup_steps == 0.1 and cfg.max_length == 2048 and cfg.gradient_checkpointing and cfg.bf16
    assert cfg.assistant_only_loss and cfg.save_total_limit == 2 and cfg.report_to in ("none", [])


def test_presets_are_valid_sft_configs_and_config_files_override(tmp_path):
    for name in PRESETS:
        assert set(read_config_file(PRESET_DIR / f"{name}.yaml")) <= known_settings(), name
    extra = tmp_path / "mine.yaml"
    extra.write_text("learning_rate: 2.0e-5\nreport_to: tensorboard\n")
    cfg = make_config("paper", tmp_path, devices=4, config=read_config_file(extra), use_cpu=True)
    assert cfg.learning_rate == 2e-5 and cfg.report_to == ["tensorboard"]
    extra.write_text("learning_rat: 1\n")
    with pytest.raises(ValueError, match="mine.yaml: unknown setting.*learning_rat"):
        read_config_file(extra)


def test_one_process_never_wraps_several_gpus_in_data_parallel(capsys):
    args = SimpleNamespace(n_gpu=4, _n_gpu=4)
    one_gpu_unless_launched(args)
    assert args._n_gpu == 1 and "accelerate launch" in capsys.readouterr().out


def test_bad_training_file_names_the_file(tmp_path):
    bad = tmp_path / "vanilla.json"
    bad.write_text(json.dumps([{"messages": [{"from": "human", "value": "no image"}], "images": ["a.png"]}]))
    with pytest.raises(ValueError, match="vanilla.json"):
        load_sharegpt_dataset(bad)
    with pytest.raises(ValueError, match="unknown preset"):
        make_config("fast", tmp_path)


def test_loss_plot_needs_points(tmp_path):
    with pytest.raises(ValueError, match="no logged loss"):
        plot_loss([], tmp_path / "x.png")
    assert Image.open(plot_loss([{"step": 1, "loss": 2.0}, {"step": 2, "loss": 1.0}], tmp_path / "x.png")).width > 0


def test_a_bf16_run_saves_final_in_bf16(crohme6, tmp_path):
    """Issue 21: a single-GPU paper run saved final/ in float32 (15 GB at 3B) and infer then ran it in fp32."""
    from safetensors import safe_open

    _, path = crohme6
    train(path, out_dir=tmp_path / "run", max_steps=1, bf16=True, **QUIET)
    final = tmp_path / "run" / "final"
    with safe_open(str(final / "model.safetensors"), "pt") as f:
        dtypes = {f.get_slice(k).get_dtype() for k in f.keys()}
    assert dtypes == {"BF16"} and json.loads((final / "config.json").read_text())["dtype"] == "bfloat16"
    from unimumer_lib.models.model import load_model

    model, _ = load_model(final, dtype="auto")
    assert model.dtype == torch.bfloat16


def test_a_tied_output_layer_saved_twice_is_stored_once(tmp_path):
    """Issue 21: ZeRO-2 saved a duplicate lm_head (~0.6 GB at 3B): DeepSpeed's gathered state dict holds the tied
    output layer as its own tensor. The copy is dropped and the model loads with identical logits."""
    from safetensors import safe_open
    from safetensors.torch import load_file, save_file

    from unimumer_lib.models.model import load_model, save
    from unimumer_lib.models.tiny import tiny_model
    from unimumer_lib.training.saving import TIED_OUTPUT, drop_tied_duplicate

    model, processor = tiny_model()
    folder = save(model, processor, tmp_path / "m")
    tensors = load_file(str(folder / "model.safetensors"))
    tensors[TIED_OUTPUT] = tensors["model.embed_tokens.weight"].clone()  # what a gathered ZeRO-2 state dict saves
    save_file(tensors, str(folder / "model.safetensors"), metadata={"format": "pt"})
    size = (folder / "model.safetensors").stat().st_size
    assert drop_tied_duplicate(folder) and not drop_tied_duplicate(folder)
    with safe_open(str(folder / "model.safetensors"), "pt") as f:
        assert TIED_OUTPUT not in f.keys()
    assert (folder / "model.safetensors").stat().st_size < size
    back, _ = load_model(folder, dtype="float32")
    ids = torch.tensor([[1, 2, 3]])
    assert torch.equal(back(input_ids=ids).logits, model.eval()(input_ids=ids).logits)


def test_every_sft_field_and_the_mixture_are_settable_from_the_command_line(crohme6, tmp_path, capsys):
    """Issue 23: any SFTConfig field through TRL's own parser (no hand-kept list), the mixture through ``--ratio``,
    and run_config.json records the files trained on (not ``<dataset>``)."""
    from unimumer_lib.pipeline import cli

    _, path = crohme6
    run = tmp_path / "run"
    assert cli.main(["train", "--data", str(path), "--out", str(run), "--max-steps", "1", "--learning_rate", "3e-4",
                     "--weight-decay", "0.25", "--disable_tqdm", "true", "--ratio", "vanilla=0.5"]) == 0
    assert "train: rows: read 3 = used 3 + rejected 0" in capsys.readouterr().err  # half of the six rows
    recorded = json.loads((run / "run_config.json").read_text())
    assert recorded["sft_config"]["learning_rate"] == 3e-4 and recorded["sft_config"]["weight_decay"] == 0.25
    assert recorded["ratios"] == {"vanilla": 0.5} and recorded["data"] == [str(path)]


def test_lora_from_trl_model_options_trains_adapters(crohme6, tmp_path):
    from unimumer_lib.pipeline import cli

    _, path = crohme6
    run = tmp_path / "run"
    assert cli.main(["train", "--data", str(path), "--out", str(run), "--max-steps", "1", "--use_peft", "--lora_r",
                     "4", "--lora_alpha", "8", "--disable_tqdm", "true", "--model", "tiny-base"]) == 0
    adapter = json.loads((run / "final" / "adapter_config.json").read_text())
    assert adapter["r"] == 4 and adapter["lora_alpha"] == 8  # over the cpu-smoke preset, which has no LoRA
    # Issue 34 (item 18): the adapter names a base it can be loaded on again (it was null on the random 'tiny')
    from unimumer_lib.models.model import SHIPPED

    assert Path(adapter["base_model_name_or_path"]).resolve() == Path(SHIPPED["tiny-base"]).resolve()


def test_lora_on_a_fresh_random_shape_is_refused_before_anything_is_written(crohme6, tmp_path, capsys):
    """Issue 34 (item 18): ``train --use_peft`` on the default random tiny model wrote an adapter whose
    ``base_model_name_or_path`` was null; ``infer`` on it then tried the hub."""
    from unimumer_lib.pipeline import cli

    _, path = crohme6
    assert cli.main(["train", "--data", str(path), "--out", str(tmp_path / "run"), "--max-steps", "1",
                     "--use_peft", "--model", "tiny"]) == 2
    assert "fresh random shape" in capsys.readouterr().err and not (tmp_path / "run").exists()


def test_command_line_settings_are_refused_with_the_reason(capsys):
    from unimumer_lib.pipeline import cli
    from unimumer_lib.training.sftconfig import LORA_BASE, lora_config, parse_ratios, parse_trl_options

    overrides, lora = parse_trl_options(["--learning-rate", "2e-5", "--gradient_checkpointing", "false",
                                         "--load_in_4bit", "--lora_r", "8", "--hub_model_id", "a"])
    assert overrides == {"learning_rate": 2e-5, "gradient_checkpointing": False, "hub_model_id": "a",
                         "quantize": True} and lora == {"r": 8}
    assert parse_trl_options(["--use_peft"]) == ({}, {}) and parse_trl_options([]) == ({}, None)
    assert lora_config(None) is None and lora_config(None, {}).target_modules == LORA_BASE["target_modules"]
    for bad, reason in ((["--learning_rat", "2e-5"], "unknown option"), (["--seed", "3"], "use --seed"),
                        (["--output_dir", "x"], "use --out"), (["--attn_implementation", "sdpa"], "does not use")):
        with pytest.raises(ValueError, match=reason):
            parse_trl_options(bad)
    with pytest.raises(SystemExit) as stop:  # the other commands keep refusing options they do not have
        cli.main(["eval", "x.json", "--learning_rate", "1"])
    assert stop.value.code == 2 and "unrecognized arguments: --learning_rate 1" in capsys.readouterr().err
    assert parse_ratios(["tree=0.5", "can=1"]) == {"tree": 0.5, "can": 1.0} and parse_ratios(None) is None
    for bad in ("tree", "tree=0", "tree=1.5", "=0.5", "tree=half"):
        with pytest.raises(ValueError, match="TASK=FRACTION"):
            parse_ratios([bad])


def test_a_recipe_splits_its_own_fields_from_sft_overrides_and_launch_passes_the_mixture(tmp_path):
    from unimumer_lib.training.launch import launch_command
    from unimumer_lib.training.sftconfig import Recipe, parse_ratios

    recipe = Recipe.of(model_path="small", max_steps=4, seed=2, ratios={"tree": 0.5}, learning_rate=1e-4)
    assert (recipe.model_path, recipe.max_steps, recipe.seed, recipe.ratios) == ("small", 4, 2, {"tree": 0.5})
    assert recipe.overrides == {"learning_rate": 1e-4} and recipe.preset == "cpu-smoke"
    cmd = launch_command([tmp_path / "tree.json"], tmp_path / "run", 2, recipe)
    given = [cmd[i + 1] for i, arg in enumerate(cmd) if arg == "--ratio"]
    assert parse_ratios(given) == {"tree": 0.5}  # the processes train the mixture notebook 03 shows
    assert cmd[cmd.index("--max-steps") + 1] == "4" and cmd[cmd.index("--seed") + 1] == "2"


def test_a_run_with_a_frozen_vision_tower_is_not_the_same_run(crohme6):
    """A rerun must never resume a run made with other settings: freezing the vision tower is one of them."""
    from unimumer_lib.training.sftconfig import Recipe
    from unimumer_lib.training.train import run_fingerprint

    _, path = crohme6
    plain = run_fingerprint(Recipe(), "tiny", path)
    assert run_fingerprint(Recipe(freeze_vision=True), "tiny", path) != plain
    assert "freeze_vision" not in plain and run_fingerprint(Recipe(), "tiny", path) == plain


def test_validation_exprate_is_logged_during_training(crohme6, tmp_path):
    """Issue 32 (item 8): ``train --eval-data SPLIT --eval-every N`` reads the split greedily every N steps: its
    points land in eval_curve/points.jsonl and in the loss history beside the training loss."""
    from unimumer_lib.pipeline import cli
    from unimumer_lib.training.callbacks import CURVE_POINTS, EVAL_CURVE_DIR

    records, path = crohme6
    split = tmp_path / "set"  # sample_caption_set's layout: caption.txt + images/
    split.mkdir()
    (split / "images").mkdir()
    for r in records:
        (split / "images" / f"{r.id}.png").write_bytes(open(r.image_path, "rb").read())
    (split / "caption.txt").write_text("".join(f"{r.id}\t{r.caption}\n" for r in records))
    out = tmp_path / "run"
    assert cli.main(["train", "--data", str(path), "--model", "tiny", "--preset", "cpu-smoke", "--out", str(out),
                     "--max-steps", "4", "--eval-data", str(split), "--eval-every", "2", "--eval-n", "4"]) == 0
    points = [json.loads(line) for line in (out / EVAL_CURVE_DIR / CURVE_POINTS).read_text().splitlines()]
    assert [p["step"] for p in points] == [2, 4] and all(p["n"] == 4 for p in points)
    logged = [h for h in json.loads((out / LOSS_HISTORY_FILE).read_text()) if "eval_exprate" in h]
    assert [h["step"] for h in logged] == [2, 4] and logged[-1]["eval_exprate"] == points[-1]["exprate"]
    assert cli.main(["train", "--data", str(path), "--model", "tiny", "--preset", "cpu-smoke", "--out",
                     str(tmp_path / "run2"), "--max-steps", "2", "--eval-data", str(tmp_path / "nothing")]) == 2


def test_report_to_tensorboard_writes_event_files(crohme6, tmp_path):
    """Issue 32 (item 8): ``--report-to tensorboard`` writes TensorBoard events of the loss (the ``tracking`` extra
    installs tensorboard; tensorboardX, in requirements.txt, is the writer transformers falls back on)."""
    from unimumer_lib.pipeline import cli

    _, path = crohme6
    run = tmp_path / "run"
    assert cli.main(["train", "--data", str(path), "--out", str(run), "--max-steps", "2", "--report-to",
                     "tensorboard", "--logging_steps", "1", "--disable_tqdm", "true"]) == 0
    events = list(run.rglob("events.out.tfevents.*"))
    assert events and all(e.stat().st_size > 0 for e in events)
    from tensorboardX.proto import event_pb2  # the events hold the logged training loss

    tags = set()
    for e in events:
        data, i = e.read_bytes(), 0
        while i + 12 <= len(data):
            n = int.from_bytes(data[i:i + 8], "little")
            record = event_pb2.Event.FromString(data[i + 12:i + 12 + n])
            tags |= {v.tag for v in record.summary.value}
            i += 12 + n + 4
    assert any("loss" in t for t in tags), tags


def test_each_tasks_loss_is_logged_on_its_probe(crohme6, tmp_path):
    """Issue 32 (item 8): one overall loss curve, no per-task loss. ``task_loss_every`` logs ``loss_<task>`` for
    every task of the mixture on a fixed probe of its rows; the curve shows them and the CLI flag passes it on."""
    from unimumer_lib.pipeline import cli
    from unimumer_lib.tasks.build import caption_rows, write_task_files
    from unimumer_lib.training.train import read_task_losses

    records, _ = crohme6
    rows, _ = caption_rows([(r.id, r.caption, r.image_path) for r in records], ["vanilla", "can"], progress=False)
    files = write_task_files(tmp_path / "tasks", rows)
    run = tmp_path / "run"
    assert cli.main(["train", "--data", str(tmp_path / "tasks"), "--out", str(run), "--max-steps", "4",
                     "--model", "tiny-base", "--task-loss-every", "2", "--disable_tqdm", "true"]) == 0
    losses = read_task_losses(run)
    assert set(losses) == {"vanilla", "can"} and [s for s, _ in losses["can"]] == [2, 4]
    assert all(0 < v < 50 for points in losses.values() for _, v in points)
    # the probe is the trainer's own loss on those rows: a vanilla-only model has a far higher loss on counting
    assert losses["can"][0][1] != losses["vanilla"][0][1]
    assert (run / "loss_curve.png").stat().st_size > 5000 and files
