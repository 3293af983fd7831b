import csv
import json
import math
from types import SimpleNamespace

import pytest
import torch

from _tiny import TinyCritic, TinyNet, TinyPairs, state_of
from mrenhance.config import GanConfig, ScheduleConfig, load_recipe
from mrenhance.engine.checkpoint import load_checkpoint
from mrenhance.engine.training import (
    GANStep,
    OptimizerSpec,
    SupervisedStep,
    Trainer,
    WGANGPStep,
    create_step,
    critic_steps_before,
    gan_schedule,
    list_steps,
    lr_at_step,
    rank_batch_indices,
)
from mrenhance.errors import ConfigError, InputError, OutputExistsError, TrainingDivergedError


class Killed(Exception):
    """Raised from a callback to simulate the process being killed."""


def _kill_after(n_events: int):
    seen = []

    def callback(event):
        seen.append(event)
        if len(seen) == n_events:
            raise Killed

    return callback


def _rows(path):
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


def _trainer(run_dir, **kw):
    args = dict(
        loss="l1",
        lr=1e-2,
        batch_size=2,
        steps=6,
        run_dir=run_dir,
        seed=0,
        checkpoint_every=1,
        log_every=1,
        progress=False,
    )
    args.update(kw)
    model = args.pop("model", None) or TinyNet()
    dataset = args.pop("dataset", None) or TinyPairs()
    loss = args.pop("loss")
    spec = OptimizerSpec(
        lr=args.pop("lr"),
        schedule=args.pop("lr_schedule", "constant"),
        warmup_steps=args.pop("warmup_steps", 0),
    )
    return Trainer(SupervisedStep(model, loss=loss, optimizer=spec), dataset, **args)


def _assert_same_weights(a, b):
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k


# ---- pure pieces ---------------------------------------------------------------------


def test_lr_schedules():
    assert lr_at_step(5, base_lr=1e-3) == 1e-3
    assert lr_at_step(0, base_lr=1e-3, warmup_steps=4) == pytest.approx(2.5e-4)
    assert lr_at_step(3, base_lr=1e-3, warmup_steps=4) == pytest.approx(1e-3)
    step = ScheduleConfig(name="step", step_size=10, gamma=0.5)
    assert lr_at_step(9, base_lr=1.0, schedule=step) == 1.0
    assert lr_at_step(25, base_lr=1.0, schedule=step) == 0.25
    cos = ScheduleConfig(name="cosine", min_lr=0.1)
    assert lr_at_step(0, base_lr=1.0, schedule=cos, total_steps=11) == pytest.approx(1.0)
    assert lr_at_step(5, base_lr=1.0, schedule=cos, total_steps=11) == pytest.approx(0.55)
    assert lr_at_step(10, base_lr=1.0, schedule=cos, total_steps=11) == pytest.approx(0.1)
    with pytest.raises(ConfigError, match="step_size must be > 0"):
        lr_at_step(0, base_lr=1.0, schedule="step")
    lin = ScheduleConfig(name="linear", min_lr=0.0)
    assert lr_at_step(5, base_lr=1.0, schedule=lin, total_steps=11) == pytest.approx(0.5)
    assert lr_at_step(10, base_lr=1.0, schedule=lin, total_steps=11) == pytest.approx(0.0)
    # per epoch: the rate changes once per epoch of 4 steps (3 epochs, 0-based 0..2)
    ep = ScheduleConfig(name="linear", unit="epoch", steps_per_epoch=4)
    assert [lr_at_step(t, base_lr=1.0, schedule=ep, total_steps=12) for t in (0, 3, 4, 11)] == [
        1.0,
        1.0,
        0.5,
        0.0,
    ]
    with pytest.raises(ConfigError, match="steps_per_epoch"):
        lr_at_step(0, base_lr=1.0, schedule={"name": "step", "step_size": 1, "unit": "epoch"})
    with pytest.raises(ConfigError, match="lr_schedule.name: expected one of"):
        lr_at_step(0, base_lr=1.0, schedule="exponential")


