"""Reliability counts for the README: bad inputs tried, kills survived, fuzz iterations run.

    .venv/bin/python benchmarks/reliability_counts.py                 # about 5 minutes
    .venv/bin/python benchmarks/reliability_counts.py --quick         # about 1 minute
    .venv/bin/python benchmarks/reliability_counts.py --atheris-runs 100000
    .venv/bin/python benchmarks/reliability_counts.py --sections corpus,signals --jobs 3

1. Every case of the bad-input corpus (tests/bad_inputs/) through a fresh
   ``python -m mrenhance`` process: exit 2 (a batch case: 1, its good siblings written),
   one stderr line naming the file and the problem, nothing else written, inputs
   byte-identical; and the Python API raising InputError with the same message
   (``bad_inputs.build.check_promise``, as in the tests).
2. SIGKILL at random moments of large atomic writes (300^3 float32 NIfTI, 64 MiB
   checkpoint) and of ``mrenhance train`` (then ``--resume``), as in tests/test_kill.py:
   each destination must be the complete old or new file; each resumed run's weights must
   equal an uninterrupted run's bit for bit. SIGTERM/SIGINT at random moments of a large
   write (tests/test_signals.py): exit 143/130, one line, no temp file, nothing partial.
3. Fuzzing: the hypothesis properties of tests/fuzz at ``--fuzz-examples`` per test, and
   (if atheris is installed) ``tests/fuzz/fuzz_readers.py -atheris_runs=N``.

Writes ``benchmarks/results/reliability.json`` (counts, failures, provenance) and
``reliability.csv`` (the table), and prints the table. Exit status 1 if anything was lost
or any promise broken.
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import io
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
TESTS = ROOT / "tests"
RESULTS = ROOT / "benchmarks" / "results"
for p in (str(TESTS), str(TESTS / "fuzz")):
    if p not in sys.path:
        sys.path.insert(0, p)

ENV = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}


def _provenance() -> dict[str, Any]:
    from mrenhance.runtime import provenance

    return {**provenance(folder=ROOT), "threads": ENV["OMP_NUM_THREADS"]}


# ---------------------------------------------------------------------------- 1. corpus


def run_corpus(jobs: int = 1, timeout_s: float = 600) -> dict[str, Any]:
    """Each case through a fresh process (``jobs`` at a time); a process that runs past
    ``timeout_s`` is killed and counts as a broken promise (a hang)."""
    from bad_inputs.build import CASES, build, check_api, check_promise, snapshot

    names = sorted(CASES)
    tried, failures = 0, []
    running: list[tuple[str, Any, Path, dict, Any, float, Any]] = []

    def finish(item: tuple) -> None:
        nonlocal tried
        name, c, folder, before, proc, started, tmp = item
        try:
            out, err = proc.communicate(timeout=max(1.0, timeout_s - (time.time() - started)))
            rc = proc.returncode
        except subprocess.TimeoutExpired:
            proc.kill()
            out, err = proc.communicate()
            rc = None
        tried += 1
        line = err.splitlines()[0] if err.splitlines() else ""
        if rc is None:
            problems = [f"no answer after {timeout_s:.0f} s (killed)"]
        else:
            problems = check_promise(c, folder, before, snapshot(folder), rc, out, err)
            with contextlib.redirect_stdout(io.StringIO()):
                problems += check_api(c, line)
        if problems:
            failures.append({"case": name, "problems": problems, "stderr": err})
        print(f"  {'ok ' if not problems else 'BAD'} {name}: {line[:110]}", flush=True)
        tmp.cleanup()

    for name in names:
        tmp = tempfile.TemporaryDirectory(prefix=f"bad-{name}-")
        folder = Path(tmp.name)
        c = build(name, folder)
        before = snapshot(folder)
        proc = subprocess.Popen(
            [sys.executable, "-m", "mrenhance", *c.argv],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            errors="surrogateescape",
            env=ENV,
        )
        running.append((name, c, folder, before, proc, time.time(), tmp))
        while len(running) >= jobs:
            finish(running.pop(0))
    while running:
        finish(running.pop(0))
    return {"bad_inputs_tried": tried, "bad_inputs_refused_cleanly": tried - len(failures),
            "failures": failures}  # fmt: skip


# ---------------------------------------------------------------------------- 2. kills


def run_write_kills(n_nifti: int, n_checkpoint: int, seed: int) -> dict[str, Any]:
    import numpy as np

    import test_kill as tk

    rng = np.random.default_rng(seed)
    out: dict[str, Any] = {}
    for kind, n, writer, version_of in (
        ("nifti_300^3", n_nifti, tk._nifti_writer, tk._nifti_version),
        ("checkpoint_64MiB", n_checkpoint, tk._checkpoint_writer, tk._checkpoint_version),
    ):
        with tempfile.TemporaryDirectory(prefix="kill-") as d:
            target = Path(d) / ("big.nii" if kind.startswith("nifti") else "last.pt")
            _, write_s = tk.fork_write_and_kill(writer(target, 1), None)
            current, counts, lost = 1, {"kills": 0, "mid_write": 0, "old": 0, "new": 0}, 0
            for version in range(2, n + 2):
                temps = set(tk.stale_temps(target))
                delay = rng.uniform(0, 1.2 * write_s)  # a few land after the rename
                killed, _ = tk.fork_write_and_kill(writer(target, version), delay)
                try:
                    found = version_of(target)
                except Exception:  # noqa: BLE001 - a partial or mixed file: something lost
                    found = -1
                if found not in (current, version):
                    lost += 1
                counts["kills"] += int(killed)
                counts["mid_write"] += int(bool(set(tk.stale_temps(target)) - temps))
                counts["old" if found == current else "new"] += 1
                current = found
            tk.fork_write_and_kill(writer(target, 10**6), None)
            counts["stale_temps_after_next_write"] = len(tk.stale_temps(target))
            counts["lost"] = lost
            out[kind] = counts
            print(f"  {kind}: {counts}", flush=True)
    return out


def run_term_signals(n: int, seed: int) -> dict[str, Any]:
    """SIGTERM (and every 5th time SIGINT) at random moments of a forked ``mrenhance``
    writing a 300^3 NIfTI, as in tests/test_signals.py: exit 143/130 with one line, no
    temp file, the destination absent or complete."""
    import numpy as np

    import test_signals as ts

    rng = np.random.default_rng(seed)
    full = 352 + 4 * int(np.prod(ts.BIG_SHAPE))
    counts = {"signals": 0, "interrupted_mid_write": 0, "after_the_rename": 0, "broken": 0}
    failures = []
    with tempfile.TemporaryDirectory(prefix="term-") as d:
        d = Path(d)
        out, err = d / "big.nii", d / "stderr.txt"
        _, window = ts._forked_write(out, err, None, 0.0)
        out.unlink()
        for i in range(n):
            sig = ts.signal.SIGINT if i % 5 == 4 else ts.signal.SIGTERM
            delay = float(rng.uniform(0, 1.1 * window))
            rc, _ = ts._forked_write(out, err, sig, delay)
            lines = err.read_text().splitlines()
            counts["signals"] += 1
            size = out.stat().st_size if out.exists() else None
            ok = not ts.temps(d) and size in (None, full)
            if rc != 0:
                ok = ok and rc == ts.EXIT_CODES[sig] and len(lines) == 1
            counts["after_the_rename" if size == full else "interrupted_mid_write"] += 1
            if not ok:
                counts["broken"] += 1
                failures.append({"delay_s": delay, "rc": rc, "stderr": lines, "size": size})
            out.unlink(missing_ok=True)
    print(f"  SIGTERM/SIGINT: {counts}", flush=True)
    return {**counts, "failures": failures}


def run_training_kills(n: int, seed: int) -> dict[str, Any]:
    import numpy as np
    import torch

    import test_kill as tk
    from bad_inputs.build import smooth_image, tiny_recipe, write_nifti, write_recipe

    rng = np.random.default_rng(seed)
    identical, steps_killed, failures = 0, [], []
    with tempfile.TemporaryDirectory(prefix="train-kill-") as d:
        d = Path(d)
        data = write_nifti(d / "blob.nii.gz", smooth_image((40, 40, 40)))
        recipe = write_recipe(d / "tiny.yaml", tiny_recipe(data, steps=tk.STEPS))
        ref = d / "reference"
        subprocess.run(tk._train_cmd(recipe, ref), env=ENV, check=True, capture_output=True)
        expected = tk._weights(ref)
        for trial in range(n):
            run = d / f"killed{trial}"
            target = int(rng.integers(1, tk.STEPS - 2))
            steps_killed.append(tk.kill_training_at(recipe, run, target, rng.uniform(0, 0.06)))
            subprocess.run(tk._train_cmd(recipe, run, resume=True), env=ENV, check=True,
                           capture_output=True)  # fmt: skip
            got = tk._weights(run)
            if all(torch.equal(got[k], expected[k]) for k in expected):
                identical += 1
            else:
                failures.append({"trial": trial, "killed_at_step": steps_killed[-1]})
            shutil.rmtree(run, ignore_errors=True)
    result = {"kills": len(steps_killed), "resumed_bit_identical": identical,
              "killed_at_steps": steps_killed, "failures": failures}  # fmt: skip
    print(f"  training: {result}", flush=True)
    return result


# ---------------------------------------------------------------------------- 3. fuzz


def run_hypothesis(examples: int) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as d:
        counts = Path(d) / "counts.txt"
        env = {**ENV, "MRENHANCE_FUZZ_EXAMPLES": str(examples),
               "MRENHANCE_FUZZ_COUNTS": str(counts)}  # fmt: skip
        proc = subprocess.run(
            [
                sys.executable,
                "-m",
                "pytest",
                "-q",
                "-p",
                "no:cacheprovider",
                "-W",
                "ignore::UserWarning",
                str(TESTS / "fuzz"),
            ],  # fmt: skip
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
        )
        total, ok, refused = (
            (int(v) for v in counts.read_text().split()) if counts.exists() else (0, 0, 0)
        )
    result = {"examples_per_test": examples, "files_checked": total, "loaded": ok,
              "refused": refused, "passed": proc.returncode == 0}  # fmt: skip
    if proc.returncode != 0:
        result["output"] = proc.stdout[-4000:]
    print(f"  hypothesis: {result}", flush=True)
    return result


def run_atheris(runs: int) -> dict[str, Any]:
    try:
        import atheris  # noqa: F401
    except ImportError:
        return {"runs": 0, "skipped": "atheris is not installed (pip install -e '.[fuzz]')"}
    with tempfile.TemporaryDirectory() as d:
        proc = subprocess.run(
            [sys.executable, str(TESTS / "fuzz" / "fuzz_readers.py"), f"-atheris_runs={runs}"],
            cwd=d,
            env=ENV,
            capture_output=True,
            text=True,
        )
    done = re.findall(r"Done (\d+) (?:runs )?in (\d+) second", proc.stderr + proc.stdout)
    result = {"runs": int(done[-1][0]) if done else 0,
              "seconds": int(done[-1][1]) if done else None,
              "passed": proc.returncode == 0 and bool(done)}  # fmt: skip
    cov = re.findall(r"cov: (\d+)", proc.stderr)
    if cov:
        result["coverage_edges"] = int(cov[-1])
    if not result["passed"]:
        result["output"] = (proc.stderr + proc.stdout)[-4000:]
    print(f"  atheris: {result}", flush=True)
    return result


# ---------------------------------------------------------------------------- main

_NOT_RUN_CORPUS = {"bad_inputs_tried": 0, "failures": [], "skipped": "not run"}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="fewer kills and fuzz iterations")
    ap.add_argument("--nifti-kills", type=int, default=40)
    ap.add_argument("--checkpoint-kills", type=int, default=40)
    ap.add_argument("--train-kills", type=int, default=5)
    ap.add_argument("--term-signals", type=int, default=20, help="SIGTERM/SIGINT mid-write")
    ap.add_argument("--fuzz-examples", type=int, default=1000, help="hypothesis, per test")
    ap.add_argument("--atheris-runs", type=int, default=20000)
    ap.add_argument("--seed", type=int, default=20240607)
    ap.add_argument("--jobs", type=int, default=1, help="corpus processes at a time")
    ap.add_argument(
        "--sections",
        default="corpus,kills,signals,fuzz",
        help="comma-separated subset to run (the others are reported as not run)",
    )
    args = ap.parse_args(argv)
    if args.quick:
        args.nifti_kills, args.checkpoint_kills, args.train_kills = 10, 10, 2
        args.term_signals = 5
        args.fuzz_examples, args.atheris_runs = 100, 2000

    sections = set(args.sections.split(","))
    t0 = time.time()
    print("1/3 bad-input corpus through the CLI", flush=True)
    corpus = run_corpus(args.jobs) if "corpus" in sections else _NOT_RUN_CORPUS
    print("2/3 SIGKILL during writes and training; SIGTERM during writes", flush=True)
    if "kills" in sections:
        writes = run_write_kills(args.nifti_kills, args.checkpoint_kills, args.seed)
        training = run_training_kills(args.train_kills, args.seed)
    else:
        writes, training = {}, {"kills": 0, "failures": [], "skipped": "not run"}
    terms = (
        run_term_signals(args.term_signals, args.seed)
        if "signals" in sections
        else {"signals": 0, "broken": 0, "skipped": "not run"}
    )
    print("3/3 fuzzing", flush=True)
    if "fuzz" in sections:
        hypo = run_hypothesis(args.fuzz_examples)
        ath = run_atheris(args.atheris_runs)
    else:
        hypo = {"files_checked": 0, "passed": True, "skipped": "not run"}
        ath = {"runs": 0, "skipped": "not run"}

    write_kills = sum(v["kills"] for v in writes.values())
    lost = sum(v["lost"] for v in writes.values()) + len(training["failures"])
    rows = [
        {"check": "bad inputs tried (CLI + API)", "count": corpus["bad_inputs_tried"],
         "broken promises": len(corpus["failures"])},
        {"check": "SIGKILL during large writes", "count": write_kills,
         "broken promises": sum(v["lost"] for v in writes.values())},
        {"check": "SIGKILL during training, then --resume", "count": training["kills"],
         "broken promises": len(training["failures"])},
        {"check": "SIGTERM/SIGINT during large writes", "count": terms["signals"],
         "broken promises": terms["broken"]},
        {"check": "hypothesis fuzz files", "count": hypo["files_checked"],
         "broken promises": 0 if hypo["passed"] else 1},
        {"check": "atheris fuzz runs", "count": ath["runs"],
         "broken promises": 0 if ath.get("passed", True) else 1},
    ]  # fmt: skip
    payload = {
        "benchmark": "reliability",
        "sections": sorted(sections),
        "provenance": _provenance(),
        "seconds": round(time.time() - t0, 1),
        "rows": rows,
        "corpus": corpus,
        "write_kills": writes,
        "training_kills": training,
        "term_signals": terms,
        "hypothesis": hypo,
        "atheris": ath,
        "lost": lost,
    }
    from mrenhance.io.atomic import write_text_atomic

    RESULTS.mkdir(parents=True, exist_ok=True)
    everything = {"corpus", "kills", "signals", "fuzz"}
    # a partial run never overwrites the full measurement
    suffix = "" if sections >= everything else "_" + "_".join(sorted(sections & everything))
    out = RESULTS / f"reliability{suffix}.json"
    write_text_atomic(out, json.dumps(payload, indent=2, default=str) + "\n", overwrite=True)
    table = io.StringIO()  # the table alone, as the README quotes it
    writer = csv.DictWriter(table, fieldnames=["check", "count", "broken promises"])
    writer.writeheader()
    writer.writerows(rows)
    write_text_atomic(out.with_suffix(".csv"), table.getvalue(), overwrite=True)

    width = max(len(r["check"]) for r in rows)
    print(f"\n| {'check':<{width}} | count | broken promises |")
    print(f"|{'-' * (width + 2)}|-------|-----------------|")
    for r in rows:
        print(f"| {r['check']:<{width}} | {r['count']:>5} | {r['broken promises']:>15} |")
    prov = payload["provenance"]
    print(f"\n{prov['command']} @ {prov['git_commit']} on {prov['machine']}, "
          f"{payload['seconds']} s -> {out.relative_to(ROOT)}")  # fmt: skip
    broken = sum(r["broken promises"] for r in rows)
    return 1 if broken else 0


if __name__ == "__main__":
    sys.exit(main())
