"""Streaming readers (SSL4EO-S12 S1GRD, Major TOM Core-S1RTC) on fixtures in the real formats."""

from __future__ import annotations

import io
import json
import os
import shutil
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch
from fixture_paths import load_maker
from torch.utils.data import DataLoader
from train_helpers import TinyMasked, tiny_encoder
from zarr.storage import ZipStore

from sarlab.errors import InputError, UnitsError
from sarlab.io.majortom import MajorTOMS1Stream
from sarlab.io.ssl4eo import SSL4EOS1Stream, detect_layout
from sarlab.io.streaming import INDEX_STRIDE, open_stream, split_index
from sarlab.preprocess.normalize import BandStats
from sarlab.train import TrainConfig, fit

ssl = load_maker("ssl4eo")
mt = load_maker("majortom")


@pytest.fixture(scope="module")
def ssl_root(make_fixture) -> Path:
    return make_fixture("ssl4eo")


@pytest.fixture(scope="module")
def mt_root(make_fixture) -> Path:
    return make_fixture("majortom")


def raw(stream) -> list[dict]:
    return list(stream)


def by_id(samples) -> dict[str, np.ndarray]:
    return {s["chip_id"]: s["image"].numpy() for s in samples}


# ----------------------------------------------------------------- values round-trip
def test_ssl4eo_zarr_chunk_files_round_trip(ssl_root):
    stream = SSL4EOS1Stream(ssl_root / "v11_zarr", shuffle=False, nan_fill=None)
    assert stream.layout == "zarr" and len(stream) == 3 * 4 * 4
    got = by_id(raw(stream))
    assert len(got) == 48
    for shard in range(ssl.ZARR_SHARDS):
        ds = ssl.zarr_shard_dataset(shard)
        for i, sample in enumerate(ds["sample"].values):
            for t in range(ssl.N_TIMES):
                want = ds["bands"].values[i, t].astype(np.float32)  # (vv, vh) as written
                np.testing.assert_array_equal(got[f"{sample}_{t}"], want)
    nan_id = f"{ssl.zarr_shard_dataset(0)['sample'].values[1]}_2"
    assert np.isnan(got[nan_id][:, :10, :10]).all()
    assert np.isfinite(got[nan_id][:, 10:, :]).all()


def test_ssl4eo_webdataset_and_v1_geotiff_round_trip(ssl_root):
    wds = SSL4EOS1Stream(ssl_root / "v11_wds", shuffle=False)
    assert wds.layout == "webdataset"
    with pytest.raises(TypeError, match="not known"):
        len(wds)
    got = by_id(raw(wds))
    assert len(got) == ssl.WDS_SHARDS * ssl.WDS_SAMPLES * ssl.N_TIMES
    want = ssl.values(ssl.wds_seed(1, 2), (4, 36, 36)).astype(np.float32)
    np.testing.assert_array_equal(got["0005012_3"], want[3])

    v1 = SSL4EOS1Stream(ssl_root / "v1", shuffle=False)
    assert v1.layout == "geotiff" and len(v1.shards) == ssl.V1_LOCATIONS
    samples = raw(v1)
    assert len(samples) == ssl.V1_LOCATIONS * ssl.V1_TIMES
    location, product = samples[3]["chip_id"].split("/")
    assert (location, product) == ("0000001", ssl.product_id(1, 1))
    want = ssl.values(ssl.SEED + 200 + 1, (2, 44, 44), dtype="float32")[1]
    np.testing.assert_array_equal(samples[3]["image"].numpy(), want)


def test_ssl4eo_units_timestamps_and_layout_detection(ssl_root, tmp_path):
    db = by_id(SSL4EOS1Stream(ssl_root / "v11_wds", shuffle=False))
    lin = by_id(SSL4EOS1Stream(ssl_root / "v11_wds", shuffle=False, units="linear"))
    np.testing.assert_allclose(lin["0005000_1"], 10 ** (db["0005000_1"] / 10), rtol=1e-6)

    one = SSL4EOS1Stream(ssl_root / "v11_zarr", shuffle=False, timestamps="random")
    assert len(one) == 12

    def picks(epoch: int) -> list[str]:
        one.set_epoch(epoch)
        return [s["chip_id"] for s in one]

    first = picks(0)
    assert len(first) == 12 and len({c.split("_")[0] for c in first}) == 12
    assert picks(1) != first  # another timestamp per location in another epoch
    assert picks(0) == first
    two = SSL4EOS1Stream(ssl_root / "v11_zarr", shuffle=False, timestamps=[0, 3])
    assert {c[-1] for c in by_id(two)} == {"0", "3"} and len(two) == 24

    assert detect_layout(ssl_root / ssl.WDS_DIR) == "webdataset"
    with pytest.raises(InputError, match="holds no SSL4EO-S12"):
        detect_layout(tmp_path)
    with pytest.raises(ValueError, match="bands"):
        SSL4EOS1Stream(ssl_root / "v1", bands=["HH"])


