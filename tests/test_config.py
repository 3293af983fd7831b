import json
from pathlib import Path

import pytest
import yaml

from mrenhance.config import (
    GanConfig,
    Recipe,
    ScheduleConfig,
    TrainConfig,
    list_recipes,
    load_recipe,
    parse_override,
)
from mrenhance.errors import ConfigError

MINIMAL = {"name": "tiny", "task": "sr_t1", "model": {"name": "mdcsrn-b4u4"}}

RECIPE_YAML = """\
name: tiny-sr
task: sr_t1
paper: "Chen et al. 2018"
model: {name: mdcsrn-b4u4, growth: 16}
data: {files: [a.nii.gz], factors: [2, 2, 1]}
train:
  steps: 20
  lr: 1e-4            # YAML 1.1 would read this as the string '1e-4'
  betas: [0.9, 0.99]
  patch_size: [16, 16, 8]
  lr_schedule: {name: step, step_size: 10, gamma: 0.5}
gan:
  critic: {name: wgan-critic3d}
  lr: 5e-6
infer: {patch_size: 64, overlap: 6, blend: crop, margin: 3}
"""


@pytest.fixture
def recipe_file(tmp_path: Path) -> Path:
    path = tmp_path / "tiny.yaml"
    path.write_text(RECIPE_YAML)
    return path


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "r.yaml"
    path.write_text(text)
    return path


def test_minimal_dict_gets_typed_defaults():
    r = load_recipe(MINIMAL)
    assert isinstance(r, Recipe)
    assert r.train == TrainConfig()
    assert r.gan is None
    assert r.train.lr_schedule == ScheduleConfig(name="constant")
    assert r.source == "<dict>"


def test_yaml_file_is_typed_and_1e_minus_4_is_a_float(recipe_file):
    assert isinstance(yaml.safe_load("lr: 1e-4")["lr"], str)  # the PyYAML quirk we handle
    r = load_recipe(recipe_file)
    assert r.source == str(recipe_file)
    assert r.train.lr == 1e-4 and isinstance(r.train.lr, float)
    assert r.train.betas == (0.9, 0.99)
    assert r.train.patch_size == [16, 16, 8]
    assert r.train.lr_schedule == ScheduleConfig(name="step", step_size=10, gamma=0.5)
    assert isinstance(r.gan, GanConfig)
    assert r.gan.lr == 5e-6 and r.gan.critic == {"name": "wgan-critic3d"}
    assert r.gan.critic_steps_per_generator_step == 7  # the paper's default (Sec. 3.2)
    assert r.model == {"name": "mdcsrn-b4u4", "growth": 16}
    assert r.infer["margin"] == 3


def test_numeric_strings_and_whole_floats_are_accepted():
    r = load_recipe({**MINIMAL, "train": {"lr": "1e-4", "steps": 5e5, "grad_clip": 1}})
    assert r.train.lr == 1e-4
    assert r.train.steps == 500000 and isinstance(r.train.steps, int)
    assert r.train.grad_clip == 1.0 and isinstance(r.train.grad_clip, float)


def test_wrong_type_names_file_and_key_path(tmp_path):
    path = _write(tmp_path, RECIPE_YAML.replace("lr: 1e-4 ", 'lr: "fast"'))
    with pytest.raises(ConfigError) as err:
        load_recipe(path)
    assert str(err.value) == f"{path}: train.lr: expected float, got str 'fast'"


@pytest.mark.parametrize(
    ("train", "message"),
    [
        ({"steps": 2.5}, "train.steps: expected int, got float 2.5"),
        ({"steps": True}, "train.steps: expected int, got bool True"),
        ({"amp": "yes"}, "train.amp: expected bool, got str 'yes'"),
        ({"betas": [0.9]}, "train.betas: expected 2 values, got 1"),
        ({"betas": [0.9, "x"]}, "train.betas[1]: expected float, got str 'x'"),
        (
            {"optimizer": "adamx"},
            "train.optimizer: expected one of 'adam', 'adamw', 'sgd', 'rmsprop', got str 'adamx'",
        ),
        ({"patch_size": "big"}, "train.patch_size: expected int or list[int], got str 'big'"),
        ({"lr_schedule": "linear2"}, "train.lr_schedule.name: expected one of 'constant'"),
        ({"lr": -1e-3}, "train.lr: must be a finite number > 0, got float -0.001"),
        ({"lr": 0}, "train.lr: must be a finite number > 0, got float 0.0"),
        ({"betas": [0.9, 1.0]}, "train.betas[1]: must be in [0, 1), got float 1.0"),
        ({"weight_decay": -0.1}, "train.weight_decay: must be >= 0, got float -0.1"),
        ({"momentum": -1}, "train.momentum: must be >= 0, got float -1.0"),
        ({"warmup_steps": -2}, "train.warmup_steps: must be >= 0, got int -2"),
        (
            {"lr_schedule": {"name": "step"}},
            "train.lr_schedule.step_size: must be > 0 for the 'step' schedule, got int 0",
        ),
        ({"lr_schedule": {"name": "step", "step_size": 5, "gamma": 2}}, "gamma: must be in"),
        ({"lr_schedule": {"name": "cosine", "min_lr": 1}}, "min_lr: must not exceed the"),
        ({"lr_schedule": {"name": "cosine", "unit": "day"}}, "unit: expected one of 'step'"),
        ({"lr_schedule": {"steps_per_epoch": -1}}, "steps_per_epoch: must be >= 0"),
        ({"checkpoint_every": 0}, "train.checkpoint_every: must be > 0, got int 0"),
        ({"batch_size": 0}, "train.batch_size: must be > 0, got int 0"),
        ({"grad_clip": 0}, "train.grad_clip: must be > 0 or null, got float 0.0"),
        ({"patch_size": [8, 8, 8, 8]}, "train.patch_size: expected 2 (2D) or 3 (3D) sizes"),
        ({"lr_schedule": {"name": "step", "gama": 0.5}}, "train.lr_schedule.gama: unknown key"),
    ],
)
def test_wrong_values_in_train(train, message):
    with pytest.raises(ConfigError) as err:
        load_recipe({**MINIMAL, "train": train})
    text = str(err.value)
    assert "\n" not in text and text.startswith("<dict>: train.")
    assert (f"<dict>: {message}" if message.startswith("train.") else message) in text


