"""Recipes: one YAML file per paper method, loaded into typed, validated dataclasses.

A recipe looks like::

    name: mdcsrn-b4u4-gan
    task: sr_t1
    paper: "Chen et al. 2018, MICCAI, arXiv:1803.01417"
    description: "mDCSRN-b4u4 with a WGAN-GP critic"
    model: {name: mdcsrn, blocks: 4, units: 4, growth: 16}   # name + model config
    data: {...}                      # task-specific; validated by the task
    train:                           # TrainConfig (Sec. 3.2: Adam 1e-4, L1, batch 2, 500k)
      steps: 500000
      lr: 1e-4
    gan:                             # GanConfig, or null for no adversarial stage
      critic: {name: srgan-critic}
    infer: {patch_size: 64, overlap: 6, blend: crop}   # a GridPlan (engine/grid.py)

:func:`load_recipe` reads a file (or a dict, or the name of a packaged recipe), applies
``"a.b.c=value"`` overrides and checks every key and type of the typed sections
(top level, ``train``, ``gan``); a problem raises :class:`~mrenhance.errors.ConfigError`
with one line naming the file and the key path, e.g.
``recipes/x.yaml: train.lr: expected float, got str 'fast'``.

PyYAML follows YAML 1.1, which reads ``1e-4`` (no dot) as a *string*; the loader here
adds the YAML 1.2 rule so such numbers are floats, and float fields also accept numeric
strings for recipes passed as dicts.
"""

from __future__ import annotations

import dataclasses
import difflib
import json
import math
import numbers
import os
import re
import reprlib
import types
import typing
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Union

import yaml

from mrenhance.errors import ConfigError

__all__ = [
    "GanConfig",
    "Recipe",
    "ScheduleConfig",
    "TrainConfig",
    "list_recipes",
    "load_recipe",
    "parse_override",
    "check_gan_values",
    "check_train_values",
    "parse_schedule",
    "recipe_path",
]

RECIPES_DIR = Path(__file__).parent / "recipes"


# --------------------------------------------------------------------------------------
# Schema
# --------------------------------------------------------------------------------------


@dataclass
class ScheduleConfig:
    """Learning-rate schedule after the linear warm-up (``engine.training.lr_at_step``).

    In YAML either a name (``lr_schedule: cosine``) or a mapping
    (``lr_schedule: {name: step, step_size: 100000, gamma: 0.5}``).

    Attributes
    ----------
    name:
        ``"constant"``; ``"cosine"`` (from ``lr`` down to ``min_lr`` at the last step);
        ``"linear"`` (straight line from ``lr`` to ``min_lr``); ``"step"`` (multiply by
        ``gamma`` every ``step_size`` units).
    step_size:
        Units (steps or epochs) between decays of the ``"step"`` schedule (> 0 for it).
    gamma:
        Decay factor of the ``"step"`` schedule, in (0, 1].
    min_lr:
        Final learning rate of the ``"cosine"`` and ``"linear"`` schedules (>= 0).
    unit:
        What the schedule counts: optimiser ``"step"`` s, or ``"epoch"`` s of
        ``steps_per_epoch`` steps (the rate then changes once per epoch).
    steps_per_epoch:
        Steps in one epoch for ``unit: epoch``; 0 means ``len(dataset) // batch_size``.
    """

    name: Literal["constant", "cosine", "linear", "step"] = "constant"
    step_size: int = 0
    gamma: float = 0.1
    min_lr: float = 0.0
    unit: Literal["step", "epoch"] = "step"
    steps_per_epoch: int = 0


OPTIMIZER_NAMES = ("adam", "adamw", "sgd", "rmsprop")


