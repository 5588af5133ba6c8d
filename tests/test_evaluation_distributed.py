"""``evaluate`` under torchrun: two gloo processes on the CPU write the CSV one process writes, and
only rank 0 prints."""
import json
import os
import socket
import subprocess
import sys
from pathlib import Path

from xai_core.cli.entry import main

ROOT = Path(__file__).resolve().parents[1]
# Three blocks of two images: rank 0 evaluates blocks 0 and 2, rank 1 block 1.
ARGS = ["evaluate", "--model", "embedded", "--device", "cpu", "--data", "embedded:5", "-n", "6", "--batch-size", "2",
        "--methods", "saliency,gradcam", "--metrics", "pointing_game,deletion", "--metric-param", "deletion.steps=4",
        "--json"]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_two_processes_write_the_csv_of_one(tmp_path, capsys):
    assert main([*ARGS, "--out", str(tmp_path / "one.csv")]) == 0
    alone = json.loads(capsys.readouterr().out)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    launched = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", "--master-addr=127.0.0.1",
         f"--master-port={_free_port()}", "-m", "xai_core", *ARGS, "--out", str(tmp_path / "two.csv")],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert launched.returncode == 0, launched.stderr[-2000:]
    together = json.loads(launched.stdout)  # one JSON object: rank 1 printed nothing
    assert together["processes"] == 2 and together["summary"] == alone["summary"]
    assert (tmp_path / "two.csv").read_text() == (tmp_path / "one.csv").read_text()
