"""The profiles ``unimumer reproduce`` runs (smoke, ci, cpu, paper, paper-dry): each one's data, sizes, arms,
recipes and notebook settings as data (``Profile``, ``Paper``), and the arms of the ablation.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..formats.families import TEST_SPLIT_LABELS
from ..tasks import spec as taskspec
from .mining import Mining


@dataclass(frozen=True)
class Paper:
    """What only the paper pipeline has: its EDL mining (``mining.Mining``; its model, preset and batch size are the
    profile's own), the arms trained (None: the five of the ablation), the
    base's zero-shot row, the test splits used (None: every one found) and the number of test images the
    learnability gates of each arm read."""

    mining: Mining
    arms: tuple[str, ...] | None = None
    zero_shot: bool = False
    test_splits: tuple[str, ...] | None = None
    gate_images: int = 0  # learnability gates (gates.py) of every arm on this many test images (0: none)
    gate_arms: tuple[str, ...] | None = None  # the arms (zero-shot included) gated; None: every arm

    def gates(self, arm: str) -> int:
        """The test images ``arm``'s gates read (0: not gated)."""
        return self.gate_images if self.gate_arms is None or arm in self.gate_arms else 0


@dataclass(frozen=True)
class Profile:
    """A ``reproduce`` profile: data sizes, the model and its training/decoding settings, and (``paper``) the
    paper pipeline's own settings; without ``paper`` notebooks 01 -> 05 run once on ``tasks``.

    ``data``: the default --data ("synthetic"; None: synthetic, or the CROHME root for the paper pipeline).
    ``writers``: the synthetic splits are composed from the shipped glyph bank's (train, test) writer groups
    (``glyphs.WRITER_GROUPS``) instead of Hershey glyphs.
    ``threads``: torch threads of the notebook kernels (OMP_NUM_THREADS unless already set). ``seed``: every
    notebook's seed (recorded in run.json with the rest). ``label``: the main-table row of the basic pipeline.
    """

    name: str
    synth_train: int
    synth_test: int
    height: int
    model: str
    preset: str
    max_steps: int
    batch_size: int
    max_new_tokens: int
    sample_size: int | None = None
    data: str | None = None
    threads: int | None = None
    seed: int = 0
    tasks: tuple[str, ...] = ("vanilla", "tree", "can")
    label: str = "ours ({name}, {train})"
    paper: Paper | None = None
    writers: tuple[str, str] | None = None  # synthetic data in real glyphs: the bank's writer groups of (train, test)
    stroke: float = 1.0  # pen width of the prepared images, a multiple of the renderer's default (render.stroke_width)
    task_loss_every: int = 0  # notebook 03 logs each task's probe loss every N steps (callbacks.task_loss_callback)


# `smoke` and `cpu` are the paper's experiment in miniature on CPU. `smoke` fine-tunes the shipped real-glyph base
# (`glyph-base`: tiny-base continued on expressions composed from real CROHME-train glyphs of the bank's
# pretraining writers, with every task's format; training/pretrain.py) on expressions composed from the glyphs
# of other writers (the bank's finetune group) and tests on a third group (test), written with a pen twice as broad
# as every image the base trained on (stroke 2.0, as a new device or scanner would): a domain the base did not train
# on, as the paper fine-tunes a Qwen2.5-VL that never saw CROHME. (Other writers alone were no new domain: the base
# read them as well as its own, and vanilla SFT moved it by -0.9 points; at stroke 2.0 it reads 1 of 300.)
# `zero_shot` adds the base's own row; EDL rows are the base's errors on the fine-tuning images (it never saw them)
# sampled at temperature 0.5 (at stroke 2.0 they are far misses, not a trained model's near misses: the base
# reads few of these images). Each arm trains one epoch over its own data (max_steps -1), as the paper trains
# each arm; `smoke-full` adds the compute-matched control (vanilla for as many steps as all). `cpu` fine-tunes
# glyph-base on CROHME train (its EDL rows from glyph-base's own errors). threads=2: on 2 idle cores a second
# thread trains the tiny model 1.45x faster. To hold the smoke near 10 minutes it gates the all arm only (its
# gates are what the acceptance reads) and mines 600 images; `smoke-full` gates every arm.
SMOKE_MINING = Mining(from_model="glyph-base", limit=600, max_steps=-1, temperature=0.5)
PROFILES = {p.name: p for p in (
    Profile("ci", synth_train=48, synth_test=16, height=64, model="tiny", preset="cpu-smoke", max_steps=30,
            batch_size=8, max_new_tokens=64, label="ours (ci, tiny CPU model, {train})"),
    Profile("smoke", synth_train=2000, synth_test=1000, height=64, model="glyph-base", preset="cpu-sft",
            max_steps=-1, batch_size=16, max_new_tokens=96, data="synthetic", threads=2,
            writers=("finetune", "test"), stroke=2.0, task_loss_every=100,
            paper=Paper(SMOKE_MINING, arms=("vanilla", "all"), zero_shot=True, gate_images=200, gate_arms=("all",))),
    Profile("smoke-full", synth_train=2000, synth_test=1000, height=64, model="glyph-base", preset="cpu-sft",
            max_steps=-1, batch_size=16, max_new_tokens=96, data="synthetic", threads=2,
            writers=("finetune", "test"), stroke=2.0, task_loss_every=100,
            paper=Paper(SMOKE_MINING, arms=("vanilla", taskspec.MATCHED_ARM, "all"), zero_shot=True, gate_images=200)),
    Profile("cpu", synth_train=12000, synth_test=500, height=64, model="glyph-base", preset="cpu-sft", max_steps=-1,
            batch_size=16, max_new_tokens=128, threads=2,
            paper=Paper(Mining(from_model="glyph-base", limit=3000, max_steps=-1), arms=("all",), zero_shot=True,
                        test_splits=("test2014",))),
    # The paper: Qwen2.5-VL-3B-Instruct, full fine-tuning, 1 epoch per arm over all of CROHME train, k-fold mining
    # with the same recipe (k=5, 4 samples per held-out image at temperature 1.0: our choices, see the README).
    Profile("paper", synth_train=20000, synth_test=1000, height=128, model="Qwen/Qwen2.5-VL-3B-Instruct",
            preset="paper", max_steps=-1, batch_size=32, max_new_tokens=512,
            paper=Paper(Mining(k=5, samples=4, max_steps=-1, max_new_tokens=512))),
    # The same code path on CPU in minutes: the tiny offline model, the first 30 files of every split, few steps.
    Profile("paper-dry", synth_train=30, synth_test=30, sample_size=30, height=48, model="tiny", preset="cpu-smoke",
            max_steps=12, batch_size=30, max_new_tokens=32, paper=Paper(Mining(k=2, max_steps=8, max_new_tokens=32))),
)}
TEST_SPLIT_CROHME = "test2014"
# Column names of the tables (report.published() uses the same dataset names).
DATASET_LABELS = {"test": "synthetic", **TEST_SPLIT_LABELS}  # test2014 ... test2023 (families.py)
ARMS = ("vanilla", *taskspec.arms(), "all")  # the ablation: vanilla, each auxiliary arm of the registry, all
MAIN_ARM, BASELINE_ARM, MATCHED_ARM = taskspec.MAIN_ARM, taskspec.BASELINE_ARM, taskspec.MATCHED_ARM
# notebook 05 compares the main arm against the baseline (what the auxiliary tasks fixed and broke)
ZERO_SHOT = "zero-shot"  # the untrained model's row beside the arms (profiles with zero_shot)
HME100K_SPLIT = "hme100k"  # predictions/<main arm>/hme100k.json; its main-table column is families' "HME100K"
HME100K_SPLITS = ("train", "test")
TRAIN_LABELS = {True: "synthetic", False: "CROHME train"}  # the training data of a run, by "tested on synthetic"


def arm_tasks(arm: str) -> list[str]:
    """Training tasks of an arm: vanilla plus the tasks of the named auxiliary arms (``taskspec.arms``: an arm name
    adds its tasks to vanilla; ``all`` = every one; ``tree+edl`` = vanilla + tree + EDL)."""
    if arm == MATCHED_ARM:
        return [taskspec.BASE_TASK]
    aux = taskspec.arms()
    names = list(aux) if arm == MAIN_ARM else [n for n in arm.split("+") if n != taskspec.BASE_TASK]
    unknown = [n for n in names if n not in aux]
    if unknown or not arm:
        raise ValueError(f"unknown arm {arm!r}: use vanilla, all, {MATCHED_ARM} (vanilla for as many steps as "
                         f"all), or auxiliary tasks {'+'.join(aux)} joined with '+'")
    return [taskspec.BASE_TASK] + [t for n in aux if n in names for t in aux[n]]


def parse_arms(text: str | list[str] | None) -> list[str]:
    """``"vanilla,tree,all"`` -> checked arm names (default: the five arms of the ablation)."""
    arms = list(ARMS) if not text else [a.strip() for a in (text.split(",") if isinstance(text, str) else text)]
    for arm in arms:
        arm_tasks(arm)
    if len(set(arms)) != len(arms):
        raise ValueError(f"arm named twice in {arms}")
    if MATCHED_ARM in arms and MAIN_ARM not in arms:
        raise ValueError(f"the {MATCHED_ARM} arm trains as many steps as the {MAIN_ARM} arm: name both")
    return arms


def arm_model_name(profile: str, arm: str) -> str:
    """Row name of an arm in the tables (the zero-shot row names the model)."""
    if arm == ZERO_SHOT:
        return f"{PROFILES[profile].model} ({profile}, zero-shot)"
    return f"ours ({profile}, {arm})"
