"""``finetune`` on the command line: a loadable checkpoint that predicts differently, one row per epoch,
one-line errors, and two gloo processes under torchrun taking the step of one process with the same
effective batch."""
import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import torch

from xai_core.cli.entry import main
from xai_core.evaluation.sources import open_source
from xai_core.models import load_model

ROOT = Path(__file__).resolve().parents[1]
BASE = ["finetune", "--model", "embedded", "--device", "cpu", "--data", "shortcut-train:1", "--val", "shortcut:2",
        "--val-n", "4", "--json"]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _weights(path: Path) -> dict[str, torch.Tensor]:
    return torch.load(path, weights_only=True)["state_dict"]


def test_writes_a_loadable_checkpoint_with_one_row_per_epoch(tmp_path, capsys):
    out = tmp_path / "tuned.pt"
    assert main([*BASE, "-n", "8", "--micro-batch", "4", "--epochs", "2", "--lr", "1e-2", "--trainable", "head",
                 "--loss", "weighted_mangtr", "--out", str(out)]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [row["epoch"] for row in rows] == [1, 2]
    assert {"train_accuracy", "val_ce", "val_magtr", "val_mangtr", "train_loss"} <= set(rows[0])
    original, tuned = load_model("embedded", device="cpu"), load_model("embedded", checkpoint=out, device="cpu")
    assert tuned.categories == original.categories
    images = open_source("shortcut:2", original).load(range(4)).images
    with torch.no_grad():
        change = (tuned.module(images) - original.module(images)).abs().max()
    assert change > 1e-3
    frozen = [k for k in _weights(out) if not k.startswith("fc.") and k in original.module.state_dict()]
    assert frozen and all(torch.equal(_weights(out)[k], original.module.state_dict()[k].cpu()) for k in frozen)


def test_a_bad_parameter_exits_2_with_one_line(tmp_path, capsys):
    assert main([*BASE, "-n", "4", "--lr", "0", "--out", str(tmp_path / "m.pt")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1 and not (tmp_path / "m.pt").exists()


def test_two_gloo_processes_take_the_step_of_one_with_the_same_effective_batch(tmp_path, capsys):
    # One SGD step on 4 images: 2 processes × 1 micro-batch of 2 vs 1 process × 2 accumulated micro-batches of 2.
    step = [*BASE, "-n", "4", "--micro-batch", "2", "--optimizer", "sgd", "--lr", "0.5", "--epochs", "1"]
    assert main([*step, "--accumulate", "2", "--out", str(tmp_path / "one.pt")]) == 0
    alone = json.loads(capsys.readouterr().out)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    launched = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", "--master-addr=127.0.0.1",
         f"--master-port={_free_port()}", "-m", "xai_core", *step, "--accumulate", "1",
         "--out", str(tmp_path / "two.pt")],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert launched.returncode == 0, launched.stderr[-2000:]
    together = json.loads(launched.stdout)  # one JSON document: rank 1 printed nothing
    assert together == alone                # the records are the means over both processes' images
    one, two = _weights(tmp_path / "one.pt"), _weights(tmp_path / "two.pt")
    start = load_model("embedded", device="cpu").module.state_dict()
    assert max((one[k] - start[k].cpu()).abs().max() for k in one) > 1e-3  # the step did move the weights
    assert all(torch.allclose(one[k], two[k], atol=1e-5, rtol=0) for k in one)
