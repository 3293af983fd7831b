"""Whole-volume inference side by side: ours (exact, fp32 / bf16), today's approximate
default, MONAI and TorchIO, each method in a fresh process, interleaved (A B C A B C).

    python benchmarks/bench_inference.py                       # small + MNI, 3 repetitions
    python benchmarks/bench_inference.py --sizes large --reps 1 --methods ours-fp32,ours-bf16

Every method runs the shipped ``mdcsrn-b4u4`` on the same normalised MNI152 LR input
(k-space 2x2; cropped to 116x116x72 for ``small``, whole 197x233x189 for ``mni``,
reflect-padded to 320x320x256 for ``large``). Timed: the tiled inference only (model
loading excluded). Peak RSS is the worker process's. Accuracy is against our exact fp32
output, which equals one untiled call of the network to 1e-5 (tests/test_fused.py):
max / mean absolute difference and PSNR (data range 1) inside the head mask. Achieved
GFLOP/s counts the network's useful work (2 x MACs per voxel x the volume's voxels) over
the time, and is set against a same-run Conv3d microbenchmark (64 -> 64 channels, 3^3,
on 48^3, fp32 and bf16 autocast) as the machine's attainable peak.

Peers (optional ``[bench]`` extra; skipped when not installed):
- ``monai-constant``: ``sliding_window_inference(roi 64^3, overlap 0, mode constant)``;
- ``monai-constant-bf16``: the same under bf16 autocast, model and input channels-last
  (eager bf16 at its fastest here: 0.48 s per 64^3 window against 0.58 s without
  channels-last and 0.88 s fp32), so bf16 can be set against bf16;
- ``monai-gaussian``: the same with overlap 0.25, mode gaussian (MONAI's defaults);
- ``torchio-crop``: ``GridSampler(64^3, overlap 6)`` + ``GridAggregator("crop")``;
- ``torchio-hann``: ``GridSampler(64^3, overlap 32)`` + ``GridAggregator("hann")``;
- ``torchio-crop-exact``: the peer setting with our accuracy: ``GridSampler(96^3, overlap
  2 x the network's receptive-field radius)`` + ``GridAggregator("crop")``, so every kept
  voxel saw its whole receptive field (seam-free inside the volume; at the volume border
  TorchIO's zero padding of the input differs from per-layer padding). MONAI's
  ``sliding_window_inference`` blends and cannot crop, so it has no such setting short of
  one window over the whole volume.
``ours-bf16-eager`` is ours in bf16 with the generated BatchNorm + ELU kernel switched
off (``MRENHANCE_FUSED_KERNELS=off``: eager ``addcmul`` + ELU, the path used where no C++
compiler is found; fp32 never uses the kernel); the timed call of ``ours-bf16`` includes
that kernel's compile (or on-disk cache load) in a fresh process. ``ours-fp32-onepass``
is our exact tiling with each tile in one pass (no streaming: the previous default).
``approx-default`` is our tiling before that: 64^3
tiles, 3-voxel crop margin, volume padded by the margin, eager network.

Writes ``benchmarks/results/bench_inference.{json,md,csv}``.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import provenance, tune_allocator, write_results  # noqa: E402

METHODS = (
    "ours-fp32",
    "ours-bf16",
    "ours-fp32-onepass",
    "ours-bf16-eager",
    "approx-default",
    "monai-constant",
    "monai-constant-bf16",
    "monai-gaussian",
    "torchio-crop",
    "torchio-hann",
    "torchio-crop-exact",
)
SIZES = {
    "tiny": (48, 48, 40),
    "small": (116, 116, 72),
    "mni": (197, 233, 189),
    "large": (320, 320, 256),
}


def _input(size: str):
    """The normalised LR MNI volume at the benchmark's size, and its head mask."""
    import numpy as np

    from mrenhance.preprocess import head_mask
    from mrenhance.tasks import get_task

    task = get_task("sr_t1")
    subject = __import__("mrenhance.tasks.sr_t1", fromlist=["x"]).load_subjects(
        task.data_config({})
    )[0]
    x = subject.inputs
    want = SIZES[size]
    if size in ("tiny", "small"):
        c = [n // 2 for n in x.shape]
        x = x[tuple(slice(ci - w // 2, ci - w // 2 + w) for ci, w in zip(c, want, strict=True))]
    elif size == "large":
        pad = [((w - n) // 2, w - n - (w - n) // 2) for n, w in zip(x.shape, want, strict=True)]
        x = np.pad(x, pad, mode="reflect")
    x = np.ascontiguousarray(x, dtype=np.float32)
    return x, head_mask(x)


def _peers_available() -> dict[str, bool]:
    found = {}
    for name in ("monai", "torchio"):
        try:
            __import__(name)
            found[name] = True
        except ImportError:
            found[name] = False
    return found


def worker(method: str, size: str, out: str, max_memory: float | None) -> dict:
    """Run one method once in this (fresh) process; save its output; return timings."""
    import numpy as np
    import torch

    from mrenhance.enhance_api import Enhancer

    if method.endswith("-eager"):  # ours without the generated BatchNorm + ELU kernel
        os.environ["MRENHANCE_FUSED_KERNELS"] = "off"
    x, _ = _input(size)
    ours_bf16 = method.startswith("ours") and "bf16" in method
    enhancer = Enhancer.from_weights(
        "mdcsrn-b4u4", precision="bf16" if ours_bf16 else "fp32", max_memory=max_memory
    )
    eager = enhancer.model
    if method == "ours-fp32-onepass":  # exact tiles, each in one pass (no streaming)
        enhancer.net.stream_chunk = None
    tensor = torch.from_numpy(x)[None, None]
    info: dict = {}
    t0 = time.perf_counter()
    if method.startswith("ours"):
        y = enhancer._infer(x)
        plan = enhancer.last_plan
        from mrenhance.models.fused import fused_kernel_status

        info = {
            "tiles": list(plan.patch),
            "overlap": list(plan.overlap),
            "bn_elu_kernel": fused_kernel_status(),
        }
    elif method == "approx-default":
        from mrenhance.engine.infer import infer

        y = infer(eager, x, 64, 6, blend="crop")
        info = {"tiles": [64, 64, 64], "overlap": [6, 6, 6]}
    elif method.startswith("monai"):
        from monai.inferers import sliding_window_inference

        overlap, mode = (0.25, "gaussian") if method == "monai-gaussian" else (0.0, "constant")
        bf16 = method.endswith("-bf16")
        if bf16:  # eager bf16 at its fastest here: autocast + channels-last (docs/performance.md)
            eager = eager.to(memory_format=torch.channels_last_3d)
            tensor = tensor.contiguous(memory_format=torch.channels_last_3d)
        with torch.inference_mode(), torch.autocast("cpu", torch.bfloat16, enabled=bf16):
            y = sliding_window_inference(tensor, (64, 64, 64), 1, eager, overlap, mode)
        y = y[0, 0].float().numpy()
        info = {"tiles": [64, 64, 64], "overlap": overlap, "mode": mode}
        if bf16:
            info["precision"] = "bf16"
    else:
        import torchio as tio

        from mrenhance.engine.grid import receptive_field_radius

        patch, overlap, mode = {
            "torchio-crop": (64, 6, "crop"),
            "torchio-hann": (64, 32, "hann"),
            "torchio-crop-exact": (96, 2 * receptive_field_radius(eager), "crop"),
        }[method]
        patch = tuple(min(patch, n) for n in x.shape)  # TorchIO refuses patches > image
        subject = tio.Subject(img=tio.ScalarImage(tensor=tensor[0]))
        sampler = tio.inference.GridSampler(subject, patch, overlap)
        aggregator = tio.inference.GridAggregator(sampler, overlap_mode=mode)
        loader = torch.utils.data.DataLoader(sampler, batch_size=1)
        with torch.inference_mode():
            for batch in loader:
                pred = eager(batch["img"][tio.DATA])
                aggregator.add_batch(pred, batch[tio.LOCATION])
        y = aggregator.get_output_tensor()[0].numpy()
        info = {"tiles": list(patch), "overlap": overlap, "mode": mode}
    seconds = time.perf_counter() - t0
    np.save(out, np.asarray(y, dtype=np.float32))
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB -> MiB
    return {"method": method, "size": size, "seconds": seconds, "peak_rss_mb": rss, **info}


def conv_peak_gflops(seconds: float = 3.0) -> dict[str, float]:
    """Attainable conv throughput here: Conv3d 64->64, 3^3, 48^3, fp32 and bf16 autocast.

    The best of the two memory layouts (NCDHW and channels-last), so that our
    channels-last streaming is not measured against a slower layout's peak.
    """
    import torch

    conv = torch.nn.Conv3d(64, 64, 3, padding=1).eval()
    flops = 2 * 64 * 64 * 27 * 48**3
    result: dict[str, float] = {}
    for layout in (torch.contiguous_format, torch.channels_last_3d):
        x = torch.randn(1, 64, 48, 48, 48).contiguous(memory_format=layout)
        conv = conv.to(memory_format=layout)
        for label, dtype in (("fp32", None), ("bf16", torch.bfloat16)):
            ctx = torch.autocast("cpu", dtype=dtype) if dtype else torch.inference_mode()
            with torch.inference_mode(), ctx:
                conv(x)
                n, t0 = 0, time.perf_counter()
                while time.perf_counter() - t0 < seconds:
                    conv(x)
                    n += 1
            rate = flops * n / (time.perf_counter() - t0) / 1e9
            result[label] = max(result.get(label, 0.0), rate)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", default="small,mni")
    parser.add_argument("--methods", default=",".join(METHODS))
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--max-memory", type=float, default=None, help="bytes (exact tiles)")
    parser.add_argument("--name", default="bench_inference")
    parser.add_argument("--worker", nargs=3, metavar=("METHOD", "SIZE", "OUT"))
    args = parser.parse_args()
    tune_allocator()
    import torch

    torch.set_num_threads(args.threads)
    if args.worker:
        print(json.dumps(worker(*args.worker, args.max_memory)), flush=True)
        return

    import numpy as np

    from mrenhance.metrics import psnr
    from mrenhance.models import create_model
    from mrenhance.models.complexity import macs_per_voxel

    peers = _peers_available()
    methods = [
        m
        for m in args.methods.split(",")
        if not (m.startswith("monai") and not peers["monai"])
        and not (m.startswith("torchio") and not peers["torchio"])
    ]
    flops_per_voxel = 2 * macs_per_voxel(create_model("mdcsrn-b4u4"))
    peak = conv_peak_gflops()
    env = {**os.environ, "OMP_NUM_THREADS": str(args.threads)}
    rows, runs = [], []
    with tempfile.TemporaryDirectory() as tmp:
        for size in args.sizes.split(","):
            x, mask = _input(size)
            outputs: dict[str, np.ndarray] = {}
            times: dict[str, list[float]] = {m: [] for m in methods}
            rss: dict[str, float] = {}
            extra: dict[str, dict] = {}
            for rep in range(args.reps):
                for method in methods:  # interleaved: A B C A B C
                    out = f"{tmp}/{method}-{size}.npy"
                    cmd = [sys.executable, __file__, "--worker", method, size, out]
                    cmd += ["--threads", str(args.threads)]
                    if args.max_memory:
                        cmd += ["--max-memory", str(args.max_memory)]
                    done = subprocess.run(cmd, capture_output=True, text=True, env=env, check=False)
                    if done.returncode != 0:
                        print(f"{method} {size}: failed: {done.stderr.strip()[-300:]}", flush=True)
                        continue
                    r = json.loads(done.stdout.strip().splitlines()[-1])
                    runs.append({**r, "rep": rep})
                    times[method].append(r["seconds"])
                    rss[method] = max(rss.get(method, 0.0), r["peak_rss_mb"])
                    keep = ("tiles", "overlap", "mode", "bn_elu_kernel")
                    extra[method] = {k: r[k] for k in r if k in keep}
                    outputs[method] = np.load(out)
                    print(f"rep {rep} {size} {method}: {r['seconds']:.1f} s", flush=True)
            ref = outputs.get("ours-fp32")
            ours = times.get("ours-fp32") or [float("nan")]
            for method in methods:
                if not times[method]:
                    continue
                y = outputs[method]
                diff = np.abs(y - ref)[mask] if ref is not None else np.array([np.nan])
                ratios = [t / o for t, o in zip(times[method], ours, strict=False)]
                med = statistics.median(times[method])
                rows.append(
                    {
                        "size": "x".join(map(str, SIZES[size])),
                        "method": method,
                        "min_s": round(min(times[method]), 2),
                        "median_s": round(med, 2),
                        "ratio_to_ours_fp32": round(statistics.median(ratios), 3),
                        "peak_rss_mb": round(rss[method]),
                        "max_abs_diff": float(diff.max()),
                        "mean_abs_diff": float(diff.mean()),
                        "psnr_vs_exact": psnr(y[mask], ref[mask], data_range=1.0)
                        if ref is not None and method != "ours-fp32"
                        else None,
                        "gflops": round(flops_per_voxel * x.size / med / 1e9, 1),
                        "reps": len(times[method]),
                        **{k: str(v) for k, v in extra.get(method, {}).items()},
                    }
                )
    meta = provenance()
    meta.update(
        conv_peak_gflops={k: round(v, 1) for k, v in peak.items()},
        flops_per_voxel=flops_per_voxel,
        threads=args.threads,
        runs=runs,
        note="times: tiled inference only; accuracy vs our exact fp32 (= untiled to 1e-5) "
        "inside the head mask, normalised intensities (data range 1)",
    )
    write_results(args.name, rows, meta)


if __name__ == "__main__":
    main()