def test_majortom_values_are_converted_to_db_explicitly(mt_root):
    db = raw(MajorTOMS1Stream(mt_root, shuffle=False, nan_fill=None))
    lin = raw(MajorTOMS1Stream(mt_root, shuffle=False, nan_fill=None, units="linear"))
    assert len(db) == sum(mt.ROWS)  # metadata.parquet is not a shard
    first = db[0]
    assert first["chip_id"] == f"{mt.product(0, 0)}/{mt.cell(0, 0)[0]}"
    data = mt.patch(0, 0)
    valid = data != mt.NODATA
    valid[0, mt.ZERO_AT[0], mt.ZERO_AT[1]] = False  # 0 W has no dB value
    want = np.where(valid, 10 * np.log10(np.where(valid, data, 1.0)), np.nan)
    np.testing.assert_allclose(first["image"].numpy(), want, rtol=1e-6, equal_nan=True)
    assert np.isnan(first["image"][:, :, : mt.NODATA_COLS]).all()
    want_lin = np.where(data == mt.NODATA, np.nan, data)
    np.testing.assert_array_equal(lin[0]["image"].numpy(), want_lin)
    k, row = split_index(lin[7]["index"])
    np.testing.assert_array_equal(lin[7]["image"].numpy(), mt.patch(k, row))
    assert MajorTOMS1Stream.quantity == "gamma0" and lin[0]["image"].dtype == torch.float32


def test_normalisation_nan_fill_and_stats_units(mt_root):
    stats = BandStats(
        bands=["VH", "VV"], units="dB", mean=[-20.0, -12.0], std=[4.0, 5.0],
        median=[-20.0, -12.0], p01=[-35.0, -25.0], p99=[-8.0, 0.0], count=[1, 1],
    )  # fmt: skip
    plain = raw(MajorTOMS1Stream(mt_root, shuffle=False, nan_fill=None))[0]["image"]
    norm = raw(MajorTOMS1Stream(mt_root, shuffle=False, stats=stats, nan_fill=0.0))[0]["image"]
    vv = plain[0]
    want = (vv.clamp(-25.0, 0.0) + 12.0) / 5.0  # the VV statistics, whatever their order
    assert torch.allclose(norm[0], torch.nan_to_num(want, nan=0.0), atol=1e-6)
    assert (norm[:, :, : mt.NODATA_COLS] == 0).all()
    with pytest.raises(UnitsError, match="statistics are in dB"):
        MajorTOMS1Stream(mt_root, units="linear", stats=stats)
    computed = MajorTOMS1Stream(mt_root, shuffle=False).band_stats(n_samples=3)
    assert computed.units == "dB" and computed.bands == ["VV", "VH"]
    assert -16 < computed.mean[0] < -8 and computed.mean[1] < computed.mean[0]


def test_crops_resize_and_too_small_images(mt_root, ssl_root):
    full = by_id(MajorTOMS1Stream(mt_root, shuffle=False, nan_fill=None))
    crops = raw(MajorTOMS1Stream(mt_root, shuffle=False, nan_fill=None, size=16, crops_per_item=3))
    assert len(crops) == 3 * sum(mt.ROWS) and crops[0]["image"].shape == (2, 16, 16)
    for s in crops[:9]:
        src = full[s["chip_id"].rsplit("#", 1)[0]]
        windows = np.lib.stride_tricks.sliding_window_view(src, (2, 16, 16))[0]
        hits = np.all(np.isclose(windows, s["image"].numpy(), equal_nan=True), axis=(-3, -2, -1))
        assert hits.sum() == 1  # a true window of the patch
    again = raw(MajorTOMS1Stream(mt_root, shuffle=False, nan_fill=None, size=16, crops_per_item=3))
    assert all(
        torch.equal(a["image"].nan_to_num(), b["image"].nan_to_num())
        for a, b in zip(crops, again, strict=True)
    )
    assert len({s["index"] for s in crops}) == len(crops)
    center = raw(MajorTOMS1Stream(mt_root, shuffle=False, nan_fill=None, size=16, crop="center"))
    np.testing.assert_array_equal(
        center[1]["image"].numpy(), full[center[1]["chip_id"]][:, 16:32, 16:32]
    )
    small = raw(MajorTOMS1Stream(mt_root, shuffle=False, size=12, crop="resize"))
    assert small[0]["image"].shape == (2, 12, 12) and torch.isfinite(small[0]["image"]).all()
    with pytest.raises(InputError, match=r"shard_00000\d\.tar: \d+_\d: image of 36x36 px does not"):
        raw(SSL4EOS1Stream(ssl_root / "v11_wds", size=40))
    sparse = raw(MajorTOMS1Stream(mt_root, shuffle=False, size=8, crop="center", max_nodata=0.0))
    # centre crops (rows/columns 20-27) avoid the nodata border, but the first one holds the
    # 0 W pixel at (20, 20), NaN in dB: with no nodata allowed it is skipped
    assert len(sparse) == sum(mt.ROWS) - 1 and sparse[0]["index"] == 1
    edge = raw(MajorTOMS1Stream(mt_root, shuffle=False, max_nodata=0.1))
    assert len(edge) == sum(mt.ROWS) - 1  # the patch with 6/48 nodata columns is skipped