@dataclass
class TrainConfig:
    """The loop's settings (``engine.training.Trainer``) and the supervised step's.

    Defaults are the Trainer's; the paper values live in each recipe (e.g. mDCSRN
    Sec. 3.2: Adam, lr 1e-4, L1, batch 2, 500k steps).

    Attributes
    ----------
    steps: optimizer steps in all. batch_size: global batch (split over DDP ranks).
    lr, optimizer, betas, weight_decay, momentum: the optimiser (``adam``, ``adamw``,
    ``sgd``, ``rmsprop``; betas for the Adam family, momentum for SGD/RMSprop). loss: a
    name in ``mrenhance.losses.LOSSES``. lr_schedule, warmup_steps: see :class:`ScheduleConfig`
    (linear warm-up from ``lr / warmup_steps``). grad_clip: max global L2 norm, or None.
    patch_size: training patch (voxels; one int for a cube, 3 entries for a 3D patch, 2
    for 2D patches from slices: the task's data section names the slice axis). val_every,
    checkpoint_every, log_every: in steps (0 = never validate). val_metric, val_mode:
    the validation metric deciding ``best.pt`` and whether higher (``max``) is better.
    seed: of everything random in training. num_workers: DataLoader workers.
    amp: bfloat16 autocast. deterministic: ``torch.use_deterministic_algorithms``.
    minutes: a time budget: stop cleanly (checkpoint written, resumable) after the first
    step that ends past it; None = run all ``steps``.
    init_weights: a weights file (``.safetensors`` path or shipped name) the supervised
    stage starts from instead of random weights (fine-tuning); recorded in the card.
    """

    steps: int = 1000
    batch_size: int = 2
    lr: float = 1e-4
    optimizer: Literal["adam", "adamw", "sgd", "rmsprop"] = "adam"
    betas: tuple[float, float] = (0.9, 0.999)
    weight_decay: float = 0.0
    momentum: float = 0.0
    loss: str = "l1"
    lr_schedule: ScheduleConfig = field(default_factory=ScheduleConfig)
    warmup_steps: int = 0
    grad_clip: float | None = None
    patch_size: int | list[int] = 32
    val_every: int = 0
    val_metric: str = "psnr"
    val_mode: Literal["max", "min"] = "max"
    checkpoint_every: int = 1000
    log_every: int = 10
    seed: int = 0
    num_workers: int = 0
    amp: bool = False
    minutes: float | None = None
    deterministic: bool = True
    init_weights: str | None = None


@dataclass
class GanConfig:
    """Adversarial stage: a GAN step run by the one loop; defaults are mDCSRN Sec. 2.5/3.2.

    Attributes
    ----------
    type:
        The registered step (``engine.training.STEPS``): ``"wgan-gp"`` (mDCSRN's critic
        schedule) or ``"gan"`` (BCE discriminator, SRGAN style).
    critic:
        The critic network: ``name`` plus its model config (mDCSRN: SRGAN's discriminator
        with LayerNorm instead of BatchNorm, Fig. 1C).
    adv_weight:
        Weight lambda of ``-D(G(x))`` in the generator loss (Eq. 3: 0.001).
    lambda_gp:
        WGAN-GP penalty weight (10, Gulrajani et al. 2017).
    critic_warmup_steps:
        Critic-only steps before the first generator step (Sec. 3.2: 10k).
    critic_steps_per_generator_step:
        Critic steps before each generator step (Sec. 3.2: 7).
    extra_critic_every, extra_critic_steps:
        Every ``extra_critic_every`` generator steps, ``extra_critic_steps`` more critic-only
        steps (Sec. 3.2: 200 every 500, "as suggested in WGAN").
    lr, critic_lr:
        Adam learning rate of the generator and of the critic (Sec. 3.2: 5e-6 for both;
        ``critic_lr: null`` means the same as ``lr``).
    generator_steps:
        Generator steps in all (Sec. 3.2: 550k).
    betas:
        Adam betas of both networks. choice: the paper says only "Adam" and used
        TensorFlow, whose defaults are (0.9, 0.999); WGAN-GP's own setting is (0.0, 0.9).
    content_loss:
        Intensity loss of the generator; null means ``train.loss`` (Eq. 4: L1).
    init_weights:
        Weights file the generator starts from (Sec. 3.2: "we transfer the weights from
        well-trained mDCSRN in non-GAN training"); null means the supervised stage's
        weights of the same run.
    optimizer, weight_decay, momentum, lr_schedule, warmup_steps:
        The optimiser of both networks, as in ``train`` (schedule counts generator steps).
    feature_model, feature_weight, feature_loss:
        ``type: gan`` only: an optional frozen network (``name`` + config) whose features of
        the output and target are compared with ``feature_loss``, weighted by
        ``feature_weight`` (SRGAN's VGG loss, Ledig et al. 2017; DTI SRGAN paper Sec. 4).
        A model and a weight > 0 go together; either alone is refused.
    weights_name:
        Name of this stage's weights file and card; null: ``<stage-1 name>-gan``.
    """

    type: str = "wgan-gp"
    critic: dict[str, Any] = field(default_factory=dict)
    adv_weight: float = 1e-3
    lambda_gp: float = 10.0
    critic_warmup_steps: int = 10000
    critic_steps_per_generator_step: int = 7
    extra_critic_every: int = 500
    extra_critic_steps: int = 200
    lr: float = 5e-6
    critic_lr: float | None = None
    generator_steps: int = 550000
    betas: tuple[float, float] = (0.9, 0.999)
    content_loss: str | None = None
    init_weights: str | None = None
    optimizer: Literal["adam", "adamw", "sgd", "rmsprop"] = "adam"
    weight_decay: float = 0.0
    momentum: float = 0.0
    lr_schedule: ScheduleConfig = field(default_factory=ScheduleConfig)
    warmup_steps: int = 0
    feature_model: dict[str, Any] | None = None
    feature_weight: float = 0.0
    feature_loss: str = "l2"
    weights_name: str | None = None


