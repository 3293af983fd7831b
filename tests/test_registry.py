"""The model registry: names, defaults, config checking, the stamp a weights card records."""

from __future__ import annotations

import json

import numpy as np
import pytest
from torch import nn

from mrenhance.errors import ConfigError
from mrenhance.models import create_model, get_model_info, list_models, register_model, registry
from mrenhance.models.dense import MDCSRN


@pytest.fixture
def scratch_registry(monkeypatch: pytest.MonkeyPatch) -> None:
    """Registrations made by a test vanish after it (other test files list the models)."""
    monkeypatch.setattr(registry, "_REGISTRY", dict(registry._REGISTRY))


def test_four_dense_names_share_one_class_with_their_defaults() -> None:
    expected = {
        "dcsrn-b1u8": (1, 8),
        "mdcsrn-b2u4": (2, 4),
        "mdcsrn-b3u4": (3, 4),
        "mdcsrn-b4u4": (4, 4),
    }
    for name, (blocks, units) in expected.items():
        model = create_model(name)
        assert type(model) is MDCSRN
        assert (len(model.blocks), len(model.blocks[0].units)) == (blocks, units)
        info = get_model_info(name)
        assert info.family == "mdcsrn" and info.task == "sr_t1"
        assert (info.defaults["blocks"], info.defaults["units"]) == (blocks, units)


def test_unknown_name_lists_known_names() -> None:
    with pytest.raises(ConfigError, match="mdcsrn-b4u4") as err:
        create_model("mdcsrn-b9u9")
    assert "mdcsrn-b9u9" in str(err.value)
    with pytest.raises(ConfigError, match="fsrcnn3d"):
        get_model_info("nope")


def test_unknown_option_is_named() -> None:
    with pytest.raises(ConfigError, match="'growht'"):
        create_model("mdcsrn-b4u4", growht=8)


@pytest.mark.parametrize(
    ("key", "value"),
    [("growth", "16"), ("growth", 2.5), ("growth", True), ("global_residual", 1)],
)
def test_wrong_type_is_named(key: str, value: object) -> None:
    with pytest.raises(ConfigError, match=f"'{key}'"):
        create_model("mdcsrn-b2u4", **{key: value})


def test_value_rejected_by_the_network_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="spatial_dims"):
        create_model("fsrcnn3d", spatial_dims=4)
    with pytest.raises(ConfigError, match="norm"):
        create_model("wgan-critic3d", norm="group")


def test_resolved_config_is_complete_json_and_rebuilds_the_model() -> None:
    model = create_model("mdcsrn-b3u4", growth=np.int64(8))
    assert model.mrenhance_name == "mdcsrn-b3u4"
    config = json.loads(json.dumps(model.mrenhance_config))
    assert config == {
        "in_channels": 1,
        "out_channels": 1,
        "growth": 8,
        "blocks": 3,
        "units": 4,
        "spatial_dims": 3,
        "global_residual": False,
    }
    assert type(config["growth"]) is int
    again = create_model(model.mrenhance_name, **config)
    assert again.state_dict().keys() == model.state_dict().keys()


def test_list_models_and_roles() -> None:
    infos = list_models()
    names = [i.name for i in infos]
    assert names == sorted(names)
    assert {"dcsrn-b1u8", "mdcsrn-b4u4", "fsrcnn3d", "srresnet3d", "wgan-critic3d"} <= set(names)
    critics = ["srgan-discriminator2d", "vgg19-features", "wgan-critic3d"]
    assert [i.name for i in list_models(role="critic")] == critics
    assert all(i.role == "generator" for i in infos if i.name not in critics)
    assert all(i.paper and i.description for i in infos)


def test_returned_info_cannot_change_the_registry() -> None:
    get_model_info("mdcsrn-b4u4").defaults["blocks"] = 99
    assert get_model_info("mdcsrn-b4u4").defaults["blocks"] == 4
    assert hash(get_model_info("fsrcnn3d"))  # frozen and hashable despite the dict field


@pytest.mark.usefixtures("scratch_registry")
def test_register_a_factory_and_check_its_hints() -> None:
    def tiny(width: int = 2, act: str | None = None) -> nn.Module:
        return nn.Conv3d(1, width, 1)

    register_model(
        "test-tiny",
        family="test",
        task="none",
        spatial_dims=3,
        in_channels=1,
        out_channels=2,
        description="test",
        paper="none",
        width=3,
    )(tiny)
    model = create_model("test-tiny")
    assert model.out_channels == 3
    assert model.mrenhance_config == {"width": 3, "act": None}
    assert create_model("test-tiny", act="relu").mrenhance_config["act"] == "relu"
    with pytest.raises(ConfigError, match="'act'"):
        create_model("test-tiny", act=3)


@pytest.mark.usefixtures("scratch_registry")
def test_registration_mistakes_fail_at_import_time() -> None:
    with pytest.raises(ValueError, match="not arguments"):
        register_model(
            "test-bad",
            family="t",
            task="t",
            spatial_dims=3,
            in_channels=1,
            out_channels=1,
            description="",
            paper="",
            nonsense=1,
        )(MDCSRN)
    with pytest.raises(ValueError, match="already registered"):
        register_model(
            "mdcsrn-b4u4",
            family="t",
            task="t",
            spatial_dims=3,
            in_channels=1,
            out_channels=1,
            description="",
            paper="",
        )(lambda: nn.Identity())
    with pytest.raises(ValueError, match="role"):
        register_model(
            "test-role",
            family="t",
            task="t",
            spatial_dims=3,
            in_channels=1,
            out_channels=1,
            description="",
            paper="",
            role="judge",
        )


def test_scratch_registrations_do_not_leak() -> None:
    assert "test-tiny" not in {i.name for i in list_models()}