def test_bad_gan_values_and_file_named(tmp_path):
    with pytest.raises(ConfigError, match=r"^<dict>: gan.lr: must be a finite number > 0"):
        load_recipe({**MINIMAL, "gan": {"critic": {"name": "c"}, "lr": 0}})
    with pytest.raises(ConfigError, match=r"^<dict>: gan.critic_warmup_steps: must be >= 0"):
        load_recipe({**MINIMAL, "gan": {"critic": {"name": "c"}, "critic_warmup_steps": -1}})
    with pytest.raises(ConfigError, match=r"^<dict>: gan.optimizer: expected one of"):
        load_recipe({**MINIMAL, "gan": {"critic": {"name": "c"}, "optimizer": "lion"}})
    path = _write(tmp_path, RECIPE_YAML.replace("  lr: 1e-4 ", "  lr: -1e-4 "))
    with pytest.raises(ConfigError) as err:
        load_recipe(path)
    assert str(err.value) == f"{path}: train.lr: must be a finite number > 0, got float -0.0001"
    with pytest.raises(ConfigError) as err:
        load_recipe(path, ["train.lr=0"])
    assert str(err.value).startswith(f"{path} (override train.lr=0): train.lr: must be")


def test_optimiser_and_schedule_keys_are_typed():
    r = load_recipe(
        {
            **MINIMAL,
            "train": {
                "optimizer": "sgd",
                "momentum": 0.9,
                "lr_schedule": {"name": "linear", "unit": "epoch", "steps_per_epoch": 10},
            },
            "gan": {"type": "gan", "critic": {"name": "c"}, "optimizer": "adamw"},
        }
    )
    assert (r.train.optimizer, r.train.momentum) == ("sgd", 0.9)
    assert r.train.lr_schedule == ScheduleConfig(name="linear", unit="epoch", steps_per_epoch=10)
    assert (r.gan.type, r.gan.optimizer) == ("gan", "adamw")


def test_unknown_key_names_file_key_path_and_suggestion(recipe_file, tmp_path):
    path = _write(tmp_path, RECIPE_YAML.replace("  steps: 20", "  stpes: 20"))
    with pytest.raises(ConfigError) as err:
        load_recipe(path)
    msg = str(err.value)
    assert msg.startswith(f"{path}: train.stpes: unknown key (did you mean 'steps'?)")
    assert "\n" not in msg


def test_unknown_keys_at_top_level_and_in_gan():
    with pytest.raises(ConfigError, match=r"^<dict>: trian: unknown key \(did you mean 'train'"):
        load_recipe({**MINIMAL, "trian": {}})
    with pytest.raises(ConfigError, match=r"^<dict>: gan.adv_wieght: unknown key"):
        load_recipe({**MINIMAL, "gan": {"critic": {"name": "c"}, "adv_wieght": 1}})


def test_required_keys_and_named_model():
    with pytest.raises(ConfigError, match="^<dict>: task: required key missing"):
        load_recipe({"name": "x", "model": {"name": "m"}})
    with pytest.raises(ConfigError, match=r"^<dict>: model.name: expected a model name"):
        load_recipe({**MINIMAL, "model": {"blocks": 4}})
    with pytest.raises(ConfigError, match=r"^<dict>: gan.critic.name: expected a model name"):
        load_recipe({**MINIMAL, "gan": {"critic": {"depth": 3}}})


def test_untyped_sections_must_be_plain(tmp_path):
    path = _write(tmp_path, "name: a\ntask: b\nmodel: {name: m}\ndata: {when: 2020-01-02}\n")
    with pytest.raises(ConfigError, match=r"r.yaml: data.when: expected a plain value"):
        load_recipe(path)


