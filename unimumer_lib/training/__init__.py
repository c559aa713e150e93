"""From task datasets to a trained model: recipes and presets as data (``sftconfig``), task files as TRL datasets
(``sftdata``), the TRL SFT run (``train``, ``callbacks``, ``saving``) and its folder (``runfolder``), the ``train``
command and multi-GPU launch (``launch``), and the CPU bases' pretraining (``pretrain``, its sample stream ``stream``
and model cards ``cards``).
"""
