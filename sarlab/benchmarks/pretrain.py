"""Pretraining throughput: images/s per SSL method, model FLOP utilisation, and our ViT
against the same ViT built from ``torch.nn.TransformerEncoderLayer``.

* Per method: a full training step as :func:`sarlab.train.fit` runs it (forward,
  backward, gradient clipping, AdamW with the :class:`~sarlab.train_config.TrainConfig`
  defaults) on synthetic normalised chips, after warmup steps, one method at a time
  (as a training run trains one; ``rounds`` blocks of timed steps each); the median
  step time gives images/s. Memory: peak of one step (optimiser state
  included): ``max_memory_allocated`` on CUDA, live tensor storages on CPU
  (:class:`~sarlab.benchmarks.measure.TensorMemory`).
* MFU: model FLOP/s (:mod:`sarlab.benchmarks.flops`: matmul FLOPs, training = 3x
  forward) over the matmul FLOP/s this machine reaches in the same run, measured
  twice (start and end, the larger kept) for a large square ``torch.mm`` and for
  the model's largest GEMM (tokens x D x MLP width); the larger of the two is the
  denominator of ``mfu``, the representative one that of ``mfu_vs_representative``.
* Encoder comparison: :class:`ReferenceViT` holds the same weights as our encoder
  (checked: same parameter count, same output), and both run forward+backward and
  inference on the same input, interleaved round by round so a change in machine
  load hits both alike; ``speedup`` is the reference's median time over ours, and
  ``speedup_ceiling`` (1 / the reference's MFU) what it would be if our encoder ran
  every model FLOP at the measured matmul peak: both run the same GEMMs, so no
  implementation of the same model can pass that ceiling on this machine. For
  training, the stock layer with its default ``dropout=0.1`` (what
  ``nn.TransformerEncoderLayer(d, heads)`` gives unless dropout is switched off) is
  timed too: ``speedup_vs_stock_dropout``. It is context, not the target's reference:
  dropout changes the computation.

Numbers are reported and compared with targets, never asserted by tests.
"""

from __future__ import annotations

import contextlib
import gc
import math
import os
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from statistics import median
from typing import Any

import torch
from torch import Tensor, nn

from sarlab.benchmarks.flops import count_flops, matmul_flops_per_s
from sarlab.benchmarks.measure import TensorMemory, cpu_share, environment, sync, time_steps
from sarlab.benchmarks.reference import ReferenceViT
from sarlab.models.vit import ViTConfig, ViTEncoder, vit_encoder
from sarlab.preprocess import BandStats
from sarlab.ssl import build_method
from sarlab.train_config import TrainConfig
from sarlab.train_schedule import build_optimizer

__all__ = ["PretrainBenchSettings", "ReferenceViT", "benchmark", "format_table", "run"]

METHODS = ("mae", "hog", "gradient", "speckle_views", "crosspol")
TARGET_MAE_MFU = 0.5
TARGET_SPEEDUP = 1.4
UNCONTENDED = 0.9  # CPU share above which other processes barely slowed a timing
FLOP_CONVENTION = (
    "matmul FLOPs only (mm/addmm/bmm/convolution and the two attention products, "
    "2 FLOPs per multiply-add; norms, activations, softmax and the optimiser not counted), "
    "counted with torch.utils.flop_counter.FlopCounterMode (CPU attention formulas added); "
    "training step = 3 x forward; backward_flops is the counter's own count of the backward"
)


@dataclass
class PretrainBenchSettings:
    """What is measured; :meth:`quick` gives tiny sizes for tests."""

    preset: str = "tiny"
    encoder_overrides: dict[str, Any] = field(default_factory=dict)
    in_chans: int = 2
    img_size: int = 128
    patch_size: int = 16
    batch_size: int = 32
    methods: tuple[str, ...] = METHODS
    warmup_steps: int = 3
    timed_steps: int = 5  # per round
    rounds: int = 3  # timed blocks per method; ours/ref alternate block by block
    device: str = "auto"  # auto: cuda when present, else cpu
    precision: str = "auto"  # auto: bf16 autocast on cuda, fp32 on cpu
    threads: int | None = None  # torch.set_num_threads for the run; None keeps the current
    square_size: int | None = None  # large square mm: 2048 on cpu, 8192 on cuda

    @classmethod
    def quick(cls) -> PretrainBenchSettings:
        return cls(
            encoder_overrides={"embed_dim": 32, "depth": 2, "num_heads": 2},
            img_size=32, patch_size=8, batch_size=4, warmup_steps=1, timed_steps=2,
            rounds=1, square_size=128, threads=1,
        )  # fmt: skip

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["methods"] = list(self.methods)
        return out