def test_rank_batch_indices_split_the_global_batch():
    assert rank_batch_indices(3, 4) == [12, 13, 14, 15]
    assert rank_batch_indices(3, 4, rank=0, world_size=2) == [12, 13]
    assert rank_batch_indices(3, 4, rank=1, world_size=2) == [14, 15]
    assert rank_batch_indices(3, 4, n_items=13) == [12, 0, 1, 2]
    with pytest.raises(ConfigError, match="batch_size: 3 is not divisible by the 2 DDP"):
        rank_batch_indices(0, 3, rank=0, world_size=2)


def test_gan_schedule_follows_mdcsrn_sec_3_2():
    cfg = GanConfig()  # 10k warm-up, 7 per generator step, +200 every 500
    assert gan_schedule(0, cfg) == 10007
    assert gan_schedule(1, cfg) == 7
    assert gan_schedule(499, cfg) == 7
    assert gan_schedule(500, cfg) == 207
    assert gan_schedule(1000, cfg) == 207
    assert gan_schedule(1001, cfg) == 7
    counts = [gan_schedule(g, cfg) for g in range(1501)]
    assert sum(counts) == 10000 + 7 * 1501 + 200 * 3
    small = SimpleNamespace(
        critic_warmup_steps=3,
        critic_steps_per_generator_step=2,
        extra_critic_every=2,
        extra_critic_steps=1,
    )
    assert [gan_schedule(g, small) for g in range(6)] == [5, 2, 3, 2, 3, 2]
    for g in range(40):
        assert critic_steps_before(g, cfg) == sum(counts[:g])
        assert critic_steps_before(g, small) == sum(gan_schedule(j, small) for j in range(g))


# ---- supervised ----------------------------------------------------------------------


def _held_out_loss(model):
    pairs = [TinyPairs(seed=7)[i] for i in range(8)]
    x = torch.stack([torch.from_numpy(p[0]) for p in pairs])
    y = torch.stack([torch.from_numpy(p[1]) for p in pairs])
    with torch.no_grad():
        return torch.nn.functional.l1_loss(model(x), y).item()


def test_training_reduces_loss_and_writes_run_folder(tmp_path):
    trainer = _trainer(tmp_path / "run", steps=40, log_every=10, checkpoint_every=20, lr=2e-2)
    before = _held_out_loss(trainer.model)
    result = trainer.fit()
    after = _held_out_loss(trainer.model)
    assert after < 0.75 * before
    rows = _rows(tmp_path / "run" / "metrics.csv")
    assert [int(r["step"]) for r in rows] == [10, 20, 30, 40]
    assert list(rows[0]) == ["step", "loss", "lr", "seconds"]
    assert float(rows[-1]["loss"]) < float(rows[0]["loss"])
    assert result.final_loss == pytest.approx(float(rows[-1]["loss"]), rel=1e-6)
    assert result.step == 40 and not result.stopped_early
    ckpt = load_checkpoint(result.last_checkpoint)  # weights_only loads it
    assert ckpt["step"] == 40 and ckpt["kind"] == "supervised"
    _assert_same_weights(ckpt["model"], state_of(trainer.model))
    assert (tmp_path / "run" / "trainer.json").is_file()
    assert result.best_checkpoint is None


def test_resume_is_bit_identical(tmp_path):
    straight = _trainer(tmp_path / "a")
    straight.fit()

    killed = _trainer(tmp_path / "b", callback=_kill_after(3))
    with pytest.raises(Killed):
        killed.fit()
    assert load_checkpoint(tmp_path / "b" / "checkpoints" / "last.pt")["step"] == 3
    resumed = _trainer(tmp_path / "b", model=TinyNet(seed=99))  # fresh, different init
    result = resumed.fit(resume=True)

    assert result.step == 6
    _assert_same_weights(state_of(resumed.model), state_of(straight.model))
    a = load_checkpoint(tmp_path / "a" / "checkpoints" / "last.pt")
    b = load_checkpoint(tmp_path / "b" / "checkpoints" / "last.pt")
    for k, v in a["optimizer"]["state"][0].items():
        assert torch.equal(v, b["optimizer"]["state"][0][k])
    # rows after the kill were dropped; one row per step, none twice
    assert [r["step"] for r in _rows(tmp_path / "b" / "metrics.csv")] == list("123456")
    losses_a = [r["loss"] for r in _rows(tmp_path / "a" / "metrics.csv")]
    assert [r["loss"] for r in _rows(tmp_path / "b" / "metrics.csv")] == losses_a