_REQUIRED = ("name", "task", "model")


@dataclass
class Recipe:
    """A validated recipe. ``source`` names where it came from (file path or ``<dict>``)."""

    name: str
    task: str
    model: dict[str, Any]
    paper: str = ""
    description: str = ""
    data: dict[str, Any] = field(default_factory=dict)
    train: TrainConfig = field(default_factory=TrainConfig)
    gan: GanConfig | None = None
    infer: dict[str, Any] = field(default_factory=dict)
    source: str = field(default="<dict>", compare=False)

    def to_dict(self) -> dict[str, Any]:
        """The resolved recipe as plain JSON types (tuples become lists; no ``source``).

        ``load_recipe(recipe.to_dict())`` gives an equal recipe.
        """
        out = _plain(dataclasses.asdict(self))
        del out["source"]
        return out


def _plain(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


# --------------------------------------------------------------------------------------
# YAML with YAML 1.2 floats
# --------------------------------------------------------------------------------------


#: Limits of a recipe (and an override value): far above any real recipe (the shipped ones
#: are ~3 kB, ~150 nodes, depth 4), low enough that a hostile file is refused in
#: milliseconds and kilobytes. An alias bomb ("billion laughs") is a few hundred bytes
#: whose aliases expand to billions of nodes: PyYAML shares aliased nodes, so the load
#: itself is cheap, but every later walk (validation, the run's config.json) expands it.
MAX_RECIPE_BYTES = 1 << 20
MAX_YAML_DEPTH = 64
MAX_YAML_ALIASES = 1000
MAX_YAML_NODES = 100_000  # with aliases expanded
MAX_YAML_SCALAR_CHARS = 65_536


class _YamlLimit(yaml.YAMLError):
    """A recipe over one of the limits above (the message names which)."""


class _Loader(yaml.SafeLoader):
    """SafeLoader with limits (depth, aliases, expanded size, scalar length) that also
    reads ``1e-4``, ``5e5`` and ``1.0e5`` as floats (YAML 1.2)."""

    def __init__(self, stream: Any) -> None:
        super().__init__(stream)
        self._depth = 0
        self._aliases = 0

    def compose_node(self, parent: Any, index: Any) -> Any:
        if self.check_event(yaml.AliasEvent):
            self._aliases += 1
            if self._aliases > MAX_YAML_ALIASES:
                raise _YamlLimit(f"more than {MAX_YAML_ALIASES} aliases")
        self._depth += 1
        if self._depth > MAX_YAML_DEPTH:
            raise _YamlLimit(f"nested deeper than {MAX_YAML_DEPTH} levels")
        try:
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1

    def compose_scalar_node(self, anchor: Any) -> Any:
        node = super().compose_scalar_node(anchor)
        if len(node.value) > MAX_YAML_SCALAR_CHARS:
            raise _YamlLimit(
                f"a value of {len(node.value)} characters (limit {MAX_YAML_SCALAR_CHARS})"
            )
        return node


def _expanded_nodes(node: Any, memo: dict[int, int], limit: int) -> int:
    """Nodes of ``node`` with every alias expanded (memoised: linear in the file)."""
    key = id(node)
    if key in memo:
        return memo[key]
    memo[key] = limit + 1  # a node that holds itself (``&a [*a]``) expands without end
    total = 1
    if isinstance(node, yaml.SequenceNode):
        for child in node.value:
            total += _expanded_nodes(child, memo, limit)
            if total > limit:
                break
    elif isinstance(node, yaml.MappingNode):
        for k, v in node.value:
            total += _expanded_nodes(k, memo, limit) + _expanded_nodes(v, memo, limit)
            if total > limit:
                break
    memo[key] = total
    return total


_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?(?:[0-9][0-9_]*)(?:\.[0-9_]*)?[eE][-+]?[0-9]+$"),
    list("-+0123456789"),
)