def _band_stats(bands: int) -> BandStats:
    """dB statistics for the synthetic chips (only needed to go back to linear intensity)."""
    names = ["VV", "VH", "HH", "HV"][:bands] if bands <= 4 else [f"B{i}" for i in range(bands)]
    mean = [-12.0 - 7.0 * i for i in range(bands)]
    return BandStats(
        bands=names, units="dB", mean=mean, std=[3.0] * bands, median=mean,
        p01=[m - 7.0 for m in mean], p99=[m + 7.0 for m in mean], count=[10**6] * bands,
    )  # fmt: skip


def _encoder(settings: PretrainBenchSettings, device: torch.device) -> ViTEncoder:
    torch.manual_seed(0)
    return vit_encoder(
        settings.preset, in_chans=settings.in_chans, patch_size=settings.patch_size,
        img_size=settings.img_size, **settings.encoder_overrides,
    ).to(device)  # fmt: skip


def _images(settings: PretrainBenchSettings, device: torch.device) -> Tensor:
    gen = torch.Generator().manual_seed(0)
    shape = (settings.batch_size, settings.in_chans, settings.img_size, settings.img_size)
    return torch.randn(shape, generator=gen).to(device)


def _utilisation(flops: float, seconds: float, peak: dict[str, Any]) -> dict[str, float]:
    achieved = flops / seconds
    return {
        "achieved_flops_per_s": achieved,
        "mfu": achieved / peak["peak_flops_per_s"],
        "mfu_vs_representative": achieved / peak["representative"]["flops_per_s"],
    }


class _MethodRun:
    """One SSL method set up for training steps as :func:`sarlab.train.fit` takes them."""

    def __init__(self, name, settings, device, autocast) -> None:
        self.name, self.device, self.autocast = name, device, autocast
        self.batch = {"image": _images(settings, device)}
        config = TrainConfig()
        self.clip = config.grad_clip
        encoder = _encoder(settings, device)
        self.method = build_method(name, encoder, band_stats=_band_stats(settings.in_chans))
        self.method.to(device).train()
        self.optimizer = build_optimizer(
            self.method, lr=config.lr, weight_decay=config.weight_decay, betas=config.betas
        )
        self.params = [p for p in self.method.parameters() if p.requires_grad]
        self.steps = 0
        self.times: list[float] = []
        self.cpu_times: list[float] = []

    def forward(self) -> Tensor:
        with self.autocast():
            return self.method(self.batch)[0]

    def step(self) -> None:
        loss = self.forward()
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(self.params, self.clip)
        self.optimizer.step()
        self.steps += 1
        self.method.on_step_end(self.steps, 10**6)

    def flops(self) -> dict[str, Any]:
        """Counted forward and backward FLOPs of one step (gradients then dropped)."""
        fwd, loss = count_flops(self.forward)
        bwd, _ = count_flops(loss.backward)
        self.method.zero_grad(set_to_none=True)
        return {"forward_flops": fwd.total, "backward_flops": bwd.total,
                "forward_flops_by_op": fwd.by_op}  # fmt: skip

    def memory(self) -> dict[str, Any]:
        """Peak memory of one step: weights, gradients, optimiser state, batch, activations.

        Call after a first step, so the optimiser state and last gradients exist
        (as in training, those gradients live until ``zero_grad`` after the forward).
        """
        grads = [p.grad for p in self.params if p.grad is not None]
        existing = [list(self.method.state_dict().values()), self.optimizer.state]
        tracker = TensorMemory().add_existing([*existing, grads, self.batch])
        if self.device.type == "cuda":  # the allocator's own peak, above what was there
            sync(self.device)
            before = torch.cuda.memory_allocated(self.device)
            torch.cuda.reset_peak_memory_stats(self.device)
            self.step()
            sync(self.device)
            peak = torch.cuda.max_memory_allocated(self.device) - before + tracker.current
            return {"peak_memory_mb": peak / 2**20, "memory_kind": "max_memory_allocated"}
        with tracker:
            self.step()
        return {"peak_memory_mb": tracker.peak / 2**20, "memory_kind": "live tensor storages"}


