from pathlib import Path

import pytest

from latentcam.config import RunConfig, load_config, to_dict, to_yaml
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