def test_stop_at_then_resume_matches_with_dropout_and_schedule(tmp_path):
    def model():
        net = TinyNet()
        net.conv1 = torch.nn.Sequential(net.conv1, torch.nn.Dropout3d(0.3))  # uses the RNG
        return net

    kw = dict(steps=6, checkpoint_every=4, lr_schedule="cosine", warmup_steps=2, grad_clip=0.5)
    straight = _trainer(tmp_path / "a", model=model(), **kw)
    straight.fit()
    first = _trainer(tmp_path / "b", model=model(), **kw)
    assert first.fit(stop_at=3).stopped_early
    second = _trainer(tmp_path / "b", model=model(), **kw)
    second.fit(resume=True)
    _assert_same_weights(state_of(second.model), state_of(straight.model))


def test_nan_loss_raises_and_keeps_last_good_checkpoint(tmp_path):
    # batch 2: step 5 reads indices 8 and 9, the first NaN inputs
    trainer = _trainer(tmp_path / "run", steps=8, checkpoint_every=2, dataset=TinyPairs(nan_from=8))
    last = tmp_path / "run" / "checkpoints" / "last.pt"
    with pytest.raises(TrainingDivergedError) as err:
        trainer.fit()
    assert str(err.value) == f"step 5: loss is nan; last good checkpoint kept at {last} (step 4)"
    ckpt = load_checkpoint(last)
    assert ckpt["step"] == 4
    assert all(torch.isfinite(v).all() for v in ckpt["model"].values())


def test_validation_writes_best_checkpoint(tmp_path):
    scores = iter([20.0, 25.0, 22.0])
    trainer = _trainer(
        tmp_path / "run", val_fn=lambda m: {"psnr": next(scores), "ssim": 0.5}, val_every=2
    )
    result = trainer.fit()
    assert result.best_metric == 25.0 and result.best_step == 4
    assert result.best_metrics == {"psnr": 25.0, "ssim": 0.5}
    assert load_checkpoint(result.best_checkpoint)["step"] == 4
    rows = _rows(result.metrics_csv)
    assert [r["val_psnr"] for r in rows] == ["", "20", "", "25", "", "22"]
    assert trainer.load_best() == result.best_checkpoint
    best = load_checkpoint(result.best_checkpoint)["model"]
    _assert_same_weights(state_of(trainer.model), best)


def test_validation_min_mode(tmp_path):
    scores = iter([0.3, 0.1, 0.2])
    trainer = _trainer(
        tmp_path / "run",
        val_fn=lambda m: {"nrmse": next(scores)},
        val_every=2,
        val_metric="nrmse",
        val_mode="min",
    )
    assert trainer.fit().best_step == 4


def test_run_folder_guards(tmp_path):
    _trainer(tmp_path / "run", steps=1).fit()
    with pytest.raises(OutputExistsError, match="holds a checkpoint already"):
        _trainer(tmp_path / "run", steps=1).fit()
    _trainer(tmp_path / "run", steps=1, overwrite=True).fit()
    with pytest.raises(InputError, match="no checkpoint to resume from"):
        _trainer(tmp_path / "other", steps=1).fit(resume=True)
    with pytest.raises(ConfigError, match="batch_size was 2, now 4"):
        _trainer(tmp_path / "run", steps=2, batch_size=4).fit(resume=True)


def test_amp_bf16_on_cpu_trains(tmp_path):
    result = _trainer(tmp_path / "run", steps=3, amp=True).fit()
    assert math.isfinite(result.final_loss)


def test_deterministic_flag_is_restored(tmp_path):
    before = torch.are_deterministic_algorithms_enabled()
    _trainer(tmp_path / "run", steps=1, deterministic=True).fit()
    assert torch.are_deterministic_algorithms_enabled() == before