# ----------------------------------------------------------------- sharding and order
def indices(stream, workers: int = 0) -> list[int]:
    if workers == 0:
        return [s["index"] for s in stream]
    loader = DataLoader(stream, batch_size=None, num_workers=workers)
    return [int(s["index"]) for s in loader]


@pytest.mark.parametrize("world", [1, 2, 3])
def test_ranks_read_disjoint_shards_that_cover_the_epoch(ssl_root, world):
    everything = set(indices(SSL4EOS1Stream(ssl_root / "v11_zarr")))
    assert len(everything) == 48
    parts = []
    for rank in range(world):
        stream = SSL4EOS1Stream(ssl_root / "v11_zarr", seed=3, rank=rank, world_size=world)
        stream.set_epoch(2)
        parts.append(indices(stream))
    assert sum(len(p) for p in parts) == 48 and set().union(*map(set, parts)) == everything
    shards = [{split_index(i)[0] for i in p} for p in parts]
    assert all(a.isdisjoint(b) for j, a in enumerate(shards) for b in shards[j + 1 :])
    with pytest.raises(InputError, match="3 shards cannot be split over 4 ranks"):
        indices(SSL4EOS1Stream(ssl_root / "v11_zarr", rank=0, world_size=4))


def test_dataloader_workers_split_shards_within_a_rank(mt_root):
    stream = MajorTOMS1Stream(mt_root, rank=1, world_size=2, seed=5)
    alone = indices(stream)
    with_workers = indices(stream, workers=2)
    assert sorted(with_workers) == sorted(alone) and len(set(with_workers)) == len(alone)
    other = indices(MajorTOMS1Stream(mt_root, rank=0, world_size=2, seed=5), workers=2)
    assert set(other).isdisjoint(with_workers)
    assert len(other) + len(with_workers) == sum(mt.ROWS)


def test_rank_from_torchrun_environment(mt_root, monkeypatch):
    monkeypatch.setenv("RANK", "1")
    monkeypatch.setenv("WORLD_SIZE", "3")
    stream = MajorTOMS1Stream(mt_root, shuffle=False)
    assert stream.slot() == (1, 3) and stream.my_shards() == [1]
    assert {split_index(i)[0] for i in indices(stream)} == {1}


def test_order_is_determined_by_seed_and_epoch(mt_root):
    def order(seed, epoch):
        stream = MajorTOMS1Stream(mt_root, seed=seed, shuffle_buffer=8, size=16)
        stream.set_epoch(epoch)
        samples = raw(stream)
        return [s["index"] for s in samples], [s["image"] for s in samples]

    a_idx, a_img = order(0, 0)
    b_idx, b_img = order(0, 0)
    assert a_idx == b_idx and all(torch.equal(x, y) for x, y in zip(a_img, b_img, strict=True))
    c_idx, c_img = order(0, 1)
    assert sorted(c_idx) == sorted(a_idx) and c_idx != a_idx
    crops = dict(zip(a_idx, a_img, strict=True))  # another epoch crops elsewhere
    assert any(not torch.equal(crops[i], x) for i, x in zip(c_idx, c_img, strict=True))
    assert order(1, 0)[0] != a_idx
    unshuffled = [s["index"] for s in MajorTOMS1Stream(mt_root, shuffle=False)]
    assert unshuffled == sorted(unshuffled) and unshuffled[4] == 1 * INDEX_STRIDE + 0


