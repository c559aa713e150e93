"""From a model and images to prediction files: recognition with transformers or vLLM (``infer``), the resume protocol
of a prediction file (``resume``) and data-parallel runs over several GPUs (``shards``).
"""