def _yaml_load(text: str) -> Any:
    """YAML text to Python values within the limits above; raises yaml.YAMLError."""
    if len(text) > MAX_RECIPE_BYTES:
        raise _YamlLimit(f"{len(text)} characters, more than the limit of {MAX_RECIPE_BYTES}")
    # PyYAML's scanner does work proportional to the flow depth for every token, so
    # 5000 "[" take seconds and a megabyte of them hours: count the brackets first
    depth = deepest = 0
    for ch in re.sub(r"[^\[\]{}]", "", text):
        depth = depth + 1 if ch in "[{" else max(0, depth - 1)
        deepest = max(deepest, depth)
    if deepest > MAX_YAML_DEPTH:
        raise _YamlLimit(f"nested deeper than {MAX_YAML_DEPTH} levels")
    loader = _Loader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            return None
        if _expanded_nodes(node, {}, MAX_YAML_NODES) > MAX_YAML_NODES:
            raise _YamlLimit(
                f"more than {MAX_YAML_NODES} values once aliases are expanded (an alias bomb?)"
            )
        return loader.construct_document(node)
    finally:
        loader.dispose()


# --------------------------------------------------------------------------------------
# Loading
# --------------------------------------------------------------------------------------


def parse_schedule(
    value: str | Mapping[str, Any] | ScheduleConfig, where: str = "lr_schedule"
) -> ScheduleConfig:
    """A :class:`ScheduleConfig` from a name, a mapping of its fields, or itself.

    Raises
    ------
    ConfigError
        Unknown schedule name or field, or a field of the wrong type.
    """
    if isinstance(value, ScheduleConfig):
        return value
    return _coerce(value, ScheduleConfig, where, "<arguments>")


def list_recipes() -> list[str]:
    """Names of the recipes shipped in ``mrenhance/recipes`` (file stems), sorted."""
    if not RECIPES_DIR.is_dir():
        return []
    return sorted(p.stem for p in RECIPES_DIR.glob("*.yaml"))


def recipe_path(name_or_path: str | os.PathLike) -> Path:
    """A recipe file: an existing path as is, else a packaged recipe by name.

    Raises
    ------
    ConfigError
        Neither an existing file nor a packaged recipe name.
    """
    from mrenhance.io.atomic import check_file_name

    p = check_file_name(name_or_path)
    if os.path.isfile(p):
        return p
    if os.path.exists(p):  # a folder, FIFO or device: never opened
        raise ConfigError(f"{p}: not a regular file (a recipe is a YAML file); not read")
    packaged = RECIPES_DIR / f"{p.name.removesuffix('.yaml')}.yaml"
    if p.parent == Path(".") and os.path.isfile(packaged):
        return packaged
    known = ", ".join(list_recipes()) or "none"
    raise ConfigError(f"{p}: recipe file not found (packaged recipes: {known})")


def parse_override(text: str) -> tuple[list[str], Any]:
    """``"train.lr=3e-4"`` -> ``(["train", "lr"], 0.0003)``; the value is read as YAML."""
    key, sep, raw = text.partition("=")
    path = key.strip().split(".")
    if not sep or not all(part.strip() for part in path):
        raise ConfigError(f"override {text!r}: expected KEY.PATH=VALUE, e.g. train.lr=1e-4")
    try:
        value = _yaml_load(raw) if raw.strip() else None
    except _YamlLimit as exc:
        shown = text if len(text) <= 60 else text[:57] + "..."
        raise ConfigError(f"override {shown!r}: value refused: {exc}") from None
    except yaml.YAMLError as exc:
        raise ConfigError(
            f"override {text!r}: value is not valid YAML ({_one_line(exc)})"
        ) from None
    return [part.strip() for part in path], value


