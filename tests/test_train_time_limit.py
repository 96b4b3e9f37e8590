"""``TrainConfig.max_seconds``: a run stops on time with a checkpoint and resumes exactly."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from train_helpers import TinyMasked, build_tiny_store, tiny_encoder

from sarlab.chips import ChipDataset
from sarlab.models import load_encoder
from sarlab.train import TrainConfig, fit
from sarlab.train_state import load_train_state


@pytest.fixture(scope="module")
def store(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("time_limit_store") / "chips.zarr"
    build_tiny_store(path)
    return path


def config(out: Path, **kw) -> TrainConfig:
    base = dict(
        steps=10, batch_size=8, lr=2e-3, warmup_steps=2, min_lr=1e-4, log_every=5,
        checkpoint_every=None, out_dir=str(out),
    )  # fmt: skip
    return TrainConfig(**{**base, **kw})


def test_time_limit_stops_with_a_checkpoint_and_resume_finishes_the_same_run(store, tmp_path):
    straight = TinyMasked(tiny_encoder())
    full = fit(straight, ChipDataset(store), config(tmp_path / "a"), progress=False)
    assert full.stop_reason == "completed" and full.step == 10

    # a limit shorter than any step: the run stops after its first one
    first = TinyMasked(tiny_encoder())
    cut = fit(first, ChipDataset(store), config(tmp_path / "b", max_seconds=1e-9), progress=False)
    assert (cut.stop_reason, cut.step, cut.total_steps) == ("max_seconds", 1, 10)
    assert [r["step"] for r in cut.history] == [1]  # logged although 1 is no log step
    assert cut.final_loss == cut.history[-1]["loss"]
    assert load_train_state(cut.train_state)["state"]["step"] == 1  # saved though not due
    card = json.loads((cut.checkpoint / "model_card.json").read_text())
    assert card["metrics"]["step"] == 1 and card["training"]["total_steps"] == 10
    saved = load_encoder(cut.checkpoint)
    for k, v in saved.state_dict().items():
        assert torch.equal(v, first.encoder.state_dict()[k])

    # the limit is not part of the run's arithmetic: a rerun without it continues exactly
    second = TinyMasked(tiny_encoder(seed=3))
    done = fit(second, ChipDataset(store), config(tmp_path / "b"), progress=False)
    assert (done.resumed_from, done.step, done.stop_reason) == (1, 10, "completed")
    assert [r["step"] for r in done.history] == [1, 5, 10]
    a, b = straight.state_dict(), second.state_dict()
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_time_limit_is_validated():
    assert TrainConfig(max_seconds=240).max_seconds == 240
    for bad in (0, -1.0, float("inf"), float("nan")):
        with pytest.raises(ValueError, match="max_seconds"):
            TrainConfig(max_seconds=bad)
    assert TrainConfig.from_dict(TrainConfig(max_seconds=5.0).to_dict()).max_seconds == 5.0


WORKER = """
import os
import sys
sys.path.insert(0, {tests!r})
from train_helpers import TinyMasked, tiny_encoder
from sarlab.chips import ChipDataset
from sarlab.train import TrainConfig, fit

config = TrainConfig(
    steps=10, batch_size=8, lr=2e-3, warmup_steps=2, log_every=3, checkpoint_every=None,
    out_dir=sys.argv[2], max_seconds=1e-9,
)
result = fit(TinyMasked(tiny_encoder(0), seeded=True), ChipDataset(sys.argv[1]), config,
             progress=False)
rank = os.environ["RANK"]
with open(sys.argv[2] + f".rank{{rank}}", "w") as f:
    f.write(f"{{result.step}} {{result.stop_reason}}")
"""


def test_time_limit_under_ddp_stops_every_rank_at_the_same_log_step(tmp_path):
    """The ranks agree at log steps (a rank stopping alone would hang the others)."""
    store = tmp_path / "chips.zarr"
    build_tiny_store(store)
    worker = tmp_path / "worker.py"
    worker.write_text(WORKER.format(tests=str(Path(__file__).resolve().parent)))
    cmd = [
        sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--standalone",
        str(worker), str(store), str(tmp_path / "ddp"),
    ]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=env)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    for rank in (0, 1):  # both ranks stop, at the first log step after the limit
        assert (tmp_path / f"ddp.rank{rank}").read_text() == "3 max_seconds"
    assert load_train_state(tmp_path / "ddp" / "train_state")["state"]["step"] == 3
