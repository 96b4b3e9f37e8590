"""The pretraining benchmark: FLOP counts against closed forms, the nn.TransformerEncoderLayer
reference against our encoder, and a quick end-to-end run (numbers reported, not judged)."""

from __future__ import annotations

import json

import pytest
import torch

from sarlab.benchmarks import run_benchmark
from sarlab.benchmarks.flops import (
    count_flops,
    decoder_flops,
    encoder_flops,
    matmul_flops_per_s,
    transformer_block_flops,
)
from sarlab.benchmarks.measure import TensorMemory
from sarlab.benchmarks.pretrain import METHODS, PretrainBenchSettings, ReferenceViT
from sarlab.cli import build_parser
from sarlab.models import vit_encoder
from sarlab.ssl import build_method

IMG, PATCH, B = 32, 8, 3
ATTENTION = "aten._scaled_dot_product_flash_attention_for_cpu"


def _encoder(**overrides):
    torch.manual_seed(0)
    kwargs = {"embed_dim": 32, "depth": 2, "num_heads": 2, **overrides}
    return vit_encoder("tiny", in_chans=2, patch_size=PATCH, img_size=IMG, **kwargs)


def _images(b: int = B, chans: int = 2) -> torch.Tensor:
    return torch.randn(b, chans, IMG, IMG, generator=torch.Generator().manual_seed(1))


def test_block_formula_by_hand():
    # B=1, T=2, D=4, hidden=8: qkv 2*4*12 + proj 2*4*4 + mlp 2*(2*4*8) = 96+32+128 = 256
    # multiply-adds, attention 2 * (2*2*4) = 32, so 2 * 288 FLOPs.
    assert transformer_block_flops(1, 2, 4, 8) == 576


