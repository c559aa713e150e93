"""The file formats data travels in between the jobs: image/caption records and the data layouts that list them
(``records``), LLaMA-Factory's sharegpt rows (``sharegpt``), prediction files (``predictions``) and the benchmark
families the official repository evaluates on (``families``).
"""