def _bench_methods(settings, device, autocast) -> dict[str, dict[str, Any]]:
    """Every method's FLOPs, memory and timed steps, one method alive at a time.

    A training run trains one method, so each is measured alone: with the five alive
    and taking turns, every switch cost mae 15-50 % of its speed on a 2-core CPU (the
    caches and the allocator's free lists held another method's tensors). Load from
    elsewhere shows in ``cpu_share`` instead.
    """
    results = {}
    for name in settings.methods:
        run_ = _MethodRun(name, settings, device, autocast)
        out = run_.flops()
        run_.step()  # creates the optimiser state the memory step should see
        out.update(run_.memory())
        for r in range(settings.rounds):
            warmup = settings.warmup_steps if r == 0 else 1
            wall, cpu = time_steps(run_.step, warmup, settings.timed_steps, device)
            run_.times += wall
            run_.cpu_times += cpu
        step_s = median(run_.times)
        out["train_flops"] = 3 * out["forward_flops"]
        out.update(
            images_per_s=settings.batch_size / step_s,
            step_s_median=step_s,
            step_s_min=min(run_.times),
            cpu_share=cpu_share(run_.times, run_.cpu_times),
            train_flops_per_image=out["train_flops"] / settings.batch_size,
        )
        results[name] = out
        del run_
        gc.collect()
    return results


def _compare_encoders(settings, device, autocast) -> dict[str, Any]:
    """Our encoder vs :class:`ReferenceViT` with the same weights on the same images."""
    ours = _encoder(settings, device).train()
    ref = ReferenceViT(ours.config).to(device).load_from(ours).train()
    stock = ReferenceViT(ours.config, dropout=0.1).to(device).load_from(ours).train()
    x = _images(settings, device)
    with torch.no_grad():
        diff = (ours(x) - ref(x)).abs().max().item()
    fwd_ours, _ = count_flops(lambda: ours(x))
    fwd_ref, _ = count_flops(lambda: ref(x))
    result: dict[str, Any] = {
        "params_ours": sum(p.numel() for p in ours.parameters()),
        "params_ref": sum(p.numel() for p in ref.parameters()),
        "max_abs_output_diff": diff,
        "forward_flops_ours": fwd_ours.total,
        "forward_flops_ref": fwd_ref.total,
        "mha_fastpath_enabled": torch.backends.mha.get_fastpath_enabled(),
    }

    def train_step(model: nn.Module) -> Callable[[], None]:
        def step() -> None:
            model.zero_grad(set_to_none=True)
            with autocast():
                out = model(x)
            out.float().square().mean().backward()

        return step

    def infer_step(model: nn.Module) -> Callable[[], None]:
        def step() -> None:
            with torch.inference_mode(), autocast():
                model(x)

        return step

    for mode, make, flops in (
        ("train", train_step, 3 * fwd_ours.total),
        ("inference", infer_step, fwd_ours.total),
    ):
        models = {"ours": ours, "ref": ref, **({"stock": stock} if mode == "train" else {})}
        for model in models.values():
            model.train(mode == "train")
        times: dict[str, list[float]] = {key: [] for key in models}
        cpu: dict[str, list[float]] = {key: [] for key in models}
        for r in range(settings.rounds):  # interleaved: load drift hits both alike
            warmup = settings.warmup_steps if r == 0 else 1
            for key, model in models.items():
                wall, used = time_steps(make(model), warmup, settings.timed_steps, device)
                times[key] += wall
                cpu[key] += used
        t_ours, t_ref = median(times["ours"]), median(times["ref"])
        result[mode] = {
            "ours_images_per_s": settings.batch_size / t_ours,
            "ref_images_per_s": settings.batch_size / t_ref,
            "ours_step_s": t_ours,
            "ref_step_s": t_ref,
            "speedup": t_ref / t_ours,
            "ours_step_s_min": min(times["ours"]),
            "ref_step_s_min": min(times["ref"]),
            "speedup_best_steps": min(times["ref"]) / min(times["ours"]),
            "cpu_share": cpu_share(times["ours"] + times["ref"], cpu["ours"] + cpu["ref"]),
            "flops": flops,
        }
        if "stock" in times:
            t_stock = median(times["stock"])
            result[mode].update(
                stock_dropout_images_per_s=settings.batch_size / t_stock,
                stock_dropout_step_s=t_stock,
                speedup_vs_stock_dropout=t_stock / t_ours,
            )
    return result


