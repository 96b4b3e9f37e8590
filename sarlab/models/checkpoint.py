"""Encoder checkpoints: safetensors weights plus a JSON model card, written atomically.

A checkpoint is a folder::

    <name>/model.safetensors   encoder state dict (timm ViT names)
    <name>/extra.safetensors   optional: other tensors of the run (SSL decoder, heads)
    <name>/model_card.json     what the weights expect and where they came from

The card is what stops a model trained on HH/HV dB sigma0 from being fed VV/VH
linear gamma0 without anyone noticing. Its fields (all required; validated on save
and load with errors naming the file):

* ``architecture``: :class:`~sarlab.models.vit.ViTConfig` dict (filled from the encoder)
* ``bands``: input channels in order (e.g. ``["HH", "HV"]``), one per ``in_chans``
* ``units`` (dB|linear) and ``quantity`` (sigma0|gamma0|...): what the bands hold
* ``normalization``: :meth:`BandStats.to_dict` the inputs were normalised with, or null
* ``ssl``: ``{"method": str, "config": dict}``
* ``data``: ``{"manifest": str | null, "checksum": str | null}``
* ``metrics``: dict (default ``{}``)
* ``git``: ``{"sha", "dirty", ...}`` and ``created`` (UTC ISO time): filled when absent
* ``parameter_count``, ``weights_file``, ``weights_sha256``, ``extra_tensors``,
  ``card_version``: computed by :func:`save_checkpoint`

Weights are read with safetensors only, never by unpickling.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import re
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import Tensor

from sarlab.atomic import atomic_directory
from sarlab.conventions import QUANTITIES, UNITS
from sarlab.errors import InputError, UnitsError
from sarlab.models.vit import ViTConfig, ViTEncoder, resample_pos_embed
from sarlab.preprocess.normalize import BandStats
from sarlab.report import git_info, utc_now

__all__ = [
    "CARD_FILE",
    "CARD_VERSION",
    "EXTRA_FILE",
    "REQUIRED_CARD_FIELDS",
    "WEIGHTS_FILE",
    "infer_config",
    "load_checkpoint",
    "load_encoder",
    "load_extra_tensors",
    "model_card_hash",
    "save_checkpoint",
    "validate_model_card",
]

WEIGHTS_FILE = "model.safetensors"
EXTRA_FILE = "extra.safetensors"
CARD_FILE = "model_card.json"
CARD_VERSION = 1
REQUIRED_CARD_FIELDS = (
    "card_version", "architecture", "bands", "units", "quantity", "normalization", "ssl",
    "data", "git", "created", "metrics", "parameter_count", "weights_file",
    "weights_sha256", "extra_tensors",
)  # fmt: skip
# Keys of timm classifiers that an encoder has no use for; dropped on load with a note.
_DROPPED_PREFIXES = ("head.", "fc_norm.")


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _fsync(path: Path) -> None:
    """Flush a file to disk before the folder holding it is renamed into place."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def model_card_hash(card: Mapping[str, Any]) -> str:
    """sha256 of the card's canonical JSON: names the exact model behind embeddings."""
    text = json.dumps(card, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def validate_model_card(card: Any, source: str | os.PathLike[str] | None = None) -> None:
    """Raise InputError (naming ``source``) listing every problem of a model card."""
    if not isinstance(card, Mapping):
        raise InputError(source, f"model card must be a JSON object, got {type(card).__name__}")
    problems = [f"missing field {k!r}" for k in REQUIRED_CARD_FIELDS if k not in card]
    get = card.get
    arch = None
    if "architecture" in card:
        try:
            arch = ViTConfig.from_dict(dict(get("architecture")))
        except (TypeError, ValueError) as err:
            problems.append(f"bad architecture: {err}")
    bands = get("bands")
    if not (isinstance(bands, list) and bands and all(isinstance(b, str) and b for b in bands)):
        problems.append(f"bands must be a non-empty list of names, got {bands!r}")
    elif len(set(bands)) != len(bands):
        problems.append(f"bands must be unique, got {bands}")
    elif arch is not None and len(bands) != arch.in_chans:
        problems.append(f"{len(bands)} bands {bands} for an encoder of {arch.in_chans} channels")
    if get("units") not in UNITS:
        problems.append(f"units must be one of {UNITS}, got {get('units')!r}")
    if get("quantity") not in QUANTITIES:
        problems.append(f"quantity must be one of {QUANTITIES}, got {get('quantity')!r}")
    if get("normalization") is not None:
        try:
            stats = BandStats.from_dict(dict(get("normalization")))
        except (TypeError, ValueError) as err:
            problems.append(f"bad normalization: {err}")
        else:
            if stats.units != get("units"):
                problems.append(f"normalization is in {stats.units}, the card in {get('units')}")
            if isinstance(bands, list) and not set(stats.bands) <= set(bands):
                problems.append(f"normalization bands {stats.bands} are not among {bands}")
    ssl = get("ssl")
    if not (
        isinstance(ssl, Mapping)
        and isinstance(ssl.get("method"), str)
        and isinstance(ssl.get("config"), Mapping)
    ):
        problems.append(f"ssl must be {{'method': str, 'config': dict}}, got {ssl!r}")
    data = get("data")
    if not (
        isinstance(data, Mapping)
        and {"manifest", "checksum"} <= set(data)
        and all(data[k] is None or isinstance(data[k], str) for k in ("manifest", "checksum"))
    ):
        problems.append(
            f"data must be {{'manifest': str|null, 'checksum': str|null}}, got {data!r}"
        )
    if not (isinstance(get("git"), Mapping) and {"sha", "dirty"} <= set(get("git"))):
        problems.append(f"git must hold 'sha' and 'dirty', got {get('git')!r}")
    if not isinstance(get("created"), str):
        problems.append(f"created must be an ISO time string, got {get('created')!r}")
    if not isinstance(get("metrics"), Mapping):
        problems.append(f"metrics must be a dict, got {get('metrics')!r}")
    count = get("parameter_count")
    if not (isinstance(count, int) and count > 0):
        problems.append(f"parameter_count must be a positive integer, got {count!r}")
    if not re.fullmatch(r"[0-9a-f]{64}", str(get("weights_sha256"))):
        problems.append(f"weights_sha256 must be 64 hex digits, got {get('weights_sha256')!r}")
    extra = get("extra_tensors")
    if extra is not None and not (isinstance(extra, Mapping) and {"file", "sha256"} <= set(extra)):
        problems.append(f"extra_tensors must be null or hold 'file' and 'sha256', got {extra!r}")
    if problems:
        raise InputError(source, "invalid model card: " + "; ".join(problems))


def save_checkpoint(
    path_dir: str | os.PathLike[str],
    encoder: ViTEncoder,
    card: Mapping[str, Any],
    extra_tensors: Mapping[str, Tensor] | None = None,
    *,
    overwrite: bool = False,
) -> Path:
    """Write ``model.safetensors`` (+ ``extra.safetensors``) and ``model_card.json``.

    The folder is built under a temporary sibling name and renamed into place, so a
    crash leaves either the previous checkpoint or none, never a card without
    weights. Returns the folder.
    """
    path = Path(path_dir)
    if path.exists() and not overwrite:
        raise InputError(path, "checkpoint already exists; pass overwrite=True to replace it")
    arch = encoder.config.to_dict()
    if card.get("architecture") not in (None, arch):
        raise InputError(
            path, f"card architecture {card['architecture']} is not the encoder's {arch}"
        )
    full = {"metrics": {}, **card, "architecture": arch, "card_version": CARD_VERSION}
    full.setdefault("created", utc_now())
    if "git" not in full:
        full["git"] = git_info(Path(__file__).resolve().parent)
    state = {k: v.detach().cpu().contiguous() for k, v in encoder.state_dict().items()}
    full["parameter_count"] = int(sum(p.numel() for p in encoder.parameters()))
    full["weights_file"] = WEIGHTS_FILE
    full["weights_sha256"] = "0" * 64  # placeholder so the card validates before any write
    full["extra_tensors"] = None
    if extra_tensors:
        full["extra_tensors"] = {"file": EXTRA_FILE, "sha256": "0" * 64}
    validate_model_card(full, path / CARD_FILE)
    try:
        json.dumps(full, allow_nan=False)
    except (TypeError, ValueError) as err:
        raise InputError(path / CARD_FILE, f"model card is not plain JSON: {err}") from err
    with atomic_directory(path, overwrite=overwrite) as tmp:
        save_file(state, str(tmp / WEIGHTS_FILE), metadata={"format": "pt"})
        full["weights_sha256"] = _sha256(tmp / WEIGHTS_FILE)
        if extra_tensors:
            extra = {k: v.detach().cpu().clone().contiguous() for k, v in extra_tensors.items()}
            save_file(extra, str(tmp / EXTRA_FILE), metadata={"format": "pt"})
            full["extra_tensors"] = {
                "file": EXTRA_FILE,
                "sha256": _sha256(tmp / EXTRA_FILE),
                "keys": sorted(extra),
            }
        text = json.dumps(full, indent=2, sort_keys=True, allow_nan=False) + "\n"
        (tmp / CARD_FILE).write_text(text, encoding="utf-8")
        for written in tmp.iterdir():
            _fsync(written)
    return path


def _read_card(card_path: Path) -> dict[str, Any]:
    try:
        card = json.loads(card_path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise InputError(card_path, f"cannot read model card: {err}") from err
    validate_model_card(card, card_path)
    return card


def _read_tensors(path: Path, sha256: str | None) -> dict[str, Tensor]:
    if not path.is_file():
        raise InputError(path, "weights file not found")
    if sha256 is not None and _sha256(path) != sha256:
        raise InputError(path, "sha256 differs from the model card: truncated or replaced file")
    try:
        return load_file(str(path), device="cpu")
    except (SafetensorError, OSError, ValueError) as err:
        raise InputError(path, f"not a readable safetensors file: {err}") from err


def load_checkpoint(path: str | os.PathLike[str]) -> tuple[dict[str, Tensor], dict | None]:
    """``(state_dict, card)`` from a checkpoint folder or a ``.safetensors`` file.

    A folder must hold a valid card; a bare file uses the ``model_card.json`` beside
    it when that card names it, else ``card`` is None. The weights' sha256 is
    checked against the card.
    """
    path = Path(path)
    if path.is_dir():
        card_path = path / CARD_FILE
        if not card_path.is_file():
            raise InputError(path, f"not a sarlab checkpoint: no {CARD_FILE}")
        card = _read_card(card_path)
        weights = path / card["weights_file"]
    elif path.is_file():
        weights, card = path, None
        beside = path.parent / CARD_FILE
        if beside.is_file():
            candidate = _read_card(beside)
            card = candidate if candidate.get("weights_file") == path.name else None
    else:
        raise InputError(path, "checkpoint not found")
    return _read_tensors(weights, card["weights_sha256"] if card else None), card


def load_extra_tensors(path: str | os.PathLike[str]) -> dict[str, Tensor]:
    """The extra tensors saved with a checkpoint folder ({} when there are none)."""
    path = Path(path)
    card = _read_card(path / CARD_FILE)
    extra = card["extra_tensors"]
    return {} if extra is None else _read_tensors(path / extra["file"], extra["sha256"])


def _unwrap(state: Mapping[str, Any], name: str) -> dict[str, Tensor]:
    """Accept ``{"model": sd}`` / ``{"state_dict": sd}`` wrappers and DDP's ``module.``."""
    for key in ("model", "state_dict"):
        if set(state) == {key} or (key in state and isinstance(state[key], Mapping)):
            state = state[key]
            break
    bad = [k for k, v in state.items() if not isinstance(v, Tensor)]
    if bad:
        raise InputError(name, f"state dict entries are not tensors: {bad[:10]}")
    if state and all(k.startswith("module.") for k in state):
        state = {k.removeprefix("module."): v for k, v in state.items()}
    return dict(state)


def infer_config(state: Mapping[str, Tensor], name: str = "state dict") -> ViTConfig:
    """Architecture from tensor shapes; heads = embed_dim // 64 (timm's ViT-Ti/S/B/L rule)."""
    need = ("cls_token", "pos_embed", "patch_embed.proj.weight", "blocks.0.mlp.fc1.weight")
    missing = [k for k in need if k not in state]
    if missing:
        raise InputError(name, f"cannot infer the architecture without {missing}; pass config=")
    weight = state["patch_embed.proj.weight"]
    dim, in_chans, p = weight.shape[0], weight.shape[1], weight.shape[2]
    side = math.isqrt(state["pos_embed"].shape[1] - 1)
    if dim % 64:
        raise InputError(name, f"embed_dim {dim} is not a multiple of 64: pass config= with heads")
    depth = 1 + max(int(k.split(".")[1]) for k in state if k.startswith("blocks."))
    inc = state.get("incidence_embed.proj.weight")
    return ViTConfig(
        embed_dim=dim,
        depth=depth,
        num_heads=dim // 64,
        mlp_ratio=state["blocks.0.mlp.fc1.weight"].shape[0] / dim,
        patch_size=p,
        img_size=side * p,
        in_chans=in_chans,
        qkv_bias="blocks.0.attn.qkv.bias" in state,
        incidence_conditioning=inc is not None,
        incidence_frequencies=8 if inc is None else (inc.shape[1] - 1) // 2,
    )


def _adapt(
    state: dict[str, Tensor], config: ViTConfig, adapt_channels: bool, name: str
) -> tuple[dict[str, Tensor], list[str]]:
    """Drop classifier keys, resample pos_embed, adapt patch_embed channels (documented)."""
    notes = []
    dropped = sorted(k for k in state if k.startswith(_DROPPED_PREFIXES))
    if dropped:
        notes.append(f"dropped classifier keys {dropped}")
        state = {k: v for k, v in state.items() if k not in dropped}
    grid = config.img_size // config.patch_size
    pos = state.get("pos_embed")
    if pos is not None and pos.ndim == 3 and pos.shape[1] != 1 + grid * grid:
        try:
            state["pos_embed"] = resample_pos_embed(pos, (grid, grid))
        except ValueError as err:
            raise InputError(name, str(err)) from err
        notes.append(f"resampled pos_embed {tuple(pos.shape)} to the {grid}x{grid} grid")
    weight = state.get("patch_embed.proj.weight")
    if weight is not None and weight.ndim == 4:
        if tuple(weight.shape[2:]) != (config.patch_size, config.patch_size):
            raise InputError(
                name, f"patch size {tuple(weight.shape[2:])} differs from {config.patch_size}"
            )
        have = weight.shape[1]
        if have != config.in_chans:
            if not adapt_channels:
                raise InputError(
                    name,
                    f"patch_embed has {have} input channels, the encoder {config.in_chans}; "
                    "pass adapt_channels=True to average and repeat them",
                )
            # Sum over source channels, split evenly over target channels: an input with
            # the same value in every channel embeds as it did in the source model.
            summed = weight.sum(dim=1, keepdim=True) / config.in_chans
            state["patch_embed.proj.weight"] = summed.repeat(1, config.in_chans, 1, 1)
            notes.append(f"adapted patch_embed from {have} to {config.in_chans} channels")
    return state, notes


def _check_card(card: Mapping, name: str, bands, units, quantity) -> None:
    wanted = {"bands": None if bands is None else list(bands), "units": units, "quantity": quantity}
    clash = [k for k, v in wanted.items() if v is not None and card[k] != v]
    if clash:
        raise UnitsError(
            f"{name}: the model expects bands {card['bands']} of {card['quantity']} in "
            f"{card['units']}, but the data has bands {wanted['bands'] or '?'} of "
            f"{wanted['quantity'] or '?'} in {wanted['units'] or '?'} (mismatch: {clash})"
        )


def load_encoder(
    path_or_state_dict: str | os.PathLike[str] | Mapping[str, Any],
    *,
    config: ViTConfig | Mapping[str, Any] | None = None,
    strict: bool = True,
    expect_bands: Sequence[str] | None = None,
    expect_units: str | None = None,
    expect_quantity: str | None = None,
    adapt_channels: bool = False,
) -> ViTEncoder:
    """Build an encoder from a sarlab checkpoint, a safetensors file or a (timm) state dict.

    The architecture is ``config`` if given, else the card's, else inferred from
    shapes (:func:`infer_config`). ``head.*``/``fc_norm.*`` are dropped, ``pos_embed``
    is resampled to the config's grid, and with ``adapt_channels`` a patch embedding
    of another channel count is summed over its channels and spread evenly over the
    new ones. Missing or unexpected keys raise InputError listing them (with
    ``strict=False``: a warning, and the rest loads). With a card, ``expect_*`` that
    disagree with it raise UnitsError. The card and what loading did are kept as
    ``encoder.model_card`` and ``encoder.load_report``.
    """
    card = None
    if isinstance(path_or_state_dict, Mapping):
        name = "state dict"
        state = _unwrap(path_or_state_dict, name)
    else:
        name = str(path_or_state_dict)
        state, card = load_checkpoint(path_or_state_dict)
    if card is not None:
        _check_card(card, name, expect_bands, expect_units, expect_quantity)
    if isinstance(config, Mapping):
        config = ViTConfig.from_dict(dict(config))
    if config is None:
        config = ViTConfig.from_dict(card["architecture"]) if card else infer_config(state, name)
    state, notes = _adapt(state, config, adapt_channels, name)
    encoder = ViTEncoder(config)
    own = encoder.state_dict()
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    wrong = [
        f"{k} {tuple(state[k].shape)} vs {tuple(own[k].shape)}"
        for k in sorted(set(own) & set(state))
        if state[k].shape != own[k].shape
    ]
    if wrong:
        raise InputError(name, f"shape mismatch for {wrong}")
    if missing or unexpected:
        message = f"missing keys {missing}; unexpected keys {unexpected}"
        if strict:
            raise InputError(name, f"{message} (pass strict=False to load the rest)")
        warnings.warn(f"{name}: partial load: {message}", stacklevel=2)
    encoder.load_state_dict(state, strict=False)
    encoder.model_card = card
    encoder.load_report = {"missing": missing, "unexpected": unexpected, "notes": notes}
    return encoder