def load_recipe(
    path_or_dict: str | os.PathLike | Mapping[str, Any], overrides: Iterable[str] = ()
) -> Recipe:
    """Load, override and validate a recipe.

    Parameters
    ----------
    path_or_dict:
        A YAML file, the name of a packaged recipe (``"sr_mdcsrn"``), or a mapping with
        the same structure.
    overrides:
        ``"a.b.c=value"`` strings applied in order before validation; values are read as
        YAML (``train.steps=10`` is an int, ``train.amp=true`` a bool, ``gan=null``
        removes the adversarial stage).

    Returns
    -------
    Recipe
        With ``source`` set to the file path (or ``"<dict>"``).

    Raises
    ------
    ConfigError
        Missing file, YAML syntax error, unknown key, missing required key or a value of
        the wrong type; one line naming the file and the key path.
    """
    if isinstance(path_or_dict, Mapping):
        source = "<dict>"
        try:
            raw: Any = _deep_copy(path_or_dict)
        except RecursionError:
            raise ConfigError(f"{source}: recipe refused: nested too deeply") from None
    else:
        p = recipe_path(path_or_dict)
        source = str(p)
        try:
            if p.stat().st_size > MAX_RECIPE_BYTES:  # before reading it
                raise _YamlLimit(f"larger than the limit of {MAX_RECIPE_BYTES} bytes")
            raw = _yaml_load(p.read_text(encoding="utf-8"))
        except _YamlLimit as exc:
            raise ConfigError(f"{source}: recipe refused: {exc}") from None
        except yaml.YAMLError as exc:
            raise ConfigError(f"{source}: YAML error: {_one_line(exc)}") from None
        except RecursionError:
            raise ConfigError(f"{source}: recipe refused: nested too deeply") from None
        except (OSError, UnicodeDecodeError) as exc:
            raise ConfigError(f"{source}: cannot read recipe ({_one_line(exc)})") from None
    if not isinstance(raw, Mapping):
        raise ConfigError(f"{source}: expected a mapping at the top level, got {_tname(raw)}")
    raw = dict(raw)

    overridden: dict[tuple[str, ...], str] = {}
    for text in overrides:
        path, value = parse_override(text)
        _apply_override(raw, path, value, source, text)
        overridden[tuple(path)] = text

    try:
        return _build_recipe(raw, source)
    except ConfigError as exc:
        raise _mention_override(exc, source, overridden) from None


def _apply_override(raw: dict, path: list[str], value: Any, source: str, text: str) -> None:
    node = raw
    for i, part in enumerate(path[:-1]):
        nxt = node.get(part)
        if nxt is None:
            nxt = node[part] = {}
        if not isinstance(nxt, dict):
            where = ".".join(path[: i + 1])
            raise ConfigError(
                f"{source} (override {text}): {where}: is a {_tname(nxt)}, not a mapping"
            )
        node = nxt
    node[path[-1]] = value


def _mention_override(exc: ConfigError, source: str, overridden: dict) -> ConfigError:
    msg = str(exc)
    for path, text in overridden.items():
        prefix = f"{source}: {'.'.join(path)}"
        if msg.startswith(prefix) and msg[len(prefix) : len(prefix) + 1] in (":", ".", "["):
            return ConfigError(msg.replace(f"{source}: ", f"{source} (override {text}): ", 1))
    return exc


def _build_recipe(raw: dict, source: str) -> Recipe:
    for key in _REQUIRED:
        if raw.get(key) is None:
            raise ConfigError(f"{source}: {key}: required key missing")
    recipe = _coerce_dataclass(Recipe, raw, "", source, skip=("source",))
    for section in ("model",):
        _check_named(getattr(recipe, section), section, source)
    if recipe.gan is not None and recipe.gan.critic:
        _check_named(recipe.gan.critic, "gan.critic", source)
    if recipe.gan is not None and recipe.gan.feature_model:
        _check_named(recipe.gan.feature_model, "gan.feature_model", source)
    check_train_values(recipe.train, source)
    if recipe.gan is not None:
        check_gan_values(recipe.gan, source)
    recipe.source = source
    return recipe


