from pathlib import Path

import pytest

from latentcam.config import (
    CVAEConfig,
    ModelConfig,
    RunConfig,
    SegVAEConfig,
    VAEConfig,
    load_config,
    model_config,
    to_dict,
    to_yaml,
)
from latentcam.errors import ConfigError


def test_defaults_are_the_paper_like_vae() -> None:
    cfg = load_config()
    assert isinstance(cfg, RunConfig)
    assert (cfg.model.kind, cfg.model.image_size, cfg.model.latent_dim) == ("vae", 64, 100)


def test_files_then_overrides_win_in_order(tmp_path: Path) -> None:
    f = tmp_path / "a.yaml"
    f.write_text("model:\n  latent_dim: 15\n  image_size: 128\ntrain:\n  lr: 0.01\n")
    cfg = load_config([f], ["model.latent_dim=5"])
    assert cfg.model.latent_dim == 5
    assert cfg.model.image_size == 128
    assert cfg.train.lr == pytest.approx(0.01)


def test_round_trip_through_yaml_and_dict(tmp_path: Path) -> None:
    cfg = load_config(overrides=["model.kind=segvae", "model.seg_classes=19"])
    f = tmp_path / "c.yaml"
    f.write_text(to_yaml(cfg))
    assert load_config([f]) == cfg
    assert load_config(base=to_dict(cfg)) == cfg


def test_each_kind_has_its_own_config_with_the_shared_fields_inherited(tmp_path: Path) -> None:
    vae, cvae, seg = (load_config(overrides=[f"model.kind={k}"]).model for k in KINDS)
    assert (type(vae), type(cvae), type(seg)) == (VAEConfig, CVAEConfig, SegVAEConfig)
    assert all(isinstance(m, ModelConfig) for m in (vae, cvae, seg))
    assert (cvae.cond_dim, seg.seg_classes, seg.seg_recon_image) == (40, 1, False)
    assert not hasattr(vae, "cond_dim") and not hasattr(vae, "seg_classes")
    assert set(to_dict(load_config())["model"]) == {f for f in vars(ModelConfig()) if f[0] != "_"}
    assert "cond_dim" not in to_yaml(load_config()) and "cond_dim: 40" in to_yaml(
        load_config(overrides=["model.kind=cvae"])
    )
    # the last source to set the kind picks the class, whatever the order of the other keys
    f = tmp_path / "seg.yaml"
    f.write_text("model:\n  seg_classes: 19\n")
    cfg = load_config([f], ["model.kind=segvae"])
    assert isinstance(cfg.model, SegVAEConfig) and cfg.model.seg_classes == 19
    assert model_config("cvae", cond_dim=5) == CVAEConfig(cond_dim=5)


def test_a_key_of_another_kind_names_the_kind_it_belongs_to(tmp_path: Path) -> None:
    with pytest.raises(
        ConfigError,
        match=r"'model.cond_dim' in the command line belongs to cvae models, but model.kind is "
        r"'vae'; set model.kind=cvae",
    ):
        load_config(overrides=["model.cond_dim=3"])
    f = tmp_path / "c.yaml"
    f.write_text("model:\n  kind: segvae\n  cond_dim: 3\n")
    with pytest.raises(ConfigError, match=rf"'model.cond_dim' in {f} belongs to cvae"):
        load_config([f])
    with pytest.raises(ConfigError, match="seg_classes' in the call belongs to segvae"):
        model_config("vae", seg_classes=19)
    with pytest.raises(ConfigError, match="a ModelConfig cannot hold model.kind 'cvae'"):
        ModelConfig(kind="cvae")
    with pytest.raises(ConfigError, match="'model.seg_classes' must be 1 .* or 19"):
        load_config(overrides=["model.kind=segvae", "model.seg_classes=5"])


def test_a_flat_config_saved_by_an_older_version_still_loads() -> None:
    """Checkpoints written before configs were per kind hold every kind's model fields."""
    flat = to_dict(load_config(overrides=["model.kind=cvae", "model.cond_dim=7"]))
    flat["model"].update(seg_classes=1, seg_recon_image=False)
    cfg = load_config(base=flat)
    assert isinstance(cfg.model, CVAEConfig) and cfg.model.cond_dim == 7
    flat["model"].update(kind="vae")
    assert type(load_config(base=flat).model) is VAEConfig
    flat["model"]["no_such_key"] = 1  # not a field of any kind: still an error
    with pytest.raises(ConfigError, match="model.no_such_key"):
        load_config(base=flat)


KINDS = ("vae", "cvae", "segvae")


@pytest.mark.parametrize(
    ("override", "needle"),
    [
        ("model.latnt_dim=5", "model.latnt_dim"),
        ("trian.lr=1", "trian"),
        ("model.latent_dim=abc", "model.latent_dim"),
        ("model.kind=gan", "model.kind"),
        ("model.image_size=0", "model.image_size"),
        ("model.image_size=100", "power of two"),
        ("data.batch_size=-1", "data.batch_size"),
        ("data.num_workers=-2", "data.num_workers"),
    ],
)
def test_bad_keys_and_values_name_the_key(override: str, needle: str) -> None:
    with pytest.raises(ConfigError, match=needle):
        load_config(overrides=[override])


def test_unknown_key_in_file_names_the_file(tmp_path: Path) -> None:
    f = tmp_path / "bad.yaml"
    f.write_text("model:\n  latent_dims: 3\n")
    with pytest.raises(ConfigError, match=r"model\.latent_dims.*bad\.yaml"):
        load_config([f])


def test_missing_file_and_malformed_override(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not found"):
        load_config([tmp_path / "nope.yaml"])
    with pytest.raises(ConfigError, match="key=value"):
        load_config(overrides=["model.latent_dim"])


def test_packaged_recipes_load_by_name() -> None:
    from latentcam.config import recipe_names

    names = recipe_names()
    assert {"vae64", "cvae128", "segvae64", "segvae128", "segvae256", "tiny"} <= set(names)
    for name in names:
        cfg = load_config([name])
        assert cfg.model.kind in ("vae", "cvae", "segvae")
    assert load_config(["segvae64"]).model.latent_dim == 5
    with pytest.raises(ConfigError, match="recipe name"):
        load_config(["no_such_recipe"])


def test_choices_match_what_the_code_accepts() -> None:
    # the config's allowed values are the names the code dispatches on (no import cycle in
    # config.py, so the lists are written twice; this keeps them equal)
    from latentcam.config import _CHOICES
    from latentcam.models.blocks import ACTIVATIONS, DECODERS, NORMS
    from latentcam.training.losses import SEG_LOSSES

    assert _CHOICES["train.seg_loss"] == SEG_LOSSES
    assert set(_CHOICES["model.norm"]) == set(NORMS)
    assert set(_CHOICES["model.activation"]) == set(ACTIVATIONS)
    assert set(_CHOICES["model.decoder"]) == set(DECODERS)
    cfg = load_config(["segvae64_spatial"], ["train.seg_loss=ce_lovasz"])
    assert cfg.train.seg_loss == "ce_lovasz"
