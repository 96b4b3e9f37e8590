"""Embeddings of a chip store or a whole scene with a checkpoint, as GeoParquet: ``sarlab embed``.

For people who want embeddings without a notebook (a batch job, a cluster node, a GIS user):
the same :func:`sarlab.embed.embed_chips` / :func:`sarlab.embed.embed_scene` as notebook 02,
with every bad input named in a one-line error instead of a traceback::

    sarlab embed reports/RUN/checkpoint chips.zarr -o chips.parquet --dense chips_dense.zarr
    sarlab embed reports/RUN/checkpoint scene.tif -o scene.parquet --stride 32
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from sarlab.errors import InputError, SarlabError

__all__ = ["embed_input", "register_cli"]

_DENSE_SUFFIXES = (".zarr", ".nc")


def register_cli(subparsers: argparse._SubParsersAction) -> None:
    """``sarlab embed CHECKPOINT INPUT -o OUT.parquet [--dense OUT.zarr] ...``."""
    from sarlab.chips_scene import READERS

    parser = subparsers.add_parser(
        "embed",
        help="embed a chip store or a scene file with a checkpoint (GeoParquet)",
        description=__doc__.splitlines()[0],
    )
    parser.add_argument("checkpoint", help="checkpoint folder (model_card.json + safetensors)")
    parser.add_argument(
        "input", help="a sarlab chip store (.zarr folder) or a scene file (.tif, .nc ...)"
    )
    parser.add_argument("-o", "--output", required=True, help="GeoParquet file to write")
    parser.add_argument(
        "--dense", metavar="PATH", help="also write patch embeddings to PATH (.zarr or .nc)"
    )
    parser.add_argument("--pool", choices=["mean", "cls"], default="mean", help="default: mean")
    parser.add_argument(
        "--split", action="append", help="chip stores: only this split (repeatable)"
    )
    parser.add_argument("--size", type=int, help="scenes: window side (default: the encoder's)")
    parser.add_argument("--stride", type=int, help="scenes: pixels between windows (default: size)")
    parser.add_argument(
        "--min-valid", type=float, default=0.5, help="scenes: skip windows with less data"
    )
    parser.add_argument("--reader", choices=sorted(READERS), help="scenes: default by suffix")
    parser.add_argument("--manifest", help="data manifest name to record in every row")
    parser.add_argument(
        "--random-init", action="store_true",
        help="use a seeded random-init twin of the checkpoint's encoder (the baseline)",
    )  # fmt: skip
    parser.add_argument("--seed", type=int, default=0, help="seed of --random-init")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--device", default="auto", help="auto (a GPU when present), cpu, cuda")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    parser.set_defaults(func=_cli)


def _check_paths(checkpoint: Path, source: Path, output: Path, dense: Path | None) -> None:
    if not (checkpoint / "model_card.json").is_file():
        problem = "does not exist" if not checkpoint.exists() else "has no model_card.json"
        raise InputError(checkpoint, f"is not a sarlab checkpoint folder: {problem}")
    if not source.exists():
        raise InputError(source, "does not exist")
    if output.suffix != ".parquet":
        raise InputError(output, "must end in .parquet (the embeddings are GeoParquet)")
    if dense is not None and dense.suffix not in _DENSE_SUFFIXES:
        raise InputError(dense, f"must end in {' or '.join(_DENSE_SUFFIXES)} (Zarr or NetCDF)")
    for path in (output, dense):
        if path is not None and not path.parent.is_dir():
            raise InputError(path, "its folder does not exist")


def _load(checkpoint: Path, **expect: Any):
    from sarlab.models import load_encoder

    try:
        return load_encoder(checkpoint, **expect).eval()
    except SarlabError:
        raise
    except Exception as err:  # a truncated or foreign weights file: name the checkpoint
        raise InputError(checkpoint, f"cannot be loaded ({type(err).__name__}: {err})") from err


def embed_input(
    checkpoint: str | Path,
    source: str | Path,
    *,
    dense: bool = False,
    random_init: bool = False,
    seed: int = 0,
    reader: str | None = None,
    split: list[str] | None = None,
    **options: Any,
):
    """Embeddings of a chip store (a folder) or a scene file: the gdf, or ``(gdf, grid)``.

    ``options`` go to :func:`~sarlab.embed.embed_chips` or :func:`~sarlab.embed.embed_scene`
    (for a store only ``pool``, ``batch_size``, ``device``, ``manifest``, ``progress``).
    """
    from sarlab.chips import ChipStore
    from sarlab.chips_scene import open_scene
    from sarlab.embed import embed_chips, embed_scene, random_like

    checkpoint, source = Path(checkpoint), Path(source)
    if source.is_dir():
        store = ChipStore(source)  # names the folder when it is not a finished chip store
        attrs = store.attrs
        encoder = _load(checkpoint, expect_bands=store.bands, expect_units=attrs["units"],
                        expect_quantity=attrs["quantity"])  # fmt: skip
        if random_init:
            encoder = random_like(encoder, seed)
        store_keys = ("pool", "batch_size", "device", "manifest", "progress")
        kept = {k: v for k, v in options.items() if k in store_keys}
        return embed_chips(store, encoder, split=split, dense=dense, **kept)
    try:
        scene = open_scene(source, reader)
    except SarlabError:
        raise
    except Exception as err:  # rasterio/h5 errors say little about which file
        raise InputError(
            source, f"cannot be read as a scene ({type(err).__name__}: {err})"
        ) from err
    scene.attrs.setdefault("source", str(source))
    encoder = _load(checkpoint)
    bands = list(encoder.model_card["bands"])  # the twin has no card: keep the band order
    if random_init:
        encoder = random_like(encoder, seed)
    return embed_scene(scene, encoder, bands=bands, dense=dense, **options)


def _cli(args: argparse.Namespace) -> int:
    import torch

    from sarlab.embed import write_dense, write_embeddings

    checkpoint, source, output = Path(args.checkpoint), Path(args.input), Path(args.output)
    dense = Path(args.dense) if args.dense else None
    _check_paths(checkpoint, source, output, dense)
    device = args.device
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    options: dict[str, Any] = {
        "pool": args.pool, "batch_size": args.batch_size, "device": device,
        "manifest": args.manifest, "progress": not args.no_progress,
    }  # fmt: skip
    if not source.is_dir():
        if args.split:
            raise InputError(source, "is a scene file: --split applies to chip stores only")
        options.update(size=args.size, stride=args.stride, min_valid=args.min_valid)
    result = embed_input(
        checkpoint, source, dense=dense is not None, random_init=args.random_init,
        seed=args.seed, reader=args.reader, split=args.split, **options,
    )  # fmt: skip
    gdf, grid = result if dense is not None else (result, None)
    write_embeddings(gdf, output)
    meta = gdf.attrs["sarlab_embeddings"]
    print(f"{len(gdf)} embeddings ({meta['dim']}-d, {args.pool} pooled) -> {output}")
    if grid is not None:
        write_dense(grid, dense)
        print(f"patch embeddings {dict(grid.sizes)} -> {dense}")
    return 0
