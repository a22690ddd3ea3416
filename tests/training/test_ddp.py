"""A 2-process DDP run on the CPU (gloo), launched as a subprocess of the CLI.

In-process ``strategy="ddp"`` under pytest would make Lightning re-run the pytest command
in the worker process, so the run goes through ``python -m latentcam train``. MASTER_PORT
is left unset: Lightning picks a free port, so concurrent runs do not collide.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from latentcam import load_model

TINY = Path(__file__).resolve().parents[2] / "src" / "latentcam" / "configs" / "tiny.yaml"


@pytest.mark.slow
def test_two_process_ddp_run_on_cpu(tmp_path: Path, _session_cache: Path) -> None:
    run = tmp_path / "ddp"
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("MASTER_PORT", "RANK", "LOCAL_RANK", "WORLD_SIZE", "NODE_RANK")
    }
    env["OMP_NUM_THREADS"] = "1"
    command = [
        sys.executable, "-m", "latentcam", "train",
        "--config", str(TINY),
        "--out", str(run),
        "--accelerator", "cpu", "--devices", "2", "--strategy", "ddp",
        "--max-steps", "2", "--no-progress",
        f"data.cache_dir={_session_cache}",
    ]  # fmt: skip
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=540)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "trained vae to step 2" in done.stdout
    assert done.stdout.count("trained vae") == 1  # only the launching process reports

    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["world_size"] == 2 and metrics["global_step"] == 2
    # 52 training images, batches of 16 per process: each process gets a shard of 26 and
    # takes one full batch per epoch, so 2 steps are 2 epochs (1 process: 3 steps/epoch)
    assert metrics["epochs_completed"] == 2
    model = load_model(run / "checkpoints" / "last.ckpt")
    assert sum(p.numel() for p in model.parameters()) == metrics["param_count"]
