"""Run sarlab.train.fit on a Major TOM fixture stream under torchrun; record what each rank read.

Usage: ``python -m torch.distributed.run --nproc_per_node 2 --standalone
tests/io/stream_ddp_worker.py ROOT OUT --steps 5``. Rank ``r`` writes ``OUT/rank{r}.json``:
the ``index`` of every sample it trained on, batch by batch.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests/: train_helpers

from train_helpers import TinyMasked, tiny_encoder

from sarlab.io.majortom import MajorTOMS1Stream
from sarlab.train import TrainConfig, fit


class Recording(TinyMasked):
    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.seen: list[list[int]] = []

    def forward(self, batch):
        self.seen.append([int(i) for i in batch["index"]])
        return super().forward(batch)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("root")
    parser.add_argument("out")
    parser.add_argument("--steps", type=int, default=5)
    args = parser.parse_args()
    stream = MajorTOMS1Stream(args.root, size=16, shuffle=False)
    method = Recording(tiny_encoder(0), seeded=True)
    config = TrainConfig(
        steps=args.steps, batch_size=4, lr=1e-3, warmup_steps=1, log_every=1,
        checkpoint_every=None, out_dir=args.out, device="cpu",
    )  # fmt: skip
    result = fit(method, stream, config, progress=False)
    rank = int(os.environ["RANK"])
    record = {"step": result.step, "world_size": result.world_size, "seen": method.seen}
    (Path(args.out) / f"rank{rank}.json").write_text(json.dumps(record))


if __name__ == "__main__":
    main()