def test_from_config_uses_the_recipe(tmp_path):
    recipe = load_recipe(
        {
            "name": "t",
            "task": "sr_t1",
            "model": {"name": "tiny"},
            "train": {"steps": 2, "lr": "1e-3", "loss": "l2", "checkpoint_every": 1},
            "gan": {"critic": {"name": "c"}, "generator_steps": 1, "critic_warmup_steps": 1},
        }
    )
    step = SupervisedStep(
        TinyNet(), loss=recipe.train.loss, optimizer=OptimizerSpec.from_section(recipe.train)
    )
    t = Trainer.from_config(step, TinyPairs(), recipe.train, run_dir=tmp_path / "s", progress=False)
    assert (t.steps, step.spec.lr, step.loss_name) == (2, 1e-3, "l2")
    assert t.fit().step == 2
    settings = json.loads((tmp_path / "s" / "trainer.json").read_text())
    assert settings["optimizer"] == {
        "type": "adam",
        "lr": 1e-3,
        "betas": [0.9, 0.999],
        "weight_decay": 0.0,
        "momentum": 0.0,
        "schedule": {
            "name": "constant",
            "step_size": 0,
            "gamma": 0.1,
            "min_lr": 0.0,
            "unit": "step",
            "steps_per_epoch": 0,
        },
        "warmup_steps": 0,
    }


# ---- GAN stage -----------------------------------------------------------------------

GAN_SMALL = dict(
    critic_warmup_steps=3,
    critic_steps_per_generator_step=2,
    extra_critic_every=2,
    extra_critic_steps=1,
    generator_steps=4,
)


def _gan(run_dir, **kw):
    args = dict(
        lr=1e-3,
        batch_size=2,
        run_dir=run_dir,
        seed=0,
        checkpoint_every=1,
        log_every=1,
        progress=False,
        **GAN_SMALL,
    )
    args.update(kw)
    gen = args.pop("generator", None) or TinyNet()
    critic = args.pop("critic", None) or TinyCritic()
    dataset = args.pop("dataset", None) or TinyPairs()
    step_args = {k: args.pop(k) for k in list(args) if k in GAN_SMALL or k == "lr"}
    steps = step_args.pop("generator_steps")
    step = WGANGPStep(gen, critic, **step_args)
    return Trainer(step, dataset, steps=steps, **args)


def test_gan_follows_the_schedule_and_logs(tmp_path):
    log: list[int] = []
    events = []
    trainer = _gan(tmp_path / "run", dataset=TinyPairs(log=log), callback=events.append)
    result = trainer.fit()
    kinds = "".join("c" if e["kind"] == "critic" else "G" for e in events)
    assert kinds == "c" * 5 + "G" + "ccG" + "cccG" + "ccG"  # 3+2, 2, 2+1, 2
    assert result.extra["critic_steps"] == 12 == critic_steps_before(4, trainer.step.schedule)
    # every update consumed its own batch: 16 updates x 2 = indices 0..31, in order
    assert log == list(range(32))
    rows = _rows(result.metrics_csv)
    # long critic-only phases (warm-up, extra) log per critic step; else one row per G step
    expected = [(0, 1), (0, 2), (0, 3), (0, 4), (0, 5), (1, 5), (2, 7)]
    expected += [(2, 8), (2, 9), (2, 10), (3, 10), (4, 12)]
    assert [(int(r["step"]), int(r["critic_steps"])) for r in rows] == expected
    assert rows[0]["generator_loss"] == "" and rows[0]["critic_loss"] != ""
    for key in ("critic_loss", "wasserstein", "gradient_penalty", "content_loss", "adv_loss"):
        assert math.isfinite(float(rows[-1][key]))
    assert float(rows[-1]["gradient_penalty"]) >= 0


