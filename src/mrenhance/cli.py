"""The ``mrenhance`` command line: a thin layer over the library.

Every user error (bad file, bad option, existing output) is printed as one line
``mrenhance: error: <message>`` and exits with code 2; nothing is written in that case.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
import traceback
from collections.abc import Sequence
from pathlib import Path
from typing import Any

EXIT_USAGE = 2
EXAMPLES = """examples:
  mrenhance info t1.nii.gz
  mrenhance models
  mrenhance enhance t1_lr.nii.gz -o t1_sr.nii.gz --model mdcsrn-b4u4
  mrenhance enhance scans/ -o out/ --model mdcsrn-b4u4 --summary out/summary.json
  mrenhance simulate kspace t1.nii.gz -o t1_lr.nii.gz --factors 2,2,1
  mrenhance train sr_mdcsrn train.steps=2000 train.patch_size=32 --run-dir runs/b4u4
  mrenhance evaluate sr_t1 -o eval/ --models tricubic,mdcsrn-b4u4
  mrenhance evaluate --prediction sr.nii.gz --reference hr.nii.gz --mask brain.nii.gz
  mrenhance demo --output demo_output
"""


def _tuple(text: str, cast=float) -> tuple:
    try:
        return tuple(cast(v) for v in text.split(","))
    except ValueError as err:
        raise argparse.ArgumentTypeError(f"expected comma-separated numbers, got {text!r}") from err


def _ints(text: str) -> int | tuple[int, ...]:
    values = _tuple(text, int)
    return values[0] if len(values) == 1 else values


def _floats(text: str) -> tuple[float, ...]:
    return _tuple(text, float)


def _tune_allocator() -> None:
    """Keep freed memory in glibc's arena: ~3x faster eager PyTorch on small CPUs.

    MACHINE-NOTES: page faults dominate on this kind of VM; M_MMAP_THRESHOLD and
    M_TRIM_THRESHOLD set high keep buffers for reuse. Harmless where glibc is absent.
    """
    try:
        import ctypes

        libc = ctypes.CDLL("libc.so.6")
        libc.mallopt(-1, 2**31 - 1)  # M_TRIM_THRESHOLD: int max (env var can raise it further)
        libc.mallopt(-3, 2**31 - 1)  # M_MMAP_THRESHOLD
    except (OSError, AttributeError):
        pass


# ---------------------------------------------------------------------------- commands
def cmd_info(args: argparse.Namespace) -> int:
    import numpy as np

    from mrenhance.io import load

    vol = load(args.file, nan_policy="zero" if args.allow_nan else "error")
    if args.expect:
        from mrenhance.io.validate import check_series

        check_series(vol, args.expect, args.file)
    data = vol.data
    lines = [
        f"file         {args.file}",
        f"shape        {data.shape}",
        f"voxel size   {tuple(round(v, 4) for v in vol.voxel_size)} mm",
        f"orientation  {vol.orientation}",
        f"range        [{float(data.min()):.6g}, {float(data.max()):.6g}]"
        f" mean {float(data.mean()):.6g}",
    ]
    for key in ("bvals", "times_s", "tr_s", "modality", "series_description"):
        if key in vol.meta and vol.meta[key] is not None:
            value = vol.meta[key]
            if hasattr(value, "tolist"):
                value = value.tolist()
            lines.append(f"{key:<12} {value}")
    lines.append(
        "affine       " + np.array2string(vol.affine, precision=4).replace("\n", "\n" + " " * 13)
    )
    print("\n".join(lines))
    return 0


def cmd_models(args: argparse.Namespace) -> int:
    from mrenhance.models import list_models
    from mrenhance.models.complexity import count_parameters
    from mrenhance.models.registry import create_model
    from mrenhance.models.weights import list_shipped_weights

    shipped = {c["architecture"]["name"]: c for c in list_shipped_weights()}
    shipped_by_name = {c["name"]: c for c in list_shipped_weights()}
    rows = []
    for info in list_models():
        params = count_parameters(create_model(info.name))
        names = [n for n, c in shipped_by_name.items() if c["architecture"]["name"] == info.name]
        rows.append(
            (
                info.name,
                info.task,
                f"{info.spatial_dims}D",
                f"{params:,}",
                ", ".join(names) or "-",
                info.description[:60],
            )
        )
    header = ("model", "task", "dims", "parameters", "shipped weights", "description")
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    for row in [header, *rows]:
        print("  ".join(str(v).ljust(w) for v, w in zip(row, widths, strict=True)).rstrip())
    if args.verbose:
        for name, card in shipped_by_name.items():
            print(f"\n{name}: {json.dumps(card.get('metrics', {}), indent=None)}")
    del shipped
    return 0


def _enhance_targets(inputs: list[str], output: str) -> list[tuple[Path, Path]]:
    """Pair each input with its output path; a folder or several inputs need an output folder."""
    from mrenhance.errors import InputError

    files: list[Path] = []
    for text in inputs:
        p = Path(text)
        if p.is_dir() and not _looks_like_dicom_dir(p):
            files.extend(sorted(q for q in p.iterdir() if q.name.endswith((".nii", ".nii.gz"))))
        else:
            files.append(p)
    out = Path(output)
    batch = len(inputs) > 1 or (
        Path(inputs[0]).is_dir() and not _looks_like_dicom_dir(Path(inputs[0]))
    )
    if not batch:
        if out.is_dir():  # one input, -o a folder: write into it, as for several inputs
            stem = files[0].name.removesuffix(".gz").removesuffix(".nii")
            return [(files[0], out / f"{stem}_enhanced.nii.gz")]
        return [(files[0], out)]
    if not out.is_dir():
        raise InputError(f"{out}: with several inputs, -o must be an existing folder")
    if not files:
        raise InputError(f"{inputs[0]}: no NIfTI files found")
    pairs = []
    for f in files:
        stem = f.name.removesuffix(".gz").removesuffix(".nii")
        pairs.append((f, out / f"{stem}_enhanced.nii.gz"))
    return pairs


def _looks_like_dicom_dir(p: Path) -> bool:
    if not p.is_dir():
        return False
    return not any(q.name.endswith((".nii", ".nii.gz")) for q in p.iterdir())


def cmd_enhance(args: argparse.Namespace) -> int:
    from mrenhance.enhance_api import check_tiling, enhance, resolve_weights
    from mrenhance.errors import InputError, MrenhanceError
    from mrenhance.io import load, save
    from mrenhance.io.atomic import check_output_path, write_text_atomic
    from mrenhance.io.nifti import is_nifti_name
    from mrenhance.models.weights import load_weights

    # absurd tiling options are refused before any file is read
    check_tiling(
        args.patch_size if args.patch_size is not None else 64,
        args.overlap if args.overlap is not None else 0,
        args.batch_size,
    )
    # fail early on a bad model name or tampered weights (sha256 against the card)
    load_weights(resolve_weights(args.model))
    if args.summary:
        check_output_path(args.summary, overwrite=True)
    pairs = _enhance_targets(args.inputs, args.output)
    single = len(pairs) == 1 and not Path(args.output).is_dir()
    results: list[dict[str, Any]] = []
    for src, dst in pairs:
        t0 = time.perf_counter()
        try:
            check_output_path(dst, args.overwrite)
            if not is_nifti_name(dst):  # before the work, not after it
                raise InputError(f"{dst}: can only save NIfTI (.nii or .nii.gz)")
            vol = load(src, nan_policy=args.nan_policy)
            out = enhance(
                vol,
                args.model,
                device=args.device,
                patch_size=args.patch_size,
                overlap=args.overlap,
                blend=args.blend,
                batch_size=args.batch_size,
                progress=not args.quiet,
                upsample=args.upsample,
                upsample_method=args.upsample_method,
            )
            save(out, dst, overwrite=args.overwrite)
            results.append(
                {
                    "input": str(src),
                    "output": str(dst),
                    "status": "ok",
                    "seconds": round(time.perf_counter() - t0, 2),
                }
            )
            if not args.quiet:
                print(f"{src} -> {dst} ({time.perf_counter() - t0:.1f} s)")
        except Exception as exc:
            if single:
                raise
            # choice: in a batch even an internal error fails one file, not the batch
            msg = str(exc)
            if not isinstance(exc, MrenhanceError):
                msg = f"{src}: internal error: {type(exc).__name__}: {msg}"
            msg = " ".join(msg.split())
            results.append(
                {"input": str(src), "output": str(dst), "status": "failed", "error": msg}
            )
            print(f"mrenhance: error: {msg}", file=sys.stderr)
    failed = [r for r in results if r["status"] != "ok"]
    if args.summary:
        write_text_atomic(
            args.summary,
            json.dumps({"model": args.model, "results": results, "failed": len(failed)}, indent=2),
            overwrite=True,
        )
    if not single:
        print(f"{len(results) - len(failed)} succeeded, {len(failed)} failed")
    return 1 if failed else 0


def cmd_simulate(args: argparse.Namespace) -> int:
    import numpy as np

    from mrenhance.io import load, save
    from mrenhance.io.atomic import check_output_path

    check_output_path(args.output, args.overwrite)
    vol = load(args.input)
    rng = np.random.default_rng(args.seed)
    if args.kind == "kspace":
        from mrenhance.simulate.kspace import truncate_kspace

        data = truncate_kspace(vol.data, args.factors, taper=args.taper, output="same_grid")
        step = f"simulate kspace factors={args.factors} taper={args.taper}"
    elif args.kind == "thick-slice":
        from mrenhance.simulate.kspace import thick_slice

        data = thick_slice(vol.data, args.slice_factor, axis=args.axis)
        step = f"simulate thick-slice factor={args.slice_factor} axis={args.axis}"
    else:
        step = "simulate noise"
        data = vol.data
    if args.snr:
        from mrenhance.simulate.noise import add_gaussian_noise, add_rician_noise

        noise = add_rician_noise if args.noise == "rician" else add_gaussian_noise
        data = noise(data, args.snr, rng)
        step += f" {args.noise} snr={args.snr} seed={args.seed}"
    save(vol.with_data(data, step=step), args.output, overwrite=args.overwrite)
    print(f"{args.input} -> {args.output}: {step}")
    return 0


def cmd_train(args: argparse.Namespace) -> int:
    from mrenhance.training import train_recipe

    result = train_recipe(
        args.recipe,
        args.overrides,
        run_dir=args.run_dir,
        resume=args.resume,
        device=args.device,
        stage=args.stage,
        progress=not args.quiet,
    )
    print(json.dumps(result, indent=2, default=str))
    return 0


def cmd_evaluate(args: argparse.Namespace) -> int:
    from mrenhance.errors import InputError

    if args.prediction or args.reference:
        if not (args.prediction and args.reference):
            raise InputError("evaluate: --prediction and --reference go together")
        from mrenhance.evaluation import evaluate_files

        rows = evaluate_files(
            args.prediction, args.reference, mask=args.mask, data_range=args.data_range
        )
    else:
        if not args.task:
            raise InputError("evaluate: name a task (sr_t1) or give --prediction/--reference")
        from mrenhance.evaluation import evaluate_task

        rows = evaluate_task(
            args.task,
            args.models,
            output=args.output,
            overwrite=args.overwrite,
            device=args.device,
            weights=args.weights,
        )
    from mrenhance.report.tables import format_markdown

    print(format_markdown(rows))
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from mrenhance.demo import run_demo

    run_demo(args.output, overwrite=args.overwrite, full=args.full, device=args.device)
    return 0


# ---------------------------------------------------------------------------- parser
def build_parser() -> argparse.ArgumentParser:
    from mrenhance import __version__

    parser = argparse.ArgumentParser(
        prog="mrenhance",
        description="Deep-learning enhancement of MR images (NIfTI or DICOM).",
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"mrenhance {__version__}")
    parser.add_argument("--debug", action="store_true", help="show tracebacks of internal errors")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    p = sub.add_parser(
        "info",
        help="describe an image (shape, voxel size, orientation, range)",
        epilog="example: mrenhance info t1.nii.gz",
    )
    p.add_argument("file", help="NIfTI file or DICOM series folder")
    p.add_argument("--allow-nan", action="store_true", help="report files holding NaN/Inf")
    p.add_argument(
        "--expect",
        choices=("t1", "dwi", "dsc"),
        default=None,
        help="also check the series kind: t1 3D; dwi 4D with one b-value per volume; "
        "dsc 4D with >= 10 frames",
    )
    p.set_defaults(func=cmd_info)

    p = sub.add_parser("models", help="list registered models and shipped weights")
    p.add_argument("-v", "--verbose", action="store_true", help="also print shipped metrics")
    p.set_defaults(func=cmd_models)

    p = sub.add_parser(
        "enhance",
        help="apply a model to one image, several, or a folder",
        epilog="examples:\n  mrenhance enhance lr.nii.gz -o sr.nii.gz --model mdcsrn-b4u4\n"
        "  mrenhance enhance in_dir/ -o out_dir/ --model mdcsrn-b4u4 --summary s.json",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "inputs", nargs="+", help="NIfTI files, DICOM series folders, or a folder of NIfTIs"
    )
    p.add_argument("-o", "--output", required=True, help="output file (one input) or folder")
    p.add_argument("--model", required=True, help="shipped model name or path to .safetensors")
    p.add_argument("--device", default="cpu", help="cpu, cuda, cuda:N or auto (default cpu)")
    p.add_argument("--patch-size", type=_ints, default=None, help="tile size, e.g. 64 or 64,64,48")
    p.add_argument("--overlap", type=_ints, default=None, help="tile overlap in voxels")
    p.add_argument("--blend", choices=("crop", "average", "gaussian"), default=None)
    p.add_argument("--batch-size", type=int, default=1)
    p.add_argument(
        "--upsample",
        type=_floats,
        default=None,
        help="resample a low-matrix image first, e.g. 2,2,1",
    )
    p.add_argument("--upsample-method", choices=("sinc", "cubic", "linear"), default="sinc")
    p.add_argument("--nan-policy", choices=("error", "zero"), default="error")
    p.add_argument("--overwrite", action="store_true")
    p.add_argument("--summary", default=None, help="write a JSON summary of the batch")
    p.add_argument("-q", "--quiet", action="store_true")
    p.set_defaults(func=cmd_enhance)

    p = sub.add_parser(
        "simulate",
        help="degrade an image the way a paper does",
        epilog="example: mrenhance simulate kspace t1.nii.gz -o lr.nii.gz --factors 2,2,1",
    )
    p.add_argument("kind", choices=("kspace", "thick-slice", "noise"))
    p.add_argument("input")
    p.add_argument("-o", "--output", required=True)
    p.add_argument(
        "--factors", type=_floats, default=(2.0, 2.0, 1.0), help="k-space truncation per axis"
    )
    p.add_argument("--taper", choices=("hamming", "tukey"), default=None)
    p.add_argument("--slice-factor", type=int, default=3)
    p.add_argument("--axis", type=int, default=2)
    p.add_argument("--snr", type=float, default=None, help="add noise at this SNR")
    p.add_argument("--noise", choices=("rician", "gaussian"), default="rician")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--overwrite", action="store_true")
    p.set_defaults(func=cmd_simulate)

    p = sub.add_parser(
        "train",
        help="train from a recipe (YAML) with key=value overrides",
        epilog="examples:\n  mrenhance train sr_mdcsrn train.steps=2000 train.patch_size=32\n"
        "  torchrun --nproc_per_node 2 -m mrenhance train sr_mdcsrn --run-dir runs/x\n"
        "  mrenhance train sr_mdcsrn --run-dir runs/x --resume",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("recipe", help="a shipped recipe name (sr_mdcsrn) or a YAML path")
    p.add_argument("overrides", nargs="*", help="key=value, e.g. train.steps=100")
    p.add_argument("--run-dir", default=None, help="run folder (default runs/<recipe>-<time>)")
    p.add_argument("--resume", action="store_true", help="continue a killed run from last.pt")
    p.add_argument("--device", default="cpu")
    p.add_argument("--stage", choices=("supervised", "gan", "all"), default="supervised")
    p.add_argument("-q", "--quiet", action="store_true")
    p.set_defaults(func=cmd_train)

    p = sub.add_parser(
        "evaluate",
        help="a task's evaluation protocol, or metrics between two files",
        epilog="examples:\n  mrenhance evaluate sr_t1 -o eval/\n"
        "  mrenhance evaluate --prediction sr.nii.gz --reference hr.nii.gz",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("task", nargs="?", help="sr_t1")
    p.add_argument("--models", default="all", help="comma-separated methods (default all)")
    p.add_argument("-o", "--output", default=None, help="folder for the table and figures")
    p.add_argument(
        "--weights",
        nargs="*",
        default=None,
        help="extra .safetensors files or folders to evaluate (your own runs)",
    )
    p.add_argument("--prediction", default=None)
    p.add_argument("--reference", default=None)
    p.add_argument("--mask", default=None)
    p.add_argument("--data-range", type=float, default=None)
    p.add_argument("--device", default="cpu")
    p.add_argument("--overwrite", action="store_true")
    p.set_defaults(func=cmd_evaluate)

    p = sub.add_parser("demo", help="the main job on bundled sample data (MNI152 T1)")
    p.add_argument("--output", default="demo_output")
    p.add_argument("--overwrite", action="store_true")
    p.add_argument("--full", action="store_true", help="whole volume instead of the test slab")
    p.add_argument("--device", default="cpu")
    p.set_defaults(func=cmd_demo)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point; returns the exit code (0 ok, 1 some batch items failed, 2 user error)."""
    from mrenhance.errors import MrenhanceError

    _tune_allocator()
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "command", None):
        parser.print_help()
        return EXIT_USAGE
    try:
        return int(args.func(args) or 0)
    except MrenhanceError as exc:
        print(f"mrenhance: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("mrenhance: interrupted", file=sys.stderr)
        return 130
    except MemoryError:
        print("mrenhance: error: out of memory (try a smaller --patch-size)", file=sys.stderr)
        return EXIT_USAGE
    except Exception as exc:  # a bug: one line unless --debug
        if args.debug or os.environ.get("MRENHANCE_DEBUG"):
            traceback.print_exc()
        else:
            print(
                f"mrenhance: internal error: {type(exc).__name__}: {exc} "
                "(run with --debug for the traceback and please report it)",
                file=sys.stderr,
            )
        return 1


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
