"""The LightningModule that trains a pure latentcam model (PyTorch-VAE's split: the
``nn.Module`` knows no loss, this module knows no architecture).

Objectives, per ``ModelConfig.kind`` (terms from :mod:`latentcam.training.losses`):

- vae / cvae: ``recon_weight * recon + w(step) * KL``, recon = summed MSE or BCE, KL summed
  over units (the negative ELBO per image, Kingma & Welling 2014), ``w`` the linear warm-up
  to ``beta`` (Bowman et al. 2016; beta-VAE, Higgins et al. 2017). The CVAE gets the batch's
  40 attributes as its condition.
- segvae: ``seg_weight * seg_loss(parts or binary mask) + w(step) * KL`` (+ the image term
  when ``model.seg_recon_image``). ``beta = 0`` reproduces the paper's code, whose
  segmentation "VAE" has no KL term.
- any kind, when ``train.attention_weight > 0``: ``+ attention_weight * overlap``, the mean
  soft IoU between the Grad-CAM maps (at ``train.attention_layer``) of pairs of
  ``train.attention_units`` units drawn at random each step (maps ``|sum_c alpha_c A_c|``
  by default, ``train.attention_post``): Liu et al. (CVPR 2020)'s
  attention-disentanglement loss (:func:`latentcam.training.losses.attention_overlap`). It is
  a training-only term: ``val/loss`` stays the plain objective.

Validation (per epoch, torchmetrics, synchronised across DDP processes): ``val/loss``
(full ``beta``, no warm-up; monitored for ``best.ckpt``), ``val/kl`` (nats per image),
``val/active_units`` (units whose mean KL exceeds :data:`ACTIVE_KL_THRESHOLD`), the
per-unit KL vector; with an image output ``val/mse`` (per pixel), ``val/psnr`` (of the
pooled MSE, data range 1) and ``val/ssim`` (Wang et al. 2004, 11x11 Gaussian window);
for segvae ``val/iou/<class>``, ``val/miou`` (mean over classes present in the prediction
or the target) and ``val/iou_binary`` (IoU of the paper's binary mask derived from the
prediction: every part except background and skin).

A NaN/Inf loss raises :class:`TrainingDivergedError` naming the step, the term and the
likely cause; nothing is saved after it, so the last good checkpoint stays.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, NamedTuple

import lightning.pytorch as pl
import torch
from torchmetrics import MeanMetric, MeanSquaredError, Metric, MetricCollection
from torchmetrics.classification import BinaryJaccardIndex, MulticlassJaccardIndex
from torchmetrics.image import PeakSignalNoiseRatio, StructuralSimilarityIndexMeasure

from latentcam.checkpoint import CHECKPOINT_KEY, checkpoint_payload
from latentcam.config import RunConfig
from latentcam.data.classes import PART_NAMES
from latentcam.errors import ConfigError, InputError
from latentcam.models.base import VAEOutput, resolve_layer
from latentcam.models.protocol import has_image_output, has_seg_output, is_conditional
from latentcam.models.registry import build_model, capabilities_of
from latentcam.models.segvae import predicted_labels
from latentcam.training import losses
from latentcam.training.callbacks import TrainingDivergedError

#: A latent unit is "active" when its KL, averaged over the validation images, exceeds
#: this many nats (the threshold Burda et al. 2016 put on their activity statistic).
ACTIVE_KL_THRESHOLD = 0.01

#: Checkpoint entry holding the random generators' states (see ``on_save_checkpoint``).
RNG_KEY = "latentcam_rng"

#: Class names of the binary target (the paper's mask) in per-class IoU keys.
BINARY_CLASS_NAMES = ("not_mask", "mask")

#: First part id of the paper's binary mask (0 background and 1 skin are excluded).
FIRST_MASK_ID = 2


def seg_target_is_binary(cfg: RunConfig) -> bool:
    """Whether a segvae learns the paper's binary mask (one logit) rather than 19 parts.

    Raises:
        ConfigError: ``data.target = binary`` with ``model.seg_classes = 19``.
    """
    classes = capabilities_of(cfg.model).seg_classes
    binary = classes == 1
    if classes and cfg.data.target == "binary" and not binary:
        raise ConfigError(
            "config key 'data.target' is 'binary' but model.seg_classes is "
            f"{classes}; set model.seg_classes=1 for the binary mask, or "
            "data.target=parts for 19-class parsing"
        )
    return binary


class LossTerms(NamedTuple):
    """The objective and its parts, each a float32 scalar tensor (0 when absent)."""

    total: torch.Tensor
    recon: torch.Tensor
    seg: torch.Tensor
    kl: torch.Tensor


class UnitMean(Metric):
    """Mean over images of a per-unit quantity (B, K) -> (K,), summed across processes."""

    full_state_update = False
    total: torch.Tensor
    count: torch.Tensor

    def __init__(self, num_units: int, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.add_state("total", default=torch.zeros(num_units), dist_reduce_fx="sum")
        self.add_state("count", default=torch.zeros(()), dist_reduce_fx="sum")

    def update(self, values: torch.Tensor) -> None:  # values: (B, K)
        self.total += values.detach().float().sum(0)
        self.count += values.shape[0]

    def compute(self) -> torch.Tensor:
        return self.total / self.count.clamp_min(1)


def _as_float(out: VAEOutput) -> VAEOutput:
    """Outputs in float32 (losses and metrics run outside autocast)."""
    recon, mu, logvar, z, seg_logits = out
    return VAEOutput(
        recon.float() if recon is not None else None,
        mu.float(),
        logvar.float(),
        z.float(),
        seg_logits.float() if seg_logits is not None else None,
    )


class LatentcamModule(pl.LightningModule):
    """Trains ``build_model(cfg.model)`` with the objective of its kind.

    Batches are dicts from :class:`~latentcam.training.datamodule.FaceDataModule`:
    ``image`` (B, 3, H, W) float in [0, 1]; ``attrs`` (B, 40) float in {0, 1} (cvae);
    ``parts`` (B, H, W) int64 class ids, or the binary mask in {0, 1} (segvae).

    Args:
        cfg: the resolved run config.
        attr_means: (40,) mean training attributes, stored in checkpoints for sampling.
    """

    def __init__(self, cfg: RunConfig, attr_means: list[float] | None = None) -> None:
        super().__init__()
        self.cfg = cfg
        self.attr_means = attr_means
        self.model = build_model(cfg.model)
        self.kind = cfg.model.kind  # chooses the loss (loss_terms), nothing else
        self.binary_target = seg_target_is_binary(cfg)
        self.has_image = has_image_output(self.model)
        num_units = self.model.latent_dim  # width of mu (K * s * s for a spatial latent)

        self.val_loss = MeanMetric()
        self.val_kl = MeanMetric()
        self.val_kl_unit = UnitMean(num_units)
        self.image_metrics: MetricCollection | None = None
        if self.has_image:
            self.image_metrics = MetricCollection(
                {
                    "mse": MeanSquaredError(),
                    "psnr": PeakSignalNoiseRatio(data_range=1.0),
                    "ssim": StructuralSimilarityIndexMeasure(data_range=1.0),
                },
                compute_groups=False,
            )
        self.class_names: tuple[str, ...] = ()
        self.val_iou: MulticlassJaccardIndex | None = None
        self.val_iou_binary: BinaryJaccardIndex | None = None
        if has_seg_output(self.model):
            self.class_names = BINARY_CLASS_NAMES if self.binary_target else PART_NAMES
            self.val_iou = MulticlassJaccardIndex(
                num_classes=len(self.class_names), average="none", zero_division=math.nan
            )
            self.val_iou_binary = BinaryJaccardIndex()

        #: Activations of the attention layer, captured during training forwards only.
        self._attention_layer = ""
        self._features: torch.Tensor | None = None
        self._capture = False
        if cfg.train.attention_weight > 0:
            self._attention_layer = self._hook_attention_layer(cfg.train.attention_layer)

        #: Results of the latest validation epoch (what metrics.json reports).
        self.last_val: dict[str, float] = {}
        self.last_val_kl_per_unit: list[float] = []
        self.last_val_iou_per_class: dict[str, float] = {}

    def _hook_attention_layer(self, name: str) -> str:
        """Hook the layer whose maps the attention term penalises; returns its name."""
        try:
            layer_name, layer = resolve_layer(self.model, name or None)
        except InputError as err:
            raise ConfigError(f"config key 'train.attention_layer': {err}") from None

        def keep(_module: torch.nn.Module, _inputs: Any, output: torch.Tensor) -> None:
            if self._capture:
                self._features = output

        layer.register_forward_hook(keep)
        return layer_name

    def attention_term(self, out: VAEOutput) -> torch.Tensor:
        """Soft IoU between the attention maps of random pairs of units (captured forward)."""
        assert self._features is not None, "the attention layer ran in this forward"
        K = out.mu.shape[1]
        T = min(self.cfg.train.attention_units, K)
        units = torch.randperm(K, device=out.mu.device)[:T]
        maps = losses.attention_maps(
            self._features, out.mu, units, post=self.cfg.train.attention_post
        )
        return losses.attention_overlap(maps)

    # -- objective ---------------------------------------------------------------------

    def forward(self, batch: dict[str, torch.Tensor]) -> VAEOutput:
        cond = batch["attrs"] if is_conditional(self.model) else None
        return self.model(batch["image"], cond)

    def loss_terms(self, batch: dict[str, torch.Tensor], out: VAEOutput, kl_w: float) -> LossTerms:
        """The objective of the model kind (float32, computed outside autocast)."""
        tcfg = self.cfg.train
        zero = out.mu.new_zeros((), dtype=torch.float32)
        kl = losses.kl_divergence(out.mu, out.logvar, reduction="sum")
        recon = zero
        if out.recon is not None:
            recon_fn = losses.recon_bce if tcfg.recon_loss == "bce" else losses.recon_mse
            recon = recon_fn(out.recon, batch["image"])
        seg = zero
        if self.kind == "segvae":
            assert out.seg_logits is not None, "a segvae returns seg_logits"
            seg = losses.seg_loss(tcfg.seg_loss, out.seg_logits, batch["parts"])
        total = tcfg.recon_weight * recon + tcfg.seg_weight * seg
        if kl_w > 0:  # a weight of 0 drops the term (0 * inf would make the loss NaN)
            total = total + kl_w * kl
        return LossTerms(total, recon, seg, kl)

    def _stop_if_diverged(
        self, loss: torch.Tensor | float, where: str, terms: dict[str, Any]
    ) -> None:
        """Raise :class:`TrainingDivergedError` when ``loss`` is NaN/Inf (in any process)."""
        finite = math.isfinite(float(loss.detach() if isinstance(loss, torch.Tensor) else loss))
        if self.trainer.world_size > 1:  # every process stops together, none waits forever
            finite = self.trainer.strategy.reduce_boolean_decision(finite, all=True)
        if finite:
            return
        details = ", ".join(
            f"{name}={float(v.detach() if isinstance(v, torch.Tensor) else v):.4g}"
            for name, v in terms.items()
        )
        folders = [getattr(cb, "dirpath", None) for cb in self.trainer.checkpoint_callbacks]
        saved = [Path(folder) / "last.ckpt" for folder in folders if folder]
        ckpt = next((str(p) for p in saved if p.is_file()), "none yet")
        lr = self.cfg.train.lr
        raise TrainingDivergedError(
            f"training diverged at step {self.global_step} ({where}): the loss is not finite "
            f"({details}). Likely causes: a learning rate too high (train.lr={lr:g}; try "
            f"train.lr={lr / 10:g} or set train.grad_clip=1.0), or bad input (NaN/Inf pixels "
            f"or labels in the data). The last good checkpoint is kept: {ckpt}"
        )

    def training_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> torch.Tensor:
        tcfg = self.cfg.train
        attend = tcfg.attention_weight > 0
        self._capture = attend
        try:
            out = self(batch)
        finally:
            self._capture = False
        kl_w = losses.kl_weight(self.global_step, tcfg.beta, tcfg.kl_warmup_steps)
        with torch.autocast(self.device.type, enabled=False):
            terms = self.loss_terms(batch, _as_float(out), kl_w)
            total = terms.total
            if attend:
                overlap = self.attention_term(out)
                self._features = None
                total = total + tcfg.attention_weight * overlap
        self._stop_if_diverged(total, "training", terms._asdict())
        batch_size = batch["image"].shape[0]
        if attend:
            self.log("train/attention_overlap", overlap, batch_size=batch_size)
        self.log("train/loss", total, prog_bar=True, batch_size=batch_size)
        self.log("train/kl", terms.kl, batch_size=batch_size)
        if self.has_image:
            self.log("train/recon", terms.recon, batch_size=batch_size)
        if has_seg_output(self.model):
            self.log("train/seg", terms.seg, batch_size=batch_size)
        self.log("train/kl_weight", kl_w, batch_size=batch_size)
        return total

    def configure_optimizers(self) -> Any:
        """Adam, with ``train.lr_schedule`` stepped after every optimiser step.

        onecycle (Smith & Topin 2019): ``torch.optim.lr_scheduler.OneCycleLR`` over the
        run's steps (``trainer.estimated_stepping_batches``: ``train.max_steps``, else the
        epochs), a cosine warm-up over ``train.warmup_fraction`` of them from lr / 25 to lr,
        then cosine annealing to lr / 2.5e5; Adam's betas are left alone (no momentum cycling).
        """
        tcfg = self.cfg.train
        optimiser = torch.optim.Adam(
            self.model.parameters(), lr=tcfg.lr, weight_decay=tcfg.weight_decay
        )
        if tcfg.lr_schedule == "constant":
            return optimiser
        total = self.trainer.estimated_stepping_batches
        if not math.isfinite(total) or total < 1:
            raise ConfigError(
                "train.lr_schedule=onecycle needs a step bound: set train.max_steps or "
                "train.epochs (train.max_minutes alone does not say how long the schedule is)"
            )
        schedule = torch.optim.lr_scheduler.OneCycleLR(
            optimiser,
            max_lr=tcfg.lr,
            total_steps=int(total),
            pct_start=tcfg.warmup_fraction,
            cycle_momentum=False,
        )
        return {"optimizer": optimiser, "lr_scheduler": {"scheduler": schedule, "interval": "step"}}

    def setup(self, stage: str) -> None:
        datamodule = getattr(self.trainer, "datamodule", None)
        if self.attr_means is None and datamodule is not None:
            self.attr_means = getattr(datamodule, "attr_means", None)

    # -- validation --------------------------------------------------------------------

    def validation_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> None:
        out = self(batch)
        with torch.autocast(self.device.type, enabled=False):
            out = _as_float(out)
            terms = self.loss_terms(batch, out, self.cfg.train.beta)
            batch_size = batch["image"].shape[0]
            self.val_loss.update(terms.total, weight=batch_size)
            self.val_kl.update(terms.kl, weight=batch_size)
            self.val_kl_unit.update(losses.kl_divergence(out.mu, out.logvar, reduction="none"))
            if self.image_metrics is not None and out.recon is not None:
                self.image_metrics.update(out.recon.clamp(0.0, 1.0), batch["image"])
            if self.val_iou is not None and self.val_iou_binary is not None:
                assert out.seg_logits is not None
                target = batch["parts"]
                pred = predicted_labels(out.seg_logits)  # (B, H, W) int64
                self.val_iou.update(pred, target)
                if self.binary_target:
                    self.val_iou_binary.update(pred, target)
                else:
                    self.val_iou_binary.update(
                        (pred >= FIRST_MASK_ID).long(), (target >= FIRST_MASK_ID).long()
                    )

    def on_validation_epoch_end(self) -> None:
        values: dict[str, float] = {
            "val/loss": float(self.val_loss.compute()),
            "val/kl": float(self.val_kl.compute()),
        }
        kl_unit = self.val_kl_unit.compute()
        values["val/active_units"] = float((kl_unit > ACTIVE_KL_THRESHOLD).sum())
        if self.image_metrics is not None:
            for name, value in self.image_metrics.compute().items():
                values[f"val/{name}"] = float(value)
            self.image_metrics.reset()
        iou_per_class: dict[str, float] = {}
        if self.val_iou is not None and self.val_iou_binary is not None:
            ious = self.val_iou.compute()
            iou_per_class = {n: float(v) for n, v in zip(self.class_names, ious, strict=True)}
            values["val/miou"] = float(torch.nanmean(ious))
            values["val/iou_binary"] = float(self.val_iou_binary.compute())
            for name, value in iou_per_class.items():
                if not math.isnan(value):
                    values[f"val/iou/{name}"] = value
            self.val_iou.reset()
            self.val_iou_binary.reset()
        self.val_loss.reset()
        self.val_kl.reset()
        self.val_kl_unit.reset()

        self._stop_if_diverged(values["val/loss"], "validation", {"val/loss": values["val/loss"]})
        self.log_dict(values, sync_dist=True)  # equal on every process already: a no-op mean
        if not self.trainer.sanity_checking:
            self.last_val = values
            self.last_val_kl_per_unit = [float(v) for v in kl_unit]
            self.last_val_iou_per_class = iou_per_class

    # -- checkpoints -------------------------------------------------------------------

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        checkpoint[CHECKPOINT_KEY] = checkpoint_payload(self.cfg, self.attr_means)
        # the generator that draws z's noise: a resumed run then draws what an
        # uninterrupted one would (Lightning does not save it)
        checkpoint[RNG_KEY] = {"cpu": torch.get_rng_state()}
        if self.device.type == "cuda":
            checkpoint[RNG_KEY]["cuda"] = torch.cuda.get_rng_state(self.device)

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        states = checkpoint.get(RNG_KEY)
        if not states:  # written before the state was saved: resume with the seeded state
            return
        torch.set_rng_state(states["cpu"])
        if "cuda" in states and self.device.type == "cuda":
            torch.cuda.set_rng_state(states["cuda"], self.device)
