"""Training: losses (pure functions), the LightningModule, the data module, ``train()`` and
self-describing checkpoints.

- :func:`latentcam.training.train.train`: one run, from a config to a run folder.
- :func:`latentcam.training.checkpoint.load_model` / ``load_run``: a trained model from a
  ``.ckpt`` or a run folder, with nothing else (``latentcam.load_model`` for short).

This package imports nothing itself, so that ``latentcam.training.checkpoint`` (torch only)
loads without Lightning.
"""
