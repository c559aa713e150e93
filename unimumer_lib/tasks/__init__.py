"""From records to task datasets: the registry of Uni-MuMER's tasks, their prompts and answer formats (``spec``), Error-
Driven Learning's marked formulas and correction logs (``edl``) and the LLaMA-Factory sharegpt task files built from
records (``build``).
"""
