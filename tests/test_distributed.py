import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from _ddp_worker import GAN, GAN_STEP, SUPERVISED, SUPERVISED_LR
from _tiny import TinyCritic, TinyNet, TinyPairs
from mrenhance.engine import distributed as ddp
from mrenhance.engine.training import SupervisedStep, Trainer, WGANGPStep
from mrenhance.errors import ConfigError

HERE = Path(__file__).parent


def test_single_process_is_a_no_op(monkeypatch):
    for var in ("RANK", "WORLD_SIZE", "LOCAL_RANK"):
        monkeypatch.delenv(var, raising=False)
    info = ddp.init_distributed("cpu")
    assert info == ddp.DistInfo(0, 1, 0, torch.device("cpu"), True)
    assert not info.distributed
    model = torch.nn.Linear(2, 2)
    assert ddp.wrap_ddp(model, info) is model
    assert ddp.unwrap(model) is model
    t = torch.tensor([1.0, 3.0])
    assert ddp.all_reduce_mean(t) is t
    assert ddp.broadcast_object({"a": 1}) == {"a": 1}
    ddp.barrier()
    ddp.cleanup()


def test_world_size_one_env_is_single_process(monkeypatch):
    monkeypatch.setenv("WORLD_SIZE", "1")
    monkeypatch.setenv("RANK", "0")
    assert ddp.init_distributed("cpu").world_size == 1
    monkeypatch.setenv("WORLD_SIZE", "two")
    with pytest.raises(ConfigError, match="WORLD_SIZE='two' is not an integer"):
        ddp.init_distributed("cpu")


@pytest.mark.slow
def test_two_process_ddp_equals_one_process_with_the_whole_batch(tmp_path):
    # this checkout's package first: the workers must run the code under test
    path = os.pathsep.join([str(HERE), str(HERE.parent / "src")])
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": path}

    def launch(out: Path) -> subprocess.CompletedProcess:
        cmd = [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--standalone",  # rendezvous on a free local port
            "--nproc_per_node",
            "2",
            str(HERE / "_ddp_worker.py"),
            str(out),
        ]
        out.mkdir()
        return subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=120)

    out = tmp_path / "ddp"
    proc = launch(out)
    if proc.returncode != 0 and "terminate called without an active exception" in proc.stderr:
        # known flake on a heavily loaded 2-core machine: a gloo worker thread aborts
        # (SIGABRT) at teardown; seen once in five full runs, never on a quiet machine.
        # One clean rerun, in a fresh folder (the first run's checkpoints are there, and
        # the trainer rightly refuses to overwrite them), must then pass.
        out = tmp_path / "ddp-rerun"
        proc = launch(out)
    assert proc.returncode == 0, proc.stderr[-3000:]

    ranks = [json.loads((out / f"rank{r}.json").read_text()) for r in (0, 1)]
    assert [(r["rank"], r["world_size"], r["is_main"]) for r in ranks] == [
        (0, 2, True),
        (1, 2, False),
    ]
    # each rank read its contiguous half of every global batch of 4
    assert ranks[0]["seen"] == [0, 1, 4, 5, 8, 9]
    assert ranks[1]["seen"] == [2, 3, 6, 7, 10, 11]
    assert sorted(ranks[0]["gan_seen"] + ranks[1]["gan_seen"]) == list(
        range(4 * 12)
    )  # 9 critic + 3 G batches
    assert ranks[0]["critic_steps"] == ranks[1]["critic_steps"] == 4 + 2 + 3

    # the same training in this process, with the whole batch of 4
    single = Trainer(
        SupervisedStep(TinyNet(), lr=SUPERVISED_LR),
        TinyPairs(),
        run_dir=tmp_path / "one",
        progress=False,
        **SUPERVISED,
    )
    single.fit()
    gan = Trainer(
        WGANGPStep(TinyNet(), TinyCritic(), **GAN_STEP),
        TinyPairs(),
        run_dir=tmp_path / "gan",
        progress=False,
        **GAN,
    )
    gan.fit()

    got = torch.load(out / "weights.pt", weights_only=True)
    for part, model, init in (
        ("sup", single.model, TinyNet()),
        ("gen", gan.step.model, TinyNet()),
        ("critic", gan.step.critic, TinyCritic()),
    ):
        for k, v in model.state_dict().items():
            torch.testing.assert_close(got[part][k], v, rtol=1e-5, atol=1e-5, msg=f"{part}.{k}")
        # training moved the weights (~1e-2 here), so the comparison is not vacuous
        moved = max((v - init.state_dict()[k]).abs().max() for k, v in got[part].items())
        assert moved > 1e-3
    # rank 0 alone wrote the run folder's log: one header, one row per step
    rows = (out / "sup" / "metrics.csv").read_text().splitlines()
    assert len(rows) == 1 + SUPERVISED["steps"]
