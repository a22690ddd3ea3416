"""Training: losses (pure functions), the LightningModule, the data module and ``train()``.

- :func:`latentcam.training.train.train`: one run, from a config to a run folder.
- Its checkpoints describe themselves and are read back below this package, by
  :func:`latentcam.checkpoint.load_model` / ``load_run`` (torch only, no Lightning).

This package imports nothing itself.
"""