# ----------------------------------------------------------------- reading lazily
def test_parquet_shards_are_read_row_group_by_row_group(mt_root, monkeypatch):
    pulled = []
    real = pq.ParquetFile.iter_batches

    def counting(self, *args, **kwargs):
        assert "thumbnail" not in kwargs["columns"]
        for batch in real(self, *args, **kwargs):
            pulled.append(batch.num_rows)
            yield batch

    def forbidden(*args, **kwargs):
        raise AssertionError("a whole shard was read")

    monkeypatch.setattr(pq.ParquetFile, "iter_batches", counting)
    monkeypatch.setattr(pq.ParquetFile, "read", forbidden)
    monkeypatch.setattr(pq, "read_table", forbidden)
    shard = mt_root / "images" / "part_00003.parquet"
    assert pq.ParquetFile(shard).metadata.num_row_groups == 5
    first = next(iter(MajorTOMS1Stream(shard, shuffle=False)))
    assert first["index"] == 0 and pulled == [1]  # one row group of five
    assert len(raw(MajorTOMS1Stream(shard, shuffle=False))) == 5 and len(pulled) == 1 + 5


def test_zarr_chunk_files_are_read_one_chunk_at_a_time(ssl_root, monkeypatch):
    keys = []
    real = ZipStore.get

    async def counting(self, key, *args, **kwargs):
        if key.startswith("bands/") and not key.endswith((".zarray", ".zattrs")):
            keys.append(key)
        return await real(self, key, *args, **kwargs)

    monkeypatch.setattr(ZipStore, "get", counting)
    shard = next((ssl_root / ssl.ZARR_DIR).glob("*000002.zarr.zip"))
    first = next(iter(SSL4EOS1Stream(shard, shuffle=False)))
    assert first["chip_id"].endswith("_0") and keys == ["bands/0.0.0.0.0"]
    list(SSL4EOS1Stream(shard, shuffle=False))
    assert sorted(set(keys)) == [f"bands/0.{t}.0.0.0" for t in range(4)] and len(keys) == 1 + 4


# ----------------------------------------------------------------- broken shards
def test_broken_parquet_shards_name_the_file(mt_root, tmp_path):
    table = pq.read_table(mt_root / "images" / "part_00002.parquet")
    missing = tmp_path / "missing" / "part_00009.parquet"
    missing.parent.mkdir()
    pq.write_table(table.drop(["vh"]), missing, row_group_size=1)
    with pytest.raises(InputError, match=r"part_00009\.parquet: has no column\(s\) \['vh'\]"):
        raw(MajorTOMS1Stream(missing))
    garbage = tmp_path / "garbage" / "part_00010.parquet"
    garbage.parent.mkdir()
    vv = table.column("vv").to_pylist()
    vv[1] = b"not a tiff"
    pq.write_table(table.set_column(4, "vv", pa.array(vv, pa.binary())), garbage, row_group_size=1)
    stream = MajorTOMS1Stream(garbage, shuffle=False)
    it = iter(stream)
    assert next(it)["index"] == 0  # the good row first: nothing was decoded ahead
    with pytest.raises(
        InputError, match=r"part_00010\.parquet row 1 vv: is not a readable GeoTIFF"
    ):
        next(it)
    notparquet = tmp_path / "bad" / "part_00011.parquet"
    notparquet.parent.mkdir()
    notparquet.write_bytes(b"PAR1 truncated")
    with pytest.raises(InputError, match=r"part_00011\.parquet: is not a readable parquet"):
        len(MajorTOMS1Stream(notparquet))


def test_broken_ssl4eo_shards_name_the_file(ssl_root, tmp_path):
    src = next((ssl_root / ssl.ZARR_DIR).glob("*000001.zarr.zip"))
    nobands = tmp_path / "a" / "nobands.zarr.zip"
    nobands.parent.mkdir()
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(nobands, "w") as zout:
        for name in zin.namelist():
            if not name.startswith("bands/") and name != ".zmetadata":
                zout.writestr(name, zin.read(name))
    with pytest.raises(InputError, match=r"nobands\.zarr\.zip: has no 'bands' array"):
        raw(SSL4EOS1Stream(nobands))
    tar_path = tmp_path / "b" / "ssl4eos12_shard_000009.tar"
    tar_path.parent.mkdir()
    with tarfile.open(tar_path, "w") as tar:
        info = tarfile.TarInfo("0000042.zarr.zip")
        info.size = 7
        tar.addfile(info, io.BytesIO(b"garbage"))
    with pytest.raises(InputError, match=r"ssl4eos12_shard_000009\.tar:0000042\.zarr\.zip: is not"):
        raw(SSL4EOS1Stream(tar_path))
    v1 = tmp_path / "c" / "s1"
    shutil.copytree(ssl_root / "v1" / "s1", v1)
    victim = sorted((v1 / "0000001").iterdir())[0] / "VH.tif"
    victim.unlink()
    with pytest.raises(InputError, match=rf"{victim.parent.name}: has no VH\.tif"):
        raw(SSL4EOS1Stream(v1.parent, shuffle=False))


