"""Model families: what differs between vision-language model families, in one registry.

As LLaMA-Factory's ``register_template`` does for its templates, one ``ModelFamily`` holds everything the code
needs to know of a family: how its processor is loaded when the stock one cannot be built, the side multiple its
images are fitted to (patch size x merge size), the tokens that end an answer, the shape of the chat message, the
vision module a recipe may freeze, and the builder of its tiny offline stand-in. ``model_family`` finds the family
of a model, config, processor or tokenizer (a ``unimumer_family`` mark, else the config's ``model_type``);
adding a family is one ``register_family`` call.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import reduce
from typing import Any, Callable

from .images import MIN_PIXELS, PAPER_MAX_PIXELS, fit_pixels, official_size
from .processor import QWEN_STOP_TOKENS, image_only_processor, neutral_generation_config, stop_token_ids
from .tiny import tiny_model

FAMILY_ATTR = "unimumer_family"  # a config field (saved in config.json) and a processor/tokenizer attribute


class UnknownFamily(ValueError):
    """A model whose family is not registered (the message names it and the registered ones)."""


@dataclass(frozen=True)
class ModelFamily:
    """One family of vision-language models (``register_family``).

    ``model_types``: the ``config.model_type`` values it covers; ``factor``: image sides are fitted to multiples
    of it (patch x merge; at least one multiple each way); ``stop_tokens``: generation ends on any of them;
    ``vision_module``: the attribute path of the vision tower (``freeze_vision`` freezes it); ``image_first``:
    the user message is [image, prompt] (else [prompt, image]); ``processor``: ``path_or_id -> processor`` when
    the stock ``AutoProcessor`` cannot be built (None: no fallback); ``tiny``: ``(size, seed=) -> (model,
    processor)``, the offline random-weight stand-in.
    """

    name: str
    model_types: tuple[str, ...] = ()
    factor: int = 28
    stop_tokens: tuple[str, ...] = QWEN_STOP_TOKENS
    vision_module: str = "model.visual"
    image_first: bool = True
    processor: Callable[[Any], Any] | None = None
    tiny: Callable[..., tuple] | None = None

    def chat(self, image, prompt: str) -> list[dict]:
        """The single-turn user message the model reads (``image`` None: the image block without pixels)."""
        blocks = [{"type": "image", **({"image": image} if image is not None else {})},
                  {"type": "text", "text": prompt}]
        return [{"role": "user", "content": blocks if self.image_first else blocks[::-1]}]

    def stop_token_ids(self, tokenizer) -> list[int]:
        """The ids of ``stop_tokens`` in ``tokenizer``."""
        return stop_token_ids(tokenizer, self.stop_tokens)

    def generation_config(self, tokenizer):
        """Greedy, no repetition penalty, this family's stop tokens: what a saved checkpoint carries."""
        return neutral_generation_config(tokenizer, self.stop_tokens)

    def vision(self, model):
        """The vision tower of ``model`` (``vision_module``)."""
        return reduce(getattr, self.vision_module.split("."), model)

    def fit(self, image, max_pixels: int = PAPER_MAX_PIXELS, min_pixels: int = MIN_PIXELS):
        """``image`` fitted to the paper's pixel range on this family's grid (``images.fit_pixels``)."""
        return fit_pixels(image, max_pixels, min_pixels, factor=self.factor)

    def sized(self, image, sizing: str = "paper"):
        """``image`` as the model sees it: ``fit`` (paper) or the official script's sizing on this grid."""
        from .images import SIZINGS

        if sizing not in SIZINGS:
            raise ValueError(f"sizing {sizing!r}: choose one of {', '.join(SIZINGS)}")
        return official_size(image, self.factor) if sizing == "official" else self.fit(image)

    def mark(self, *objects) -> None:
        """Record this family on processors/tokenizers/configs (``model_family`` reads the mark)."""
        for obj in objects:
            setattr(obj, FAMILY_ATTR, self.name)


MODEL_FAMILIES: dict[str, ModelFamily] = {}


def register_family(family: ModelFamily, exist_ok: bool = False) -> ModelFamily:
    """Add ``family`` to the registry (a second family of the same name is refused unless ``exist_ok``)."""
    if family.name in MODEL_FAMILIES and not exist_ok:
        raise ValueError(f"model family {family.name!r} is registered already")
    taken = {t: f.name for f in MODEL_FAMILIES.values() if f.name != family.name for t in f.model_types}
    clash = [t for t in family.model_types if t in taken]
    if clash:
        raise ValueError(f"model type {clash[0]!r} belongs to family {taken[clash[0]]!r} already")
    MODEL_FAMILIES[family.name] = family
    return family


QWEN2_5_VL = register_family(ModelFamily("qwen2_5_vl", ("qwen2_5_vl",), processor=image_only_processor,
                                         tiny=tiny_model))
register_family(ModelFamily("qwen2_vl", ("qwen2_vl",), processor=image_only_processor))
DEFAULT_FAMILY = QWEN2_5_VL.name  # a processor or tokenizer that carries no mark (the tiny models': Qwen2.5-VL)


def get_family(name: str) -> ModelFamily:
    """The registered family ``name`` (an error lists the registered ones)."""
    if name not in MODEL_FAMILIES:
        raise UnknownFamily(f"model family {name!r} is not registered; registered: {', '.join(MODEL_FAMILIES)} "
                            f"(models.family.register_family adds one)")
    return MODEL_FAMILIES[name]


def model_family(obj) -> ModelFamily:
    """The family of a model, config, processor or tokenizer: its ``unimumer_family`` mark, else its config's
    ``model_type``; an object with neither (an unmarked processor or tokenizer) is ``DEFAULT_FAMILY``."""
    config = getattr(obj, "config", obj)
    name = getattr(obj, FAMILY_ATTR, None) or getattr(config, FAMILY_ATTR, None)
    if name:
        return get_family(name)
    model_type = getattr(config, "model_type", None)
    if not model_type:
        return get_family(DEFAULT_FAMILY)
    found = [f for f in MODEL_FAMILIES.values() if model_type in f.model_types]
    if not found:
        raise UnknownFamily(f"model type {model_type!r}: no registered model family covers it (registered: "
                            f"{', '.join(MODEL_FAMILIES)}); models.family.register_family adds one")
    return found[0]


def checkpoint_family(path_or_id) -> ModelFamily:
    """The family of a checkpoint folder or hub id, from its ``config.json``."""
    from transformers import PretrainedConfig

    config, _ = PretrainedConfig.get_config_dict(str(path_or_id))
    if config.get(FAMILY_ATTR):
        return get_family(config[FAMILY_ATTR])
    return model_family(type("Config", (), {"model_type": config.get("model_type")})())
