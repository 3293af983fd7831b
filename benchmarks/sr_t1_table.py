"""3D T1 SR at a CPU budget: Tables 1-2 of Chen et al. 2018 on the MNI152 held-out slab.

Trains every network of the comparison with the same recipe (``sr_mdcsrn``) and the same
CPU-sized budget, then measures SSIM / PSNR / NRMSE inside the brain mask of the held-out
test slab (axial slices 96-127, never sampled in training), with the parameter count,
MACs per voxel and inference time of each, beside the interpolation baselines.

    python benchmarks/sr_t1_table.py                       # the committed table
    python benchmarks/sr_t1_table.py --steps 3000 --patch 32 --models mdcsrn-b4u4

Runs go to ``benchmarks/runs/<model>/`` (git-ignored; ``--resume`` continues killed ones).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import ROOT, provenance, tune_allocator, write_results  # noqa: E402

NETWORKS = ["fsrcnn3d", "srresnet3d", "dcsrn-b1u8", "mdcsrn-b2u4", "mdcsrn-b3u4", "mdcsrn-b4u4"]


def budget_overrides(args: argparse.Namespace, model: str) -> list[str]:
    """The CPU-budget overrides of the paper recipe (recorded in every card and result)."""
    return [
        f"model.name={model}",
        f"model.global_residual={str(args.global_residual).lower()}",
        f"train.steps={args.steps}",
        f"train.patch_size={args.patch}",
        f"train.lr={args.lr}",
        f"train.lr_schedule={args.schedule}",
        f"train.val_every={args.val_every}",
        f"train.checkpoint_every={args.val_every}",
        "train.log_every=25",
    ]


def gan_overrides(args: argparse.Namespace) -> list[str]:
    return [
        f"gan.critic_warmup_steps={args.gan_warmup}",
        f"gan.generator_steps={args.gan_steps}",
        f"gan.critic_steps_per_generator_step={args.gan_critic_steps}",
        f"gan.extra_critic_every={max(1, args.gan_steps // 2)}",
        f"gan.extra_critic_steps={args.gan_critic_steps * 4}",
        f"gan.critic.base={args.critic_base}",
        f"gan.lr={args.gan_lr}",
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--models", default=",".join(NETWORKS + ["mdcsrn-b4u4-gan"]))
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--patch", type=int, default=24)
    parser.add_argument("--lr", type=float, default=1e-4)
    parser.add_argument("--schedule", default="constant")
    parser.add_argument(
        "--no-global-residual",
        dest="global_residual",
        action="store_false",
        help="train the paper's plain networks (slow to converge on a CPU budget)",
    )
    parser.add_argument("--val-every", type=int, default=100)
    parser.add_argument("--gan-warmup", type=int, default=100)
    parser.add_argument("--gan-steps", type=int, default=100)
    parser.add_argument("--gan-critic-steps", type=int, default=3)
    parser.add_argument("--critic-base", type=int, default=16)
    parser.add_argument("--gan-lr", type=float, default=5e-5)
    parser.add_argument("--runs", default=str(ROOT / "benchmarks" / "runs"))
    parser.add_argument("--resume", action="store_true", help="reuse finished runs, resume killed")
    parser.add_argument("--name", default="sr_t1_table")
    args = parser.parse_args()
    tune_allocator()

    from mrenhance.enhance_api import Enhancer
    from mrenhance.models.complexity import count_parameters, macs_per_voxel
    from mrenhance.tasks import sr_t1
    from mrenhance.training import train_recipe

    wanted = [m.strip() for m in args.models.split(",") if m.strip()]
    cfg = sr_t1.validate_data_config({})
    subject = sr_t1.load_subjects(cfg)[0]
    rows = sr_t1.evaluate_region(
        sr_t1.baseline_methods(cfg["factors"]), subject, cfg["held_out"], "test"
    )
    for row in rows:
        row.update(parameters=0, macs_per_voxel=0, train_steps=0, train_seconds=0)
    runs = Path(args.runs)
    for name in wanted:
        gan = name.endswith("-gan")
        base = name.removesuffix("-gan")
        run = runs / base
        weights = run / f"{name}.safetensors"
        t0 = time.time()
        if not (args.resume and weights.exists()):
            overrides = budget_overrides(args, base) + (gan_overrides(args) if gan else [])
            resume = (
                args.resume
                and (run / ("gan" if gan else "supervised") / "checkpoints" / "last.pt").exists()
            )
            print(f"training {name}: {' '.join(overrides)}", flush=True)
            train_recipe(
                "sr_mdcsrn",
                overrides,
                run_dir=run,
                resume=resume,
                stage="gan" if gan else "supervised",
                progress=False,
                # the table labels rows by network; these weights are only read by path
                weights_name=base,
            )
        train_seconds = time.time() - t0
        enhancer = Enhancer.from_weights(weights, inference={"patch_size": 64, "overlap": 6})
        model = enhancer.model
        row = sr_t1.evaluate_region(
            {name: sr_t1.network_method(enhancer)},
            subject,
            cfg["held_out"],
            "test",
        )[0]
        row.update(
            parameters=count_parameters(model),
            macs_per_voxel=macs_per_voxel(model),
            train_steps=args.gan_steps if gan else args.steps,
            train_seconds=round(train_seconds, 1),
        )
        rows.append(row)
        print(row, flush=True)
    meta = provenance()
    meta.update(
        budget={
            "steps": args.steps,
            "patch": args.patch,
            "lr": args.lr,
            "schedule": args.schedule,
            "global_residual": args.global_residual,
            "gan_lr": args.gan_lr,
            "gan_warmup": args.gan_warmup,
            "gan_steps": args.gan_steps,
            "critic_base": args.critic_base,
        },
        protocol="MNI152 T1, k-space truncation 2x2 (x, y), test slab z 96-127, "
        "brain mask, data_range 1; seconds = inference on the slab + 20-slice "
        "context (197x233x72), 64^3 tiles, 3-voxel crop margin",
    )
    write_results(args.name, rows, meta)


if __name__ == "__main__":
    main()