# ----------------------------------------------------------------- the trainer
def _config(out: Path, **kw) -> TrainConfig:
    base = dict(steps=2, batch_size=4, lr=1e-3, warmup_steps=1, log_every=1,
                checkpoint_every=1, out_dir=str(out))  # fmt: skip
    return TrainConfig(**{**base, **kw})


def test_fit_trains_on_a_stream_and_writes_its_card(mt_root, tmp_path):
    stream = MajorTOMS1Stream(mt_root, size=16, crops_per_item=2, shuffle_buffer=8)
    method = TinyMasked(tiny_encoder(), seeded=True)
    result = fit(method, stream, _config(tmp_path / "run"), progress=False)
    assert result.step == 2 and result.steps_per_epoch == len(stream) // 4 == 6
    assert [r["step"] for r in result.history] == [1, 2]
    assert all(np.isfinite(r["loss"]) for r in result.history)
    card = json.loads((result.checkpoint / "model_card.json").read_text())
    assert (card["bands"], card["units"], card["quantity"]) == (["VV", "VH"], "dB", "gamma0")
    assert card["data"]["source"] == "Major TOM Core-S1RTC"


class Stop(Exception):
    pass


def stop_at(step: int):
    def callback(current: int, info: dict) -> None:
        if current == step:
            raise Stop

    return callback


def test_fit_on_a_stream_of_unknown_length_needs_steps_and_resumes_exactly(ssl_root, tmp_path):
    """24 samples in batches of 4: 8 steps cross into a second pass; crash at 5, resume at 4."""

    def run(out, seed=0, **kwargs):
        stream = SSL4EOS1Stream(ssl_root / "v11_wds", size=16, shuffle_buffer=4)
        method = TinyMasked(tiny_encoder(seed), seeded=True)
        cfg = _config(out, steps=8, checkpoint_every=2)
        return fit(method, stream, cfg, progress=False, **kwargs), method.state_dict()

    with pytest.raises(ValueError, match="give steps="):
        fit(TinyMasked(tiny_encoder()), SSL4EOS1Stream(ssl_root / "v11_wds"),
            _config(tmp_path / "x", steps=None), progress=False)  # fmt: skip
    whole, w_whole = run(tmp_path / "whole")
    assert whole.steps_per_epoch is None
    assert [r["epoch"] for r in whole.history] == [0] * 6 + [1] * 2
    with pytest.raises(Stop):
        run(tmp_path / "part", callbacks=[stop_at(5)])
    torch.manual_seed(77)
    resumed, w_resumed = run(tmp_path / "part", seed=3)
    assert resumed.resumed_from == 4 and resumed.step == 8
    for k in w_whole:
        assert torch.equal(w_whole[k], w_resumed[k]), k
    card = json.loads((resumed.checkpoint / "model_card.json").read_text())
    assert (card["quantity"], card["units"]) == ("sigma0", "dB")
    assert open_stream("ssl4eo_s12", ssl_root / "v1").layout == "geotiff"


@pytest.mark.slow
def test_ddp_ranks_stream_their_own_shards_for_the_same_number_of_steps(mt_root, tmp_path):
    """2 gloo ranks, 3 shards of 4, 3 and 5 patches: rank 0 reads parts 1 and 3 (9 patches,
    4 batches of 2 per pass), rank 1 part 2 (3 patches, 1 batch per pass), both train 5 steps."""
    out = tmp_path / "ddp"
    cmd = [
        sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--standalone",
        str(Path(__file__).parent / "stream_ddp_worker.py"), str(mt_root), str(out),
        "--steps", "5",
    ]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=env)
    assert done.returncode == 0, done.stderr[-3000:]
    ranks = [json.loads((out / f"rank{r}.json").read_text()) for r in (0, 1)]
    assert [r["step"] for r in ranks] == [5, 5] and ranks[0]["world_size"] == 2
    assert all(len(r["seen"]) == 5 and all(len(b) == 2 for b in r["seen"]) for r in ranks)
    shards = [{split_index(i)[0] for b in r["seen"] for i in b} for r in ranks]
    assert shards == [{0, 2}, {1}]
    assert (out / "checkpoint" / "model_card.json").is_file()