@pytest.mark.parametrize("incidence", [False, True])
@pytest.mark.parametrize("keep", [None, 5])
def test_counted_forward_flops_match_formula(incidence, keep):
    enc = _encoder(incidence_conditioning=incidence)
    x = _images()
    inc = torch.full((B, IMG, IMG), 35.0) if incidence else None
    index = None if keep is None else torch.arange(keep).expand(B, keep)
    counted, out = count_flops(lambda: enc.forward_features(x, inc, index))
    assert out.shape == (B, 1 + (keep or (IMG // PATCH) ** 2), 32)
    assert counted.total == encoder_flops(enc.config, B, (IMG, IMG), keep=keep)
    # attention is counted on CPU: without it the total would be short by exactly this much
    tokens = 1 + (keep or 16)
    assert counted.by_op[ATTENTION] == enc.config.depth * 2 * 2 * B * tokens * tokens * 32


def test_backward_count_follows_the_convention():
    """Backward = 2x every forward product, except the patch embedding (no input gradient:
    1x) and attention (scores recomputed: 2.5x), so "3x forward" is near what is executed."""
    enc = _encoder()
    x = _images()
    fwd, out = count_flops(lambda: enc(x))
    bwd, _ = count_flops(lambda: out.sum().backward())
    patch = fwd.by_op["aten.convolution"]
    attention = fwd.by_op[ATTENTION]
    assert bwd.total == 2 * (fwd.total - patch - attention) + patch + attention * 5 // 2


def test_mae_forward_flops_are_encoder_plus_decoder():
    enc = _encoder()
    method = build_method("mae", enc)
    x = _images()
    counted, _ = count_flops(lambda: method({"image": x}))
    patches = (IMG // PATCH) ** 2
    keep = round(patches * (1 - method.mask_ratio))
    expected = encoder_flops(enc.config, B, (IMG, IMG), keep=keep) + decoder_flops(
        method.decoder, B, 1 + keep, patches
    )
    assert counted.total == expected


def test_reference_has_our_parameters_and_computes_our_function():
    enc = _encoder()
    ref = ReferenceViT(enc.config)
    assert sum(p.numel() for p in ref.parameters()) == sum(p.numel() for p in enc.parameters())
    attn = ref.encoder.layers[0].self_attn
    assert attn.in_proj_weight.shape == enc.blocks[0].attn.qkv.weight.shape  # fused qkv
    assert attn.in_proj_bias.shape == enc.blocks[0].attn.qkv.bias.shape
    x = _images()
    assert not torch.allclose(ref(x), enc(x), atol=1e-3)  # different random init so far
    ref.load_from(enc)
    ours, theirs = enc(x), ref(x)
    assert theirs.shape == ours.shape == (B, 1 + (IMG // PATCH) ** 2, 32)
    torch.testing.assert_close(theirs, ours, atol=1e-5, rtol=1e-5)
    ours.square().mean().backward()
    theirs.square().mean().backward()
    torch.testing.assert_close(
        attn.in_proj_weight.grad, enc.blocks[0].attn.qkv.weight.grad, atol=1e-6, rtol=1e-4
    )
    enc.eval(), ref.eval()
    with torch.inference_mode():  # the reference's fused fast path computes the same thing
        torch.testing.assert_close(ref(x), enc(x), atol=1e-5, rtol=1e-5)


def test_reference_refuses_what_it_cannot_express():
    with pytest.raises(ValueError, match="qkv_bias"):
        ReferenceViT(_encoder(qkv_bias=False).config)


def test_matmul_rate_is_measured():
    r = matmul_flops_per_s(64, 32, 48, repeats=2, min_repeat_s=0.001)
    assert (r["m"], r["k"], r["n"], r["dtype"]) == (64, 32, 48, "float32")
    assert r["flops_per_s"] > 0


def test_tensor_memory_counts_live_storages_once():
    x = torch.ones(256, 256)  # 256 KiB
    kib = 256 * 1024
    with TensorMemory().add_existing([x]) as mem:
        assert mem.current == kib
        x.add_(1.0)  # in place on an existing tensor: nothing new
        y = x @ x
        flat = y.view(-1)  # a view shares its base's storage
        del y
        z = flat * 2
        assert mem.current == mem.peak == 3 * kib
        del flat, z
        assert mem.current == kib
    assert mem.peak == 3 * kib


def test_cli_knows_the_benchmark():
    args = build_parser().parse_args(["bench", "pretrain", "--quick"])
    assert (args.name, args.quick) == ("pretrain", True)


@pytest.fixture(scope="module")
def quick(tmp_path_factory):
    out = tmp_path_factory.mktemp("bench")
    result = run_benchmark("pretrain", out_dir=out, quick=True)
    return result, json.loads((out / "pretrain.json").read_text())


def test_quick_run_writes_consistent_numbers(quick):
    result, saved = quick
    assert saved["methods"].keys() == result["methods"].keys() == set(METHODS)
    settings = PretrainBenchSettings.quick()
    assert saved["settings"]["batch_size"] == settings.batch_size
    assert saved["quick"] is True and saved["precision"] == "fp32"
    env = saved["environment"]
    assert env["torch"] == torch.__version__ and env["torch_threads"] == settings.threads
    assert env["cpu_count"] >= 1
    peak = saved["peak"]
    rates = [peak[k]["flops_per_s"] for k in ("square", "representative")]
    assert all(r > 0 for r in rates) and peak["peak_flops_per_s"] == max(rates)
    for key in ("square", "representative"):
        assert peak[key]["flops_per_s"] >= peak[key]["flops_per_s_start"]
    tokens = settings.batch_size * (1 + (settings.img_size // settings.patch_size) ** 2)
    assert (peak["representative"]["m"], peak["representative"]["k"]) == (tokens, 32)
    for name, m in saved["methods"].items():
        assert m["images_per_s"] > 0 and m["step_s_median"] >= m["step_s_min"] > 0, name
        assert m["images_per_s"] == pytest.approx(settings.batch_size / m["step_s_median"])
        assert m["forward_flops"] > 0 and m["backward_flops"] > 0, name
        assert m["train_flops"] == 3 * m["forward_flops"]
        achieved = m["train_flops"] / m["step_s_median"]
        assert m["achieved_flops_per_s"] == pytest.approx(achieved)
        assert m["mfu"] == pytest.approx(achieved / peak["peak_flops_per_s"])
        assert m["mfu_vs_representative"] == pytest.approx(
            achieved / peak["representative"]["flops_per_s"]
        )
        assert m["mfu"] <= m["mfu_vs_representative"]
        assert m["peak_memory_mb"] > 0 and m["memory_kind"] == "live tensor storages"
        assert 0 < m["cpu_share"] <= 1.5
        assert m["mfu_best_step"] >= m["mfu"]
    # speckle_views runs the encoder on two full views (plus projector and loss)
    one_pass = saved["encoder_comparison"]["forward_flops_ours"]
    assert saved["methods"]["speckle_views"]["forward_flops"] > 2 * one_pass


def test_quick_run_compares_encoders_and_targets(quick):
    _, saved = quick
    enc = saved["encoder_comparison"]
    assert enc["params_ours"] == enc["params_ref"] > 0
    assert enc["max_abs_output_diff"] < 1e-4
    assert enc["forward_flops_ours"] == enc["forward_flops_ref"]
    s = PretrainBenchSettings.quick()
    config = vit_encoder(
        "tiny", in_chans=s.in_chans, patch_size=s.patch_size, img_size=s.img_size,
        **s.encoder_overrides,
    ).config  # fmt: skip
    assert enc["forward_flops_ours"] == encoder_flops(config, s.batch_size, (s.img_size,) * 2)
    for mode in ("train", "inference"):
        e = enc[mode]
        assert e["ours_images_per_s"] > 0 and e["ref_images_per_s"] > 0
        assert e["speedup"] == pytest.approx(e["ref_step_s"] / e["ours_step_s"])
        assert e["speedup"] == pytest.approx(e["ours_images_per_s"] / e["ref_images_per_s"])
        assert e["speedup_ceiling"] == pytest.approx(1 / e["mfu_ref"])
        assert 0 < e["cpu_share"] <= 1.5  # CPU time can exceed wall x threads a little
    assert enc["train"]["flops"] == 3 * enc["inference"]["flops"]
    stock = enc["train"]  # the stock layer (dropout 0.1) is timed in training only
    assert stock["speedup_vs_stock_dropout"] == pytest.approx(
        stock["stock_dropout_step_s"] / stock["ours_step_s"]
    )
    assert "speedup_vs_stock_dropout" not in enc["inference"]
    targets = saved["targets"]
    assert targets["mae_mfu"]["value"] == saved["methods"]["mae"]["mfu"]
    assert targets["encoder_train_speedup"]["value"] == enc["train"]["speedup"]
    for t in targets.values():
        assert t["met"] is (t["value"] >= t["target"])
    assert saved["meets_target"] is all(t["met"] for t in targets.values())
    shares = [m["cpu_share"] for m in saved["methods"].values()]
    shares += [enc[k]["cpu_share"] for k in ("train", "inference")]
    assert saved["timings_uncontended"] is (min(shares) >= 0.9)


def test_stock_reference_is_the_same_model_with_dropout_in_training():
    enc = _encoder()
    stock = ReferenceViT(enc.config, dropout=0.1).load_from(enc)
    assert stock.encoder.layers[0].dropout1.p == 0.1  # the layer's own default
    x = _images()
    torch.testing.assert_close(stock.eval()(x), enc.eval()(x), atol=1e-5, rtol=1e-5)
    torch.manual_seed(0)
    assert not torch.allclose(stock.train()(x), enc(x), atol=1e-3)  # dropout is active