def _fail(source: str, where: str, message: str, value: Any) -> None:
    raise ConfigError(f"{source}: {where}: {message}, got {_show(value)}")


def _check_optimiser(cfg: Any, where: str, source: str) -> None:
    """Values the types cannot express: positive rates, betas in [0, 1), a usable schedule."""
    if not (cfg.lr > 0 and math.isfinite(cfg.lr)):
        _fail(source, f"{where}.lr", "must be a finite number > 0", cfg.lr)
    for i, b in enumerate(cfg.betas):
        if not 0.0 <= b < 1.0:
            _fail(source, f"{where}.betas[{i}]", "must be in [0, 1)", b)
    for key in ("weight_decay", "momentum"):
        if getattr(cfg, key) < 0:
            _fail(source, f"{where}.{key}", "must be >= 0", getattr(cfg, key))
    if cfg.warmup_steps < 0:
        _fail(source, f"{where}.warmup_steps", "must be >= 0", cfg.warmup_steps)
    sched = cfg.lr_schedule
    at = f"{where}.lr_schedule"
    if sched.name == "step" and sched.step_size <= 0:
        _fail(source, f"{at}.step_size", "must be > 0 for the 'step' schedule", sched.step_size)
    if not 0.0 < sched.gamma <= 1.0:
        _fail(source, f"{at}.gamma", "must be in (0, 1]", sched.gamma)
    if sched.min_lr < 0:
        _fail(source, f"{at}.min_lr", "must be >= 0", sched.min_lr)
    if sched.name in ("cosine", "linear") and sched.min_lr > cfg.lr:
        _fail(source, f"{at}.min_lr", f"must not exceed the learning rate {cfg.lr:g}", sched.min_lr)
    if sched.steps_per_epoch < 0:
        _fail(source, f"{at}.steps_per_epoch", "must be >= 0", sched.steps_per_epoch)


def check_train_values(train: TrainConfig, source: str = "<arguments>") -> None:
    """Raise a one-line ConfigError for an out-of-range value of a ``train`` section."""
    _check_optimiser(train, "train", source)
    for key in ("val_every", "num_workers"):
        if getattr(train, key) < 0:
            _fail(source, f"train.{key}", "must be >= 0", getattr(train, key))
    for key in ("steps", "batch_size", "checkpoint_every", "log_every"):
        if getattr(train, key) <= 0:
            _fail(source, f"train.{key}", "must be > 0", getattr(train, key))
    if train.grad_clip is not None and not train.grad_clip > 0:
        _fail(source, "train.grad_clip", "must be > 0 or null", train.grad_clip)
    patch = train.patch_size
    sizes = [patch] if isinstance(patch, int) else list(patch)
    if not isinstance(patch, int) and len(sizes) not in (2, 3):
        _fail(source, "train.patch_size", "expected 2 (2D) or 3 (3D) sizes", patch)
    if min(sizes) < 1:
        _fail(source, "train.patch_size", "sizes must be >= 1", patch)


def check_gan_values(gan: GanConfig, source: str = "<arguments>") -> None:
    """Raise a one-line ConfigError for an out-of-range value of a ``gan`` section."""
    _check_optimiser(gan, "gan", source)
    if gan.critic_lr is not None and not gan.critic_lr > 0:
        _fail(source, "gan.critic_lr", "must be > 0 or null", gan.critic_lr)
    for key in (
        "adv_weight",
        "lambda_gp",
        "feature_weight",
        "critic_warmup_steps",
        "critic_steps_per_generator_step",
        "extra_critic_every",
        "extra_critic_steps",
        "generator_steps",
    ):
        if getattr(gan, key) < 0:
            _fail(source, f"gan.{key}", "must be >= 0", getattr(gan, key))
    # a feature loss is a model and a weight together, and only the BCE step has one: any
    # other combination would train silently without the loss the recipe asks for
    if gan.feature_model and gan.type != "gan":
        _fail(source, "gan.feature_model", "only gan.type gan (BCE) has a feature loss", gan.type)
    if gan.feature_model and gan.feature_weight == 0:
        _fail(
            source,
            "gan.feature_weight",
            "gan.feature_model is set: give it a weight > 0",
            gan.feature_weight,
        )
    if gan.feature_weight > 0 and not gan.feature_model:
        _fail(
            source,
            "gan.feature_weight",
            "a feature loss needs gan.feature_model ({name: vgg19-features, weights: FILE})",
            gan.feature_weight,
        )