def test_gan_warmup_trains_only_the_critic(tmp_path):
    gen, critic = TinyNet(), TinyCritic()
    g0, c0 = state_of(gen), state_of(critic)
    trainer = _gan(tmp_path / "run", generator=gen, critic=critic, callback=_kill_after(4))
    with pytest.raises(Killed):
        trainer.fit()
    _assert_same_weights(state_of(gen), g0)
    assert not torch.equal(state_of(critic)["conv.weight"], c0["conv.weight"])


@pytest.mark.parametrize("kill_after", [2, 7, 9])  # mid warm-up, after G step 1, mid iteration
def test_gan_resume_is_bit_identical(tmp_path, kill_after):
    straight = _gan(tmp_path / "a")
    straight.fit()
    killed = _gan(tmp_path / "b", checkpoint_every=2, callback=_kill_after(kill_after))
    with pytest.raises(Killed):
        killed.fit()
    resumed = _gan(tmp_path / "b", checkpoint_every=2, generator=TinyNet(5), critic=TinyCritic(6))
    result = resumed.fit(resume=True)
    assert result.extra["critic_steps"] == 12
    _assert_same_weights(state_of(resumed.step.model), state_of(straight.step.model))
    _assert_same_weights(state_of(resumed.step.critic), state_of(straight.step.critic))
    steps = [(r["step"], r["critic_steps"]) for r in _rows(tmp_path / "b" / "metrics.csv")]
    assert len(steps) == len(set(steps))


def test_gan_nan_raises_and_keeps_checkpoint(tmp_path):
    # batches 0-4 are warm-up critic steps; the generator step (batch 5) reads indices 10, 11
    trainer = _gan(tmp_path / "run", dataset=TinyPairs(nan_from=10), checkpoint_every=2)
    last = tmp_path / "run" / "checkpoints" / "last.pt"
    with pytest.raises(TrainingDivergedError) as err:
        trainer.fit()
    assert str(err.value) == (
        f"step 1: generator loss is nan; last good checkpoint kept at {last} "
        "(step 0, critic step 4)"  # the warm-up writes checkpoints too
    )
    assert load_checkpoint(last)["sub_step"] == 4
    # the first critic step of iteration 1 (batch 6) reads indices 12, 13
    trainer = _gan(tmp_path / "run2", dataset=TinyPairs(nan_from=12), checkpoint_every=1)
    last = tmp_path / "run2" / "checkpoints" / "last.pt"
    with pytest.raises(TrainingDivergedError) as err:
        trainer.fit()
    assert str(err.value) == (
        f"step 2 (critic step 1): critic loss is nan; last good checkpoint kept at {last} (step 1)"
    )
    assert all(torch.isfinite(v).all() for v in load_checkpoint(last)["critic"].values())


def test_gan_validation_and_best(tmp_path):
    scores = iter([0.2, 0.1])
    trainer = _gan(
        tmp_path / "run",
        val_fn=lambda g: {"nrmse": next(scores)},
        val_every=2,
        val_metric="nrmse",
        val_mode="min",
    )
    result = trainer.fit()
    assert (result.best_metric, result.best_step) == (0.1, 4)
    best = load_checkpoint(result.best_checkpoint)
    assert (best["step"], best["sub_step"]) == (4, 0)
    rows = {r["step"]: r["val_nrmse"] for r in _rows(result.metrics_csv) if r["val_nrmse"]}
    assert rows == {"2": "0.2", "4": "0.1"}


def test_missing_validation_metric_is_a_config_error(tmp_path):
    trainer = _trainer(tmp_path / "run", val_fn=lambda m: {"ssim": 0.9}, val_every=1)
    with pytest.raises(ConfigError, match="'psnr' is not among the validation metrics"):
        trainer.fit()


def test_workers_and_progress_bar_do_not_change_the_result(tmp_path, capsys):
    plain = _trainer(tmp_path / "a", steps=3)
    plain.fit()
    busy = _trainer(tmp_path / "b", steps=3, num_workers=2, progress=True)
    busy.fit()
    _assert_same_weights(state_of(busy.model), state_of(plain.model))
    assert "3/3" in capsys.readouterr().err