def test_overrides_apply_in_order_and_are_typed(recipe_file):
    r = load_recipe(
        recipe_file,
        [
            "train.lr=3e-4",
            "train.steps=7",
            "train.amp=true",
            "train.lr_schedule=cosine",
            "model.growth=12",
            "data.factors=[4, 4, 1]",
            "gan.adv_weight=0.01",
            "train.steps=9",
        ],
    )
    assert r.train.lr == 3e-4
    assert r.train.steps == 9
    assert r.train.amp is True
    assert r.train.lr_schedule == ScheduleConfig(name="cosine")
    assert r.model["growth"] == 12
    assert r.data["factors"] == [4, 4, 1]
    assert r.gan.adv_weight == 0.01


def test_override_can_remove_and_create_sections():
    assert load_recipe({**MINIMAL, "gan": {"critic": {"name": "c"}}}, ["gan=null"]).gan is None
    r = load_recipe(MINIMAL, ["gan.critic.name=wgan-critic3d", "infer.blend=gaussian"])
    assert r.gan == GanConfig(critic={"name": "wgan-critic3d"})
    assert r.infer == {"blend": "gaussian"}


def test_the_unused_evaluate_section_is_refused():
    with pytest.raises(ConfigError, match="evaluate"):
        load_recipe({**MINIMAL, "evaluate": {"region": "test"}})


def test_bad_overrides_say_which_override(recipe_file):
    with pytest.raises(ConfigError) as err:
        load_recipe(recipe_file, ["train.lr=fast"])
    assert str(err.value) == (
        f"{recipe_file} (override train.lr=fast): train.lr: expected float, got str 'fast'"
    )
    with pytest.raises(ConfigError, match="expected KEY.PATH=VALUE"):
        load_recipe(recipe_file, ["train.lr"])
    with pytest.raises(ConfigError, match=r"train.lr: is a float, not a mapping"):
        load_recipe(recipe_file, ["train.lr.x=1"])
    with pytest.raises(ConfigError, match="train.lrr: unknown key"):
        load_recipe(recipe_file, ["train.lrr=1"])


def test_parse_override_reads_yaml_values():
    assert parse_override("a.b=1e-4") == (["a", "b"], 1e-4)
    assert parse_override("a=[1, 2]") == (["a"], [1, 2])
    assert parse_override("a=x=y") == (["a"], "x=y")
    assert parse_override("a=") == (["a"], None)


def test_to_dict_is_json_and_round_trips(recipe_file):
    r = load_recipe(recipe_file)
    d = r.to_dict()
    assert json.loads(json.dumps(d)) == d
    assert d["train"]["betas"] == [0.9, 0.99]
    assert "source" not in d
    assert load_recipe(d) == r


def test_missing_file_and_yaml_errors(tmp_path):
    with pytest.raises(ConfigError, match="nope.yaml: recipe file not found"):
        load_recipe(tmp_path / "nope.yaml")
    bad = _write(tmp_path, "name: [unclosed\n")
    with pytest.raises(ConfigError, match=r"r.yaml: YAML error"):
        load_recipe(bad)
    top = _write(tmp_path, "- a\n- b\n")
    with pytest.raises(ConfigError, match="expected a mapping at the top level, got list"):
        load_recipe(top)


@pytest.mark.parametrize("name", list_recipes() or ["<none shipped>"])
def test_shipped_recipes_load(name):
    if name == "<none shipped>":
        pytest.skip("no recipes shipped yet")
    r = load_recipe(name)
    assert r.name and r.task and r.model["name"]
    json.dumps(r.to_dict())


@pytest.mark.parametrize("name", list_recipes())
def test_a_shipped_recipes_steps_name_their_source(name):
    """train.steps is the paper's count (or says why not), and the YAML says where from."""
    from mrenhance.config import recipe_path

    lines = Path(recipe_path(name)).read_text().splitlines()
    i = next(k for k, ln in enumerate(lines) if ln.strip().startswith("steps:"))
    comment = lines[i].partition("#")[2]
    assert "Sec." in comment or "choice" in comment, lines[i]


@pytest.mark.parametrize("name", ["dsc_stunet", "dsc_hess"])
def test_dsc_steps_are_the_papers_200_epochs_of_this_data(name):
    r = load_recipe(name)
    d, strip = r.data, r.train.patch_size[0]
    strips = (
        d["subjects"]["train"]
        * d["slices"]
        * ((d["slice_size"] - strip) // d["strip_stride"] + 1)
        * len(d["doses"])
    )
    assert r.train.steps == 200 * strips // r.train.batch_size  # Sec. 3: 200 epochs


@pytest.mark.parametrize("name", list_recipes())
def test_a_shipped_recipe_passes_the_checks_made_before_training(name):
    """``mrenhance train NAME`` must not refuse its own recipe (a 2D network given three
    patch sizes did, for both DSC recipes)."""
    from mrenhance.config import recipe_path
    from mrenhance.training import _check_model_patch

    path = recipe_path(name)
    _check_model_patch(load_recipe(path, []), path)