def _check_named(cfg: dict, where: str, source: str) -> None:
    name = cfg.get("name")
    if not isinstance(name, str) or not name:
        raise ConfigError(f"{source}: {where}.name: expected a model name (str), got {_show(name)}")


# --------------------------------------------------------------------------------------
# Typed coercion
# --------------------------------------------------------------------------------------


def _coerce_dataclass(
    cls: type, raw: Any, where: str, source: str, skip: tuple[str, ...] = ()
) -> Any:
    if not isinstance(raw, Mapping):
        raise ConfigError(f"{source}: {where}: expected a mapping, got {_show(raw)}")
    hints = typing.get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls) if f.name not in skip]
    kwargs = {}
    for key, value in raw.items():
        path = f"{where}.{key}" if where else str(key)
        if key not in names:
            close = difflib.get_close_matches(str(key), names, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            allowed = ", ".join(sorted(names))
            raise ConfigError(f"{source}: {path}: unknown key{hint}; allowed: {allowed}")
        kwargs[key] = _coerce(value, hints[key], path, source)
    return cls(**kwargs)


def coerce_value(value: Any, hint: Any, where: str, source: str, *, strict: bool = False) -> Any:
    """Check ``value`` against the type ``hint`` and return it in plain Python types.

    The one type checker of the project: recipes (:func:`load_recipe`) and network options
    (:func:`mrenhance.models.create_model`) both use it. ``strict`` (network options):
    numbers must be numbers (no numeric strings) and annotations this checker does not know
    pass unchecked. Otherwise (recipes) float fields accept numeric strings, since YAML 1.1
    reads ``1e-4`` as a string. Raises ConfigError ``"<source>: <where>: expected ..."``.
    """
    return _coerce(value, hint, where, source, strict)


def _coerce(value: Any, hint: Any, where: str, source: str, strict: bool = False) -> Any:
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)

    if origin in (Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        options = [a for a in args if a is not type(None)]
        errors = []
        for option in options:
            try:
                return _coerce(value, option, where, source, strict)
            except ConfigError as exc:
                errors.append(exc)
        if len(options) == 1:
            raise errors[0]
        expected = " or ".join(_hint_name(o) for o in options)
        raise ConfigError(f"{source}: {where}: expected {expected}, got {_show(value)}")

    if dataclasses.is_dataclass(hint):
        if hint is ScheduleConfig and isinstance(value, str):
            value = {"name": value}  # shorthand: lr_schedule: cosine
        return _coerce_dataclass(hint, value, where, source)

    if hint is None or hint is type(None):
        if value is None:
            return None
        raise ConfigError(f"{source}: {where}: expected null, got {_show(value)}")

    if origin is Literal:
        if value not in args or isinstance(value, bool):
            expected = ", ".join(repr(a) for a in args)
            raise ConfigError(f"{source}: {where}: expected one of {expected}, got {_show(value)}")
        return value

    if origin in (list, tuple) or hint in (list, tuple):
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{source}: {where}: expected {_hint_name(hint)}, got {_show(value)}")
        if origin is tuple and args and args[-1] is not Ellipsis:
            if len(value) != len(args):
                raise ConfigError(
                    f"{source}: {where}: expected {len(args)} values, got {len(value)}"
                )
            return tuple(
                _coerce(v, a, f"{where}[{i}]", source, strict)
                for i, (v, a) in enumerate(zip(value, args, strict=True))
            )
        item = args[0] if args else Any
        items = [_coerce(v, item, f"{where}[{i}]", source, strict) for i, v in enumerate(value)]
        return tuple(items) if origin is tuple else items

    if origin is dict or hint is dict:
        if not isinstance(value, Mapping):
            raise ConfigError(f"{source}: {where}: expected a mapping, got {_show(value)}")
        _check_plain(value, where, source)
        return _deep_copy(value)

    if hint is Any:
        _check_plain(value, where, source)
        return _deep_copy(value)

    if hint is bool:
        if isinstance(value, bool):
            return value
        raise ConfigError(f"{source}: {where}: expected bool, got {_show(value)}")

    if hint is int:
        if isinstance(value, numbers.Integral) and not isinstance(value, bool):
            return int(value)
        number = _as_float(value, strict)
        # 5e5 is a float to YAML; accept whole numbers written that way for counts
        if number is not None and math.isfinite(number) and number == int(number):
            return int(number)
        raise ConfigError(f"{source}: {where}: expected int, got {_show(value)}")

    if hint is float:
        if strict and isinstance(value, numbers.Integral) and not isinstance(value, bool):
            return int(value)  # a network option 2 stays 2 (JSON keeps it an int)
        number = _as_float(value, strict)
        if number is not None:
            return number
        raise ConfigError(f"{source}: {where}: expected float, got {_show(value)}")

    if hint is str:
        if isinstance(value, str):
            return value
        raise ConfigError(f"{source}: {where}: expected str, got {_show(value)}")

    if strict:
        return value  # choice: network options with other annotations are not checked here
    raise TypeError(f"config schema: unsupported type {hint!r} at {where}")  # a bug here


def _as_float(value: Any, strict: bool = False) -> float | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, numbers.Real):
        return float(value)
    if isinstance(value, str) and not strict:
        try:
            return float(value.replace("_", ""))  # YAML 1.1 reads 1e-4 as a string
        except ValueError:
            return None
    return None