def test_tensorboard_is_used_when_it_imports(tmp_path, monkeypatch):
    import sys
    import types

    calls = []

    class Writer:
        def __init__(self, log_dir):
            calls.append(("init", log_dir))

        def add_scalar(self, tag, value, step):
            calls.append((tag, step))

        def close(self):
            calls.append(("close",))

    monkeypatch.setitem(
        sys.modules, "torch.utils.tensorboard", types.SimpleNamespace(SummaryWriter=Writer)
    )
    _trainer(tmp_path / "run", steps=2).fit()
    assert calls[0] == ("init", str(tmp_path / "run" / "tensorboard"))
    assert ("loss", 1) in calls and ("loss", 2) in calls and calls[-1] == ("close",)


# ---- plain GAN step (BCE), 2D --------------------------------------------------------


class TinyNet2D(torch.nn.Module):
    """A 2D generator: Conv2d(1->4) - ReLU - Conv2d(4->1) with a global residual."""

    def __init__(self, seed: int = 0) -> None:
        super().__init__()
        torch.manual_seed(seed)
        self.conv1 = torch.nn.Conv2d(1, 4, 3, padding=1)
        self.conv2 = torch.nn.Conv2d(4, 1, 3, padding=1)

    def forward(self, x):
        return x + self.conv2(torch.relu(self.conv1(x)))


class TinyDisc2D(torch.nn.Module):
    """A 2D discriminator: one logit per sample, (B, 1)."""

    def __init__(self, seed: int = 1) -> None:
        super().__init__()
        torch.manual_seed(seed)
        self.conv = torch.nn.Conv2d(1, 4, 3, padding=1)
        self.head = torch.nn.Linear(4, 1)

    def forward(self, x):
        return self.head(torch.nn.functional.leaky_relu(self.conv(x), 0.2).mean(dim=(2, 3)))


class Pairs2D:
    """Dict items of 2D slices of the tiny 3D pairs: {"inputs": (1, 6, 6), "target": ...}."""

    def __len__(self):
        return 64

    def __getitem__(self, i):
        x, y = TinyPairs()[i]
        return {"inputs": x[:, :, :, 3], "target": y[:, :, :, 3]}


def _gan2d(run_dir, **kw):
    feature = kw.pop("feature", False)
    step = GANStep(
        kw.pop("generator", None) or TinyNet2D(),
        kw.pop("discriminator", None) or TinyDisc2D(),
        pixel_loss="l2",
        adv_weight=1e-2,
        feature_model=TinyDisc2D(seed=5).conv if feature else None,
        feature_weight=0.1 if feature else 0.0,
        lr=1e-2,
    )
    args = dict(steps=6, batch_size=2, seed=0, checkpoint_every=1, log_every=1, progress=False)
    args.update(kw)
    return Trainer(step, Pairs2D(), run_dir=run_dir, **args)


def test_gan_step_trains_a_2d_pair_and_logs_both_networks(tmp_path):
    trainer = _gan2d(tmp_path / "run", steps=12, feature=True)
    g0, d0 = state_of(trainer.step.model), state_of(trainer.step.critic)
    result = trainer.fit()
    rows = _rows(result.metrics_csv)
    assert [int(r["step"]) for r in rows] == list(range(1, 13))
    for key in ("discriminator_loss", "d_real", "d_fake", "pixel_loss", "adv_loss"):
        assert math.isfinite(float(rows[-1][key]))
    assert float(rows[-1]["feature_loss"]) > 0
    assert float(rows[-1]["pixel_loss"]) < float(rows[0]["pixel_loss"])  # it learns
    assert float(rows[-1]["discriminator_loss"]) != float(rows[0]["discriminator_loss"])
    assert not torch.equal(state_of(trainer.step.model)["conv1.weight"], g0["conv1.weight"])
    assert not torch.equal(state_of(trainer.step.critic)["conv.weight"], d0["conv.weight"])
    ckpt = load_checkpoint(result.last_checkpoint)
    assert ckpt["kind"] == "gan" and {"model", "critic", "critic_optimizer"} <= set(ckpt)