def _peak(settings, device, dtype, config: ViTConfig) -> dict[str, Any]:
    """Large square and representative-size matmul FLOP/s."""
    n = settings.square_size or (8192 if device.type == "cuda" else 2048)
    tokens = settings.batch_size * (1 + (settings.img_size // settings.patch_size) ** 2)
    hidden = int(config.embed_dim * config.mlp_ratio)
    return {
        "square": matmul_flops_per_s(n, n, n, dtype=dtype, device=device),
        "representative": matmul_flops_per_s(
            tokens, config.embed_dim, hidden, dtype=dtype, device=device
        ),
    }


def _target(value: float | None, target: float) -> dict[str, Any]:
    met = None if value is None or not math.isfinite(value) else bool(value >= target)
    return {"value": value, "target": target, "met": met}


def benchmark(settings: PretrainBenchSettings) -> dict[str, Any]:
    """Run every measurement of the module docstring; returns the JSON-ready result."""
    device = torch.device(
        ("cuda" if torch.cuda.is_available() else "cpu")
        if settings.device == "auto"
        else settings.device
    )
    bf16 = settings.precision == "bf16" or (settings.precision == "auto" and device.type == "cuda")
    dtype = torch.bfloat16 if bf16 else torch.float32

    def autocast() -> contextlib.AbstractContextManager:
        return torch.autocast(device.type, dtype=dtype) if bf16 else contextlib.nullcontext()

    threads_before = torch.get_num_threads()
    if settings.threads:
        torch.set_num_threads(settings.threads)
    try:
        env = environment(device)
        config = _encoder(settings, torch.device("cpu")).config
        start = _peak(settings, device, dtype, config)
        encoders = _compare_encoders(settings, device, autocast)
        methods = _bench_methods(settings, device, autocast)
        end = _peak(settings, device, dtype, config)
        env["load_avg_end"] = list(os.getloadavg()) if hasattr(os, "getloadavg") else None
    finally:
        torch.set_num_threads(threads_before)
    # The best of start and end: a machine busier at one of them does not lower the peak.
    peak: dict[str, Any] = {}
    for key in ("square", "representative"):
        peak[key] = {
            **start[key],
            "flops_per_s": max(start[key]["flops_per_s"], end[key]["flops_per_s"]),
            "flops_per_s_start": start[key]["flops_per_s"],
            "flops_per_s_end": end[key]["flops_per_s"],
        }
    peak["peak_flops_per_s"] = max(peak[k]["flops_per_s"] for k in ("square", "representative"))
    for mode in ("train", "inference"):
        e = encoders[mode]
        e["mfu_ours"] = _utilisation(e["flops"], e["ours_step_s"], peak)["mfu"]
        e["mfu_ref"] = _utilisation(e["flops"], e["ref_step_s"], peak)["mfu"]
        # the speedup ours would have if every model FLOP ran at the measured matmul peak
        e["speedup_ceiling"] = 1.0 / e["mfu_ref"]
    for m in methods.values():
        m.update(_utilisation(m["train_flops"], m["step_s_median"], peak))
        m["mfu_best_step"] = _utilisation(m["train_flops"], m["step_s_min"], peak)["mfu"]
    targets = {
        "mae_mfu": _target(methods["mae"]["mfu"] if "mae" in methods else None, TARGET_MAE_MFU),
        "encoder_train_speedup": _target(encoders["train"]["speedup"], TARGET_SPEEDUP),
        "encoder_inference_speedup": _target(encoders["inference"]["speedup"], TARGET_SPEEDUP),
    }
    shares = [m["cpu_share"] for m in methods.values()]
    shares += [encoders[k]["cpu_share"] for k in ("train", "inference")]
    return {
        "benchmark": "pretrain",
        # CPU only: did every timed phase get >= 90 % of the CPUs it asked for?
        "timings_uncontended": None if device.type == "cuda" else min(shares) >= UNCONTENDED,
        "settings": settings.to_dict(),
        "encoder_config": config.to_dict(),
        "precision": "bf16 autocast" if bf16 else "fp32",
        "environment": env,
        "flop_convention": FLOP_CONVENTION,
        "peak_statistic": "best of 5 timed loops, at start and end of the run",
        "step_statistic": "median of timed steps (mfu_best_step, speedup_best_steps: fastest)",
        "peak": peak,
        "encoder_comparison": encoders,
        "methods": methods,
        "targets": targets,
        "meets_target": all(t["met"] is True for t in targets.values()),
    }


def format_table(result: dict[str, Any]) -> str:
    """A short text summary of a :func:`benchmark` result."""
    peak = result["peak"]
    sq, rep = peak["square"], peak["representative"]
    env = result["environment"]
    lines = [
        f"timings uncontended: {result['timings_uncontended']}; "
        f"load average at start/end: {env['load_avg_start'][0]:.2f}/{env['load_avg_end'][0]:.2f}"
        " (cpu: share of the CPUs the process got while timed)",
        f"matmul peak: {sq['m']}^3 {sq['flops_per_s'] / 1e9:.1f} GFLOP/s, "
        f"{rep['m']}x{rep['k']}x{rep['n']} {rep['flops_per_s'] / 1e9:.1f} GFLOP/s "
        f"({result['precision']}, {result['environment']['torch_threads']} threads)",
        f"{'method':<14}{'img/s':>8}{'step ms':>9}{'GFLOP/img':>10}{'MFU':>7}{'best':>7}"
        f"{'MFU rep':>8}{'mem MB':>8}{'cpu':>6}",
    ]
    for name, m in result["methods"].items():
        lines.append(
            f"{name:<14}{m['images_per_s']:>8.1f}{m['step_s_median'] * 1e3:>9.1f}"
            f"{m['train_flops_per_image'] / 1e9:>10.3f}{m['mfu']:>7.1%}{m['mfu_best_step']:>7.1%}"
            f"{m['mfu_vs_representative']:>8.1%}{m['peak_memory_mb']:>8.0f}{m['cpu_share']:>6.0%}"
        )
    for mode in ("train", "inference"):
        e = result["encoder_comparison"][mode]
        lines.append(
            f"encoder {mode:<9} ours {e['ours_images_per_s']:.1f} img/s (MFU {e['mfu_ours']:.1%})"
            f" vs TransformerEncoderLayer {e['ref_images_per_s']:.1f} img/s "
            f"(MFU {e['mfu_ref']:.1%}): x{e['speedup']:.2f} (fastest steps "
            f"x{e['speedup_best_steps']:.2f}, ceiling x{e['speedup_ceiling']:.2f}, "
            f"cpu {e['cpu_share']:.0%})"
        )
        if "speedup_vs_stock_dropout" in e:
            lines.append(
                f"  vs the stock layer (dropout 0.1, its default): "
                f"{e['stock_dropout_images_per_s']:.1f} img/s, x{e['speedup_vs_stock_dropout']:.2f}"
            )
    for name, t in result["targets"].items():
        value = "n/a" if t["value"] is None else f"{t['value']:.3f}"
        lines.append(f"target {name}: {value} >= {t['target']}: {t['met']}")
    return "\n".join(lines)


def run(out_dir: Path, quick: bool) -> dict[str, Any]:
    """The registry entry: ViT-tiny, 2 channels, 128 px, batch 32 (tiny sizes when ``quick``)."""
    settings = PretrainBenchSettings.quick() if quick else PretrainBenchSettings()
    result = benchmark(settings)
    result["quick"] = quick
    print(format_table(result))
    return result