def _check_plain(value: Any, where: str, source: str) -> None:
    """Untyped sections must hold JSON types only, so ``to_dict`` is JSON-serialisable."""
    if isinstance(value, Mapping):
        for k, v in value.items():
            if not isinstance(k, str):
                raise ConfigError(f"{source}: {where}: keys must be strings, got {_show(k)}")
            _check_plain(v, f"{where}.{k}", source)
    elif isinstance(value, (list, tuple)):
        for i, v in enumerate(value):
            _check_plain(v, f"{where}[{i}]", source)
    elif value is not None and not isinstance(value, (str, int, float, bool)):
        raise ConfigError(
            f"{source}: {where}: expected a plain value (str, number, bool, list or mapping), "
            f"got {type(value).__name__}"
        )


def _deep_copy(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {k: _deep_copy(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_deep_copy(v) for v in value]
    return value


def _hint_name(hint: Any) -> str:
    origin = typing.get_origin(hint)
    if origin is Literal:
        return " or ".join(repr(a) for a in typing.get_args(hint))
    if origin in (list, tuple):
        args = ", ".join(_hint_name(a) for a in typing.get_args(hint))
        return f"{origin.__name__}[{args}]"
    if dataclasses.is_dataclass(hint) or hint in (dict,) or origin is dict:
        return "a mapping"
    return getattr(hint, "__name__", str(hint))


def _tname(value: Any) -> str:
    return type(value).__name__


def _show(value: Any) -> str:
    """A value in at most ~60 characters, built without expanding a large one."""
    if value is None:
        return "null"
    if isinstance(value, (list, dict)):
        text = json.dumps(value, default=str) if _small(value) else _REPR.repr(value)
    elif isinstance(value, str) and len(value) > 60:
        text = repr(value[:57])
    else:
        text = repr(value)
    if len(text) > 60:
        text = text[:57] + "..."
    return f"{_tname(value)} {text}"


_REPR = reprlib.Repr()
_REPR.maxlevel, _REPR.maxlist, _REPR.maxdict, _REPR.maxstring = 3, 6, 4, 40


def _small(value: Any, budget: int = 64) -> bool:
    """Whether ``value`` holds fewer than ``budget`` values (stops counting early)."""
    stack, seen = [value], 0
    while stack:
        seen += 1
        if seen > budget:
            return False
        v = stack.pop()
        if isinstance(v, dict):
            stack.extend(v.values())
        elif isinstance(v, (list, tuple)):
            stack.extend(v)
    return True


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split())