def test_gan_step_resume_is_bit_identical(tmp_path):
    straight = _gan2d(tmp_path / "a")
    straight.fit()
    killed = _gan2d(tmp_path / "b", checkpoint_every=2, callback=_kill_after(3))
    with pytest.raises(Killed):
        killed.fit()
    resumed = _gan2d(
        tmp_path / "b", checkpoint_every=2, generator=TinyNet2D(7), discriminator=TinyDisc2D(8)
    )
    assert resumed.fit(resume=True).step == 6
    _assert_same_weights(state_of(resumed.step.model), state_of(straight.step.model))
    _assert_same_weights(state_of(resumed.step.critic), state_of(straight.step.critic))
    losses = [r["generator_loss"] for r in _rows(tmp_path / "a" / "metrics.csv")]
    assert [r["generator_loss"] for r in _rows(tmp_path / "b" / "metrics.csv")] == losses


def test_wgan_step_moves_the_generator_loss(tmp_path):
    rows = _rows(_gan(tmp_path / "run", generator_steps=6, lr=1e-2).fit().metrics_csv)
    g_losses = [float(r["generator_loss"]) for r in rows if r["generator_loss"]]
    assert len(g_losses) == 6 and len(set(g_losses)) == 6


def test_a_checkpoint_of_one_step_type_cannot_resume_another(tmp_path):
    _trainer(tmp_path / "run", steps=1).fit()
    with pytest.raises(ConfigError, match="a 'supervised' checkpoint cannot resume a 'wgan-gp'"):
        _gan(tmp_path / "run").fit(resume=True)


def test_step_registry_builds_steps_by_recipe_name():
    assert {"supervised", "wgan-gp", "gan"} <= set(list_steps())
    step = create_step("gan", generator=TinyNet2D(), discriminator=TinyDisc2D(), adv_weight=0.5)
    assert isinstance(step, GANStep) and step.adv_weight == 0.5
    with pytest.raises(ConfigError, match="step 'pix2pix': unknown step"):
        create_step("pix2pix")
    with pytest.raises(ConfigError, match="step 'supervised': bad arguments"):
        create_step("supervised", model=TinyNet(), colour="red")


def test_recipe_gan_type_maps_onto_the_step(tmp_path):
    from mrenhance.training import _build_gan_step

    base = {"name": "t", "task": "sr_t1", "model": {"name": "tiny"}}
    wgan = load_recipe({**base, "gan": {"critic": {"name": "c"}, "critic_warmup_steps": 3}})
    step = _build_gan_step(wgan.gan, wgan.train, TinyNet(), TinyCritic(), "r.yaml")
    assert isinstance(step, WGANGPStep) and step.schedule.critic_warmup_steps == 3
    assert (step.spec.lr, step.critic_spec.lr) == (5e-6, 5e-6)  # Sec. 3.2: 5e-6 for both
    plain = load_recipe(
        {**base, "gan": {"type": "gan", "critic": {"name": "c"}, "lr": 1e-4, "critic_lr": 2e-4}}
    )
    step = _build_gan_step(plain.gan, plain.train, TinyNet2D(), TinyDisc2D(), "r.yaml")
    assert isinstance(step, GANStep) and (step.spec.lr, step.critic_spec.lr) == (1e-4, 2e-4)
    bad = load_recipe({**base, "gan": {"type": "cyclegan", "critic": {"name": "c"}}})
    with pytest.raises(ConfigError, match=r"^r.yaml: gan.type: unknown adversarial step"):
        _build_gan_step(bad.gan, bad.train, TinyNet(), TinyCritic(), "r.yaml")


def test_sgd_with_an_epoch_schedule_sets_the_rate_once_per_epoch(tmp_path):
    lrs = []
    spec = OptimizerSpec(
        type="sgd",
        lr=0.1,
        momentum=0.9,
        schedule={"name": "step", "step_size": 1, "gamma": 0.5, "unit": "epoch"},
    )
    # 8 items, batch 2: an epoch is 4 steps (from len(dataset))
    trainer = Trainer(
        SupervisedStep(TinyNet(), optimizer=spec),
        TinyPairs(n=8),
        steps=10,
        run_dir=tmp_path / "run",
        checkpoint_every=5,
        progress=False,
        callback=lambda e: lrs.append(e["lr"]),
    )
    trainer.fit()
    assert lrs == [0.1] * 4 + [0.05] * 4 + [0.025] * 2
    assert isinstance(trainer.step.optimizer, torch.optim.SGD)


