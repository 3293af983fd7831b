"""``mrenhance train RECIPE``: a recipe (YAML) over the shared engines.

recipe -> task.build_training (patch dataset + validation on held-out data) -> registry
model -> engine.training.Trainer with a SupervisedStep (stage 1) -> [the same loop with the
``gan.type`` step, WGAN-GP by default (stage 2)] -> run folder with the resolved config,
logs, checkpoints, and the final safetensors + model card.

A task's ``build_training(data, patch_size, seed=..., source=...)`` returns ``(dataset,
val_fn, subjects)``; ``dataset[i]`` is ``{"inputs": ..., "target": ...}`` (or an
``(input, target)`` pair) of float32 ``(C, *patch)`` arrays, ``val_fn(model)`` a dict of
validation metrics.
Works unchanged under ``torchrun --nproc_per_node N -m mrenhance train ...`` (DDP).
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

from mrenhance.errors import ConfigError, InputError


def _patch_tuple(patch: int | list[int] | tuple[int, ...], ndim: int = 3) -> tuple[int, ...]:
    return (int(patch),) * ndim if isinstance(patch, int) else tuple(int(v) for v in patch)


def _check_model_patch(r: Any, path: Path) -> None:
    """train.patch_size has one size per spatial axis of the recipe's network (or is one
    int): checked before the run folder, naming the recipe and the key."""
    from mrenhance.models.registry import get_model_info

    name = r.model.get("name")
    try:
        dims = get_model_info(name).spatial_dims if name else None
    except ConfigError as err:
        raise ConfigError(f"{path}: model.name: {err}") from None
    patch = r.train.patch_size
    if dims is not None and not isinstance(patch, int) and len(patch) != dims:
        raise ConfigError(
            f"{path}: train.patch_size: {name} is a {dims}D network; expected one size or "
            f"{dims} sizes, got {list(patch)}"
        )


def _model_from_section(section: dict[str, Any]):
    from mrenhance.models import create_model

    cfg = dict(section)
    name = cfg.pop("name", None)
    if not name:
        raise ConfigError("recipe: model.name is required")
    return create_model(name, **cfg)


def _build_gan_step(gan, train, generator, critic, path):
    """The adversarial stage's step from the recipe's ``gan`` section (``gan.type``)."""
    from mrenhance.engine.training import OptimizerSpec, create_step, list_steps

    spec = OptimizerSpec.from_section(gan)
    critic_spec = OptimizerSpec.from_section(gan, lr=gan.critic_lr)
    content = gan.content_loss or train.loss
    if gan.type == "wgan-gp":
        return create_step(
            "wgan-gp",
            generator=generator,
            critic=critic,
            content_loss=content,
            adv_weight=gan.adv_weight,
            lambda_gp=gan.lambda_gp,
            optimizer=spec,
            critic_optimizer=critic_spec,
            critic_warmup_steps=gan.critic_warmup_steps,
            critic_steps_per_generator_step=gan.critic_steps_per_generator_step,
            extra_critic_every=gan.extra_critic_every,
            extra_critic_steps=gan.extra_critic_steps,
        )
    if gan.type == "gan":
        feature = _model_from_section(gan.feature_model) if gan.feature_model else None
        return create_step(
            "gan",
            generator=generator,
            discriminator=critic,
            pixel_loss=content,
            adv_weight=gan.adv_weight,
            feature_model=feature,
            feature_weight=gan.feature_weight,
            feature_loss=gan.feature_loss,
            optimizer=spec,
            critic_optimizer=critic_spec,
        )
    adversarial = [s for s in list_steps() if s != "supervised"]
    raise ConfigError(
        f"{path}: gan.type: unknown adversarial step {gan.type!r} (known: {', '.join(adversarial)})"
    )


def train_recipe(
    recipe: str | os.PathLike,
    overrides: list[str] | tuple[str, ...] = (),
    *,
    run_dir: str | os.PathLike | None = None,
    resume: bool = False,
    device: str = "cpu",
    stage: str = "supervised",
    progress: bool = True,
    weights_name: str | None = None,
) -> dict[str, Any]:
    """Train a recipe; returns a summary (paths, steps, best validation metrics, seconds).

    ``stage``: "supervised" (stage 1), "gan" (stage 2, generator initialised from this run's
    stage-1 weights or ``gan.init_weights``), or "all".
    """
    import torch

    from mrenhance.config import load_recipe, recipe_path
    from mrenhance.engine.distributed import init_distributed
    from mrenhance.engine.training import OptimizerSpec, SupervisedStep, Trainer
    from mrenhance.engine.training.log import to_json
    from mrenhance.io.atomic import write_text_atomic
    from mrenhance.options import check_device
    from mrenhance.tasks import get_task

    path = recipe_path(recipe)
    r = load_recipe(path, list(overrides))
    device = check_device(device)
    _check_model_patch(r, path)
    dist = init_distributed(device)
    try:
        task = get_task(r.task)
    except InputError as e:
        raise ConfigError(f"{path}: task: {e}") from e
    run = Path(run_dir) if run_dir else Path("runs") / f"{r.name}-{time.strftime('%Y%m%d-%H%M%S')}"
    if resume and not run.is_dir():
        raise ConfigError(f"{run}: nothing to resume (run folder not found)")
    # The data and the model are checked before the run folder is made: a bad recipe
    # leaves nothing behind.
    tc = r.train
    if r.gan is not None and r.gan.feature_model:
        # a feature network needs the user's weights file: refuse before any work, whatever
        # the stage (a stage-1 run of a recipe whose GAN stage cannot start is wasted hours)
        try:
            _model_from_section(r.gan.feature_model)
        except ConfigError as err:
            raise ConfigError(f"{path}: gan.feature_model: {err}") from err
    patch = _patch_tuple(tc.patch_size)
    try:
        dataset, val_fn, subjects = task.build_training(
            r.data, patch, seed=tc.seed, source=str(path)
        )
    except InputError as e:  # name the recipe whose data or patch cannot work
        if str(e).startswith(str(path)):
            raise
        raise ConfigError(f"{path}: {e}") from e
    preprocessing = task.preprocessing(task.data_config(r.data, str(path)), subjects)
    try:  # the card's tiling must be usable: checked before the run folder exists
        from mrenhance.engine.grid import GridPlan

        GridPlan.from_dict({k: v for k, v in (r.infer or {}).items() if k != "tiling"})
    except (InputError, TypeError, ValueError) as err:
        raise ConfigError(f"{path}: infer: {err}") from err
    # the initial weights are drawn from torch's global RNG: seed it, or two runs of one
    # recipe start from different networks (and a resumed run cannot match a whole one)
    torch.manual_seed(tc.seed)
    model = _model_from_section(r.model)
    if tc.init_weights and stage in ("supervised", "all"):
        from mrenhance.models.weights import load_weights, resolve_weights

        state, _ = load_weights(resolve_weights(tc.init_weights))
        try:
            model.load_state_dict(state)
        except RuntimeError as err:
            raise ConfigError(
                f"{path}: train.init_weights {tc.init_weights}: does not fit model "
                f"{r.model['name']} ({str(err).splitlines()[0]})"
            ) from err
    trainer = None
    if stage in ("supervised", "all"):  # before the run folder: it checks the train values
        try:
            step = SupervisedStep(model, loss=tc.loss, optimizer=OptimizerSpec.from_section(tc))
            trainer = Trainer.from_config(
                step,
                dataset,
                tc,
                run_dir=run / "supervised",
                val_fn=val_fn,
                device=dist.device if dist.world_size > 1 else device,
                progress=progress,
                overwrite=not resume,
            )
        except ConfigError as e:
            raise ConfigError(str(e) if str(e).startswith(str(path)) else f"{path}: {e}") from e
    if dist.is_main:
        # a GAN-only invocation records its own config beside its checkpoints, keeping the
        # stage-1 record of the same run folder
        config_path = run / "gan" / "config.json" if stage == "gan" else run / "config.json"
        config_path.parent.mkdir(parents=True, exist_ok=True)
        write_text_atomic(
            config_path,
            to_json({"recipe": str(path), "overrides": list(overrides), "resolved": r.to_dict()}),
            overwrite=True,
        )
    summary: dict[str, Any] = {"run_dir": str(run), "recipe": r.name}
    base_name = weights_name or run_weights_name(run)
    card_common = {
        "task": r.task,
        "paper": r.paper,
        "training": {
            "recipe": r.name,
            "recipe_file": path.name,
            "overrides": list(overrides),
            "data": r.data.get("files", []),
            "held_out": r.data.get("held_out"),
            "patch_size": list(patch),
            "batch_size": tc.batch_size,
            "device": device,
            "world_size": dist.world_size,
        },
        "preprocessing": preprocessing,
        "inference": dict(r.infer or {}),
    }
    t0 = time.time()
    if trainer is not None:
        result = trainer.fit(resume=resume)
        trainer.load_best()
        if dist.is_main:
            extra = {"stage": stage_label("supervised", tc.loss), "steps": tc.steps}
            if tc.init_weights:
                extra["initialised_from"] = str(tc.init_weights)
            w = _save_stage(
                trainer.model_for_saving(),
                run / f"{base_name}.safetensors",
                card_common,
                extra,
                result,
                t0,
            )
            summary["supervised"] = {
                "weights": str(w),
                "best": result.best_metrics,
                "steps": result.step,
                "stopped_early": result.stopped_early,
            }
    if trainer is not None and summary.get("supervised", {}).get("stopped_early"):
        return summary  # the time budget ran out: --resume finishes stage 1 first
    if stage in ("gan", "all"):
        if r.gan is None:
            raise ConfigError(f"{path}: stage gan needs a 'gan' section")
        g = r.gan
        from mrenhance.models.weights import load_weights

        init = Path(g.init_weights) if g.init_weights else run / f"{base_name}.safetensors"
        state, init_card = load_weights(init)
        model.load_state_dict(state)
        torch.manual_seed(tc.seed + 1)  # the critic's initial weights, as the generator's
        critic = _model_from_section(g.critic)
        t1 = time.time()
        try:
            gan_step = _build_gan_step(g, tc, model, critic, path)
        except ConfigError as e:
            raise ConfigError(str(e) if str(e).startswith(str(path)) else f"{path}: {e}") from e
        gan = Trainer.from_config(
            gan_step,
            dataset,
            tc,
            steps=g.generator_steps,
            run_dir=run / "gan",
            val_fn=val_fn,
            device=dist.device if dist.world_size > 1 else device,
            progress=progress,
            overwrite=not resume,
        )
        result = gan.fit(resume=resume and (run / "gan" / "checkpoints" / "last.pt").exists())
        if dist.is_main:
            # choice: the GAN stage keeps its final generator, not the best-PSNR one: the
            # adversarial term trades PSNR for sharpness, so PSNR is the wrong selector.
            extra = {
                "stage": stage_label(g.type, gan_step.content_name),
                "initialised_from": init.name,
                "generator_steps": g.generator_steps,
                **adversarial_record(gan.settings()),
            }
            w = _save_stage(
                gan.model_for_saving(),
                run / f"{g.weights_name or base_name + '-gan'}.safetensors",
                card_common,
                extra,
                result,
                t1,
            )
            summary["gan"] = {"weights": str(w), "steps": result.step}
    return summary


def stage_label(step_type: str, loss: str) -> str:
    """The card's ``training.stage``: what the stage optimised, from the recipe itself.

    ``("supervised", "l2")`` -> ``"supervised (L2)"``; ``"wgan-gp"`` -> ``"WGAN-GP"``;
    ``"gan"`` -> ``"GAN (BCE)"`` (``mrenhance ship`` finds a GAN stage's log by the prefix).
    """
    if step_type == "supervised":
        return f"supervised ({loss.upper()})"
    return {"wgan-gp": "WGAN-GP", "gan": "GAN (BCE)"}.get(step_type, step_type)


#: The adversarial settings a card records, when the stage's step has them: a BCE GAN
#: card never names the WGAN-GP critic schedule it does not use.
_ADVERSARIAL_KEYS = (
    "content_loss",
    "adv_weight",
    "lambda_gp",
    "critic_warmup_steps",
    "critic_steps_per_generator_step",
    "extra_critic_every",
    "extra_critic_steps",
    "feature_model",
    "feature_weight",
    "feature_loss",
)


def adversarial_record(settings: dict[str, Any]) -> dict[str, Any]:
    """A GAN stage's recipe for its card, from the settings its step trained with.

    ``settings``: :meth:`mrenhance.engine.training.Trainer.settings` of the GAN stage (plain
    JSON). Keeps the keys of :data:`_ADVERSARIAL_KEYS` the step has, the two learning rates
    and the critic's name; the feature loss's name and model only when its weight is > 0.
    """
    record = {k: settings[k] for k in _ADVERSARIAL_KEYS if k in settings}
    if not record.get("feature_weight"):
        record.pop("feature_model", None)
        record.pop("feature_loss", None)
    record["lr"] = settings["optimizer"]["lr"]
    record["critic_lr"] = settings["critic_optimizer"]["lr"]
    record["critic"] = settings.get("critic_name")
    return record


def run_weights_name(run: Path) -> str:
    """The weights' name of a run: the run folder's name, never a shipped model's name.

    A run in ``runs/mdcsrn-b4u4`` would otherwise write ``mdcsrn-b4u4.safetensors`` with a
    card named like the shipped model, and the two could be mistaken for each other.
    """
    from mrenhance.models.registry import list_models
    from mrenhance.models.weights import list_shipped_weights

    taken = {c.name for c in list_shipped_weights()} | {m.name for m in list_models()}
    name = run.resolve().name or "run"
    # "-gan" is the GAN stage's suffix: a run "x" must not give "x-gan" = a shipped name
    return f"{name}-run" if name in taken or f"{name}-gan" in taken else name


def _save_stage(model, path: Path, card_common: dict, extra: dict, result, t0: float) -> Path:
    """Write a stage's weights with its model card (common facts + this stage's)."""
    from mrenhance.models.weights import save_weights

    card = {**card_common, "name": path.stem}
    # TrainResult.seconds sums the wall time over resumes; this call's time is a fallback
    seconds = getattr(result, "seconds", None) or time.time() - t0
    card["training"] = {**card_common["training"], **extra, "seconds": round(seconds, 1)}
    card["metrics"] = {"validation": result.best_metrics}
    return save_weights(model, path, card, overwrite=True)
