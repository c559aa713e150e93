"""The vision-language models: loading a checkpoint by shipped name, folder or hub id and saving one (``model``),
tokenizer and processor (``processor``), how an image becomes model input (``images``), the tiny offline Qwen2.5-VL
shapes and their growth (``tiny``), the model-family registry (``family``: what differs between Qwen2.5-VL, Qwen2-VL
or a family you add), and the hub-faithful fixture that stands in for Qwen2.5-VL-3B offline
(``hubfixture``).
"""