def test_dict_items_with_extra_keys_reach_the_step(tmp_path):
    seen = []

    class MaskedL1(SupervisedStep):
        def update(self, batch, step, sub, ctx):
            seen.append(sorted(batch))
            return super().update(batch, step, sub, ctx)

    class WithMask(TinyPairs):
        def __getitem__(self, i):
            x, y = super().__getitem__(i)
            return {"inputs": x, "target": y, "mask": (y > 0).astype("float32")}

    Trainer(MaskedL1(TinyNet()), WithMask(), steps=2, run_dir=tmp_path / "r", progress=False).fit()
    assert seen == [["inputs", "mask", "target"]] * 2


# ---- what a person watching a run sees -------------------------------------------------


def test_run_folder_gets_curves_png_and_a_metrics_row_per_log_step(tmp_path):
    import matplotlib.image

    trainer = _trainer(tmp_path / "run", steps=6, log_every=2)
    trainer.val_fn, trainer.val_every = (lambda model: {"psnr": 20.0}), 3
    trainer.fit()
    rows = _rows(tmp_path / "run" / "metrics.csv")
    assert [int(r["step"]) for r in rows] == [2, 3, 4, 6]  # every log step, and validations
    png = matplotlib.image.imread(tmp_path / "run" / "curves.png")
    assert png.shape[0] > 100 and png.shape[1] > 300  # loss and val_psnr side by side
    settings = json.loads((tmp_path / "run" / "trainer.json").read_text())
    assert json.loads(json.dumps(settings)) == settings and "SupervisedStep(" not in str(settings)


def test_progress_bar_shows_the_loss_and_validation_has_its_own_line(tmp_path, capsys):
    trainer = _trainer(tmp_path / "run", steps=2, progress=True, log_every=100)
    trainer.val_fn, trainer.val_every = (lambda model: {"psnr": 21.5}), 2
    trainer.fit()
    err = capsys.readouterr().err
    assert "loss=" in err
    assert "step 2: validating ..." in err and "step 2: validation psnr 21.5" in err


def test_time_budget_stops_cleanly_and_resume_finishes_like_one_run(tmp_path, monkeypatch):
    import time as time_module

    from mrenhance.engine.training import loop

    whole = _trainer(tmp_path / "whole", steps=6)
    whole.fit()
    clock = iter(range(0, 10_000, 25))  # every call of time.time() is 25 s later
    monkeypatch.setattr(loop.time, "time", lambda: float(next(clock)))
    part = _trainer(tmp_path / "part", steps=6, time_budget_s=60.0).fit()
    monkeypatch.setattr(loop.time, "time", time_module.time)
    assert part.stopped_early and 0 < part.step < 6
    assert load_checkpoint(part.last_checkpoint)["step"] == part.step
    rest = _trainer(tmp_path / "part", steps=6)
    result = rest.fit(resume=True)
    assert result.step == 6 and not result.stopped_early
    _assert_same_weights(rest.model.state_dict(), whole.model.state_dict())


def test_tensorboard_event_files_for_real(tmp_path):
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    _trainer(tmp_path / "run", steps=3).fit()
    events = EventAccumulator(str(tmp_path / "run" / "tensorboard"))
    events.Reload()
    assert "loss" in events.Tags()["scalars"]
    assert [e.step for e in events.Scalars("loss")] == [1, 2, 3]


def test_budget_option_parses_durations():
    from mrenhance.cli.train import duration_minutes

    assert duration_minutes("30m") == 30 and duration_minutes("2h") == 120
    assert duration_minutes("90s") == 1.5 and duration_minutes("45") == 45
    with pytest.raises(Exception, match="duration"):
        duration_minutes("soon")
