"""Run sarlab.train.fit on a tiny store in its own process: under torchrun, or to be SIGKILLed.

Usage: ``python tests/train_worker.py STORE OUT --steps 8 [--kill-at 5] [--seeded]``, or the
same arguments after ``python -m torch.distributed.run --nproc_per_node 2 --standalone``.
"""

from __future__ import annotations

import argparse
import os
import signal

from train_helpers import TinyMasked, tiny_encoder

from sarlab.chips import ChipDataset
from sarlab.train import TrainConfig, fit


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("store")
    parser.add_argument("out")
    parser.add_argument("--steps", type=int, default=8)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--checkpoint-every", type=int, default=3)
    parser.add_argument("--kill-at", type=int, default=0, help="SIGKILL itself after this step")
    parser.add_argument("--seeded", action="store_true", help="masks from sample_seed")
    args = parser.parse_args()

    def kill(step: int, info: dict) -> None:
        if step == args.kill_at:
            os.kill(os.getpid(), signal.SIGKILL)

    method = TinyMasked(tiny_encoder(0), seeded=args.seeded)
    config = TrainConfig(
        steps=args.steps, batch_size=args.batch_size, lr=2e-3, warmup_steps=2, min_lr=1e-4,
        log_every=1, checkpoint_every=args.checkpoint_every, out_dir=args.out,
    )  # fmt: skip
    fit(method, ChipDataset(args.store), config, progress=False, callbacks=[kill])


if __name__ == "__main__":
    main()
