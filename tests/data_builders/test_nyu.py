"""Tests of the ``nyu_depth_v2_labeled`` builder on tiny inputs written into tmp_path.

The .mat fixture mimics the official MATLAB v7.3 file as h5py sees it (512-byte user block, column-major
axis order: images (N, 3, W, H), depths / labels (N, W, H)); the toolbox files are MATLAB v5 written with
scipy.io.savemat in the variable layout of the real ones.
"""

import re

import h5py
import numpy as np
import pytest
import tensorflow_datasets as tfds
from PIL import Image
from scipy import io as sio

from data_builders import get_builder_class
from data_builders.nyu_depth_v2_labeled import nyu_depth_v2_labeled_dataset_builder as nb
from semdepth_jax.data import meta

H, W = 6, 8  # 1/80 of 480 x 640: same aspect ratio, H != W catches transposes.
N = 5
TRAIN, TEST = [1, 3, 4], [2, 5]  # 1-based, as in splits.mat.


def _map40(k):
  """NYU-40 id (1..40) of raw id k (1..894) in the fixture mapping."""
  return k % 40 + 1


def _map13(c):
  """13-class id (1..13) of NYU-40 id c (1..40) in the fixture mapping."""
  return (c * 7) % 13 + 1


def _write_toolbox(folder, class13_names=meta.NYU13_CLASS_NAMES):
  folder.mkdir(parents=True, exist_ok=True)
  sio.savemat(
    folder / "splits.mat",
    {
      "trainNdxs": np.array(TRAIN, np.uint16).reshape(-1, 1),
      "testNdxs": np.array(TEST, np.uint16).reshape(-1, 1),
    },
  )
  names40 = ["refridgerator" if n == "refrigerator" else n for n in meta.NYU40_CLASS_NAMES]
  sio.savemat(
    folder / "classMapping40.mat",
    {
      "mapClass": np.array([[_map40(k) for k in range(1, 895)]], np.uint8),
      "className": np.array(names40, dtype=object).reshape(1, -1),
    },
  )
  sio.savemat(
    folder / "class13Mapping.mat",
    {
      "classMapping13": {
        "labels13": np.array([[_map13(c) for c in range(1, 41)]], np.uint8),
        "classNames": np.array(class13_names, dtype=object).reshape(1, -1),
      }
    },
  )


RAW_DEPTHS = {}
"""1-based index -> rawDepths (H, W) of the last ``_write_mat`` call (with ``raw_depths=True``)."""


def _write_mat(path, seed=0, raw_override=None, raw_depths=True):
  """Writes the HDF5 fixture; returns per 1-based index (image (H,W,3), depth (H,W), raw labels (H,W)).

  With ``raw_depths`` it also writes ``rawDepths``: the in-painted depth with ~40 % holes (0) and a
  different value elsewhere (depth + 0.25 m), so a test can tell which of the two was stored.
  """
  rng = np.random.default_rng(seed)
  images = rng.integers(0, 256, (N, H, W, 3), dtype=np.uint8)
  depths = rng.uniform(0.0, 10.0, (N, H, W)).astype(np.float32)
  depths[:, 0, 0] = 0.0
  raw = rng.integers(0, 895, (N, H, W)).astype(np.uint16)
  raw[:, 0, :3] = (0, 1, 894)
  if raw_override is not None:
    raw_override(raw)
  raw_d = np.where(rng.uniform(size=depths.shape) < 0.4, 0.0, depths + 0.25).astype(np.float32)
  RAW_DEPTHS.clear()
  with h5py.File(path, "w", userblock_size=512) as f:
    f.create_dataset("images", data=images.transpose(0, 3, 2, 1))  # (N, 3, W, H)
    f.create_dataset("depths", data=depths.transpose(0, 2, 1))  # (N, W, H)
    if raw_depths:
      f.create_dataset("rawDepths", data=raw_d.transpose(0, 2, 1))  # (N, W, H)
      RAW_DEPTHS.update({i + 1: raw_d[i] for i in range(N)})
    f.create_dataset("labels", data=raw.transpose(0, 2, 1))
  return {i + 1: (images[i], depths[i], raw[i]) for i in range(N)}


def _build(manual_dir, data_dir, config="40"):
  builder = nb.Builder(data_dir=str(data_dir), config=config)
  builder.download_and_prepare(
    download_config=tfds.download.DownloadConfig(manual_dir=str(manual_dir)),
    file_format="array_record",
  )
  return builder


def _read_split(builder, split):
  source = builder.as_data_source(split)
  return {source[i]["file_name"].decode(): source[i] for i in range(len(source))}


def _expected_labels(raw, config):
  out = np.empty(raw.shape, np.int64)
  for idx, k in np.ndenumerate(raw):
    if k == 0:
      out[idx] = 255
    elif config == "40":
      out[idx] = _map40(int(k)) - 1
    else:
      out[idx] = _map13(_map40(int(k))) - 1
  return out


# fx / 80 and (c + 0.5) / 80 - 0.5 of the 480 x 640 calibration (meta.NYU_INTRINSICS).
_K = np.array(
  [518.8579 / 80, 519.4696 / 80, 325.5824 / 80 + 0.5 / 80 - 0.5, 253.7362 / 80 + 0.5 / 80 - 0.5]
)


def test_registered_names_and_configs():
  assert nb.Builder.name == "nyu_depth_v2_labeled"
  assert get_builder_class("nyu_depth_v2_labeled/13") is nb.Builder
  assert [c.name for c in nb.Builder.BUILDER_CONFIGS] == ["40", "13", "40_raw", "13_raw"]
  assert get_builder_class("nyu_depth_v2_labeled/40_raw") is nb.Builder
  assert "nyu_depth_v2" in tfds.list_builders(
    with_community_datasets=False
  )  # TFDS's own, different name: no clash.


def test_metadata_files_are_read():
  metadata = nb.Builder.get_metadata()
  assert "silberman2012indoor" in metadata.citation
  assert "ml.task.semantic-segmentation" in metadata.tags
  assert nb.Builder.MANUAL_DOWNLOAD_INSTRUCTIONS


@pytest.mark.parametrize("config", ["40", "13"])
def test_mat_build_reads_back(tmp_path, config):
  manual = tmp_path / "manual"
  _write_toolbox(manual / "meta")
  frames = _write_mat(manual / "nyu_depth_v2_labeled.mat")
  builder = _build(manual, tmp_path / "data", config)
  train, test = _read_split(builder, "train"), _read_split(builder, "test")
  assert sorted(train) == ["000001", "000003", "000004"]
  assert sorted(test) == ["000002", "000005"]
  for key, ex in {**train, **test}.items():
    image, depth, raw = frames[int(key)]
    assert ex["image"].shape == (H, W, 3) and ex["image"].dtype == np.uint8
    np.testing.assert_array_equal(ex["image"], image)
    assert ex["depth"].shape == (H, W) and ex["depth"].dtype == np.float32
    np.testing.assert_array_equal(ex["depth"], depth)  # metres, unchanged.
    assert ex["segmentation"].shape == (H, W, 1)
    np.testing.assert_array_equal(ex["segmentation"][..., 0], _expected_labels(raw, config))
    assert ex["segmentation"][0, 0, 0] == 255
    assert bool(ex["has_depth"]) and bool(ex["has_segmentation"])
    np.testing.assert_allclose(ex["intrinsics"], _K, rtol=1e-6)


def _write_pngs(folder, frames, seed=1):
  rng = np.random.default_rng(seed)
  folder.mkdir(parents=True, exist_ok=True)
  out = {}
  for f in frames:
    rgb = rng.integers(0, 256, (H, W, 3), dtype=np.uint8)
    depth = rng.integers(0, 65536, (H, W), dtype=np.uint16)
    depth[0, :4] = (0, 5000, 40000, 65535)
    seg = rng.integers(0, 40, (H, W), dtype=np.uint8)
    seg[0, :3] = (0, 39, 255)
    Image.fromarray(rgb).save(folder / f"{f}.png")
    Image.fromarray(depth).save(folder / f"depth_gt_{f}.png")
    Image.fromarray(seg).save(folder / f"segm_gt_{f}.png")
    out[f] = (rgb, depth, seg)
  return out


@pytest.mark.parametrize("config", ["40", "13"])
def test_png_build_reads_back(tmp_path, config):
  manual = tmp_path / "manual"
  _write_toolbox(manual / "meta")
  frames = _write_pngs(manual / "joint", ["000002", "000003", "000005"])
  builder = _build(manual, tmp_path / "data", config)
  train, test = _read_split(builder, "train"), _read_split(builder, "test")
  assert sorted(train) == ["000003"]  # 1-based numbers, looked up directly in splits.mat.
  assert sorted(test) == ["000002", "000005"]
  for key, ex in {**train, **test}.items():
    rgb, depth, seg = frames[key]
    np.testing.assert_array_equal(ex["image"], rgb)
    np.testing.assert_allclose(ex["depth"], depth.astype(np.float64) / 5000.0, rtol=1e-6)
    assert ex["depth"][0, 1] == 1.0 and ex["depth"][0, 3] == pytest.approx(13.107)
    if config == "40":
      expected = seg
    else:
      expected = np.array(
        [[255 if t == 255 else _map13(t + 1) - 1 for t in row] for row in seg.tolist()]
      )
    np.testing.assert_array_equal(ex["segmentation"][..., 0], expected)
    np.testing.assert_allclose(ex["intrinsics"], _K, rtol=1e-6)


def test_png_frames_directly_in_manual_dir_with_toolbox_alongside(tmp_path):
  _write_toolbox(tmp_path / "manual")
  _write_pngs(tmp_path / "manual", ["000001"])
  builder = _build(tmp_path / "manual", tmp_path / "data")
  assert list(builder.info.splits) == ["train"]  # empty test split is not written.


def test_mat_missing_toolbox_files_listed_in_one_error(tmp_path):
  manual = tmp_path / "manual"
  manual.mkdir()
  _write_mat(manual / "nyu_depth_v2_labeled.mat")
  with pytest.raises(FileNotFoundError) as info:
    _build(manual, tmp_path / "data", "13")
  msg = str(info.value)
  assert "3 required file(s) missing" in msg
  for name in ("splits.mat", "classMapping40.mat", "class13Mapping.mat"):
    assert str(manual / name) in msg
  assert str(manual / "meta") in msg  # where else it looked.


def test_nothing_found_lists_mat_and_toolbox(tmp_path):
  manual = tmp_path / "manual"
  manual.mkdir()
  (manual / "readme.txt").write_text("empty")
  with pytest.raises(FileNotFoundError) as info:
    _build(manual, tmp_path / "data")
  msg = str(info.value)
  for name in ("nyu_depth_v2_labeled.mat", "splits.mat", "classMapping40.mat"):
    assert str(manual / name) in msg
  assert "none found" in msg


def test_png_missing_files_listed_in_one_error(tmp_path):
  manual = tmp_path / "manual"
  _write_toolbox(manual / "meta")
  _write_pngs(manual / "joint", ["000001", "000002"])
  (manual / "joint" / "depth_gt_000001.png").unlink()
  (manual / "joint" / "segm_gt_000002.png").unlink()
  with pytest.raises(FileNotFoundError) as info:
    _build(manual, tmp_path / "data")
  msg = str(info.value)
  assert "2 required file(s) missing" in msg
  assert str(manual / "joint" / "depth_gt_000001.png") in msg
  assert str(manual / "joint" / "segm_gt_000002.png") in msg


def test_png_corrupt_names_the_file(tmp_path):
  manual = tmp_path / "manual"
  _write_toolbox(manual / "meta")
  _write_pngs(manual / "joint", ["000001"])
  bad = manual / "joint" / "depth_gt_000001.png"
  bad.write_bytes(bad.read_bytes()[:60])
  with pytest.raises(ValueError, match=re.escape(str(bad))):
    _build(manual, tmp_path / "data")


def test_png_mismatched_size_names_the_file(tmp_path):
  manual = tmp_path / "manual"
  _write_toolbox(manual / "meta")
  _write_pngs(manual / "joint", ["000001"])
  bad = manual / "joint" / "segm_gt_000001.png"
  Image.fromarray(np.zeros((H + 1, W), np.uint8)).save(bad)
  with pytest.raises(ValueError, match=re.escape(str(bad))):
    _build(manual, tmp_path / "data")


def test_png_out_of_range_label_names_the_file(tmp_path):
  manual = tmp_path / "manual"
  _write_toolbox(manual / "meta")
  _write_pngs(manual / "joint", ["000001"])
  bad = manual / "joint" / "segm_gt_000001.png"
  seg = np.zeros((H, W), np.uint8)
  seg[2, 2] = 40
  Image.fromarray(seg).save(bad)
  with pytest.raises(ValueError, match=re.escape(str(bad)) + r": NYU-40 ids \[40\]"):
    _build(manual, tmp_path / "data")


def test_mat_out_of_range_raw_label_names_file_and_frame(tmp_path):
  manual = tmp_path / "manual"
  _write_toolbox(manual)

  def poison(raw):
    raw[2, 3, 3] = 895  # 1-based frame 3.

  _write_mat(manual / "nyu_depth_v2_labeled.mat", raw_override=poison)
  with pytest.raises(
    ValueError, match=r"nyu_depth_v2_labeled\.mat\[frame 000003\]: raw label ids \[895\]"
  ):
    _build(manual, tmp_path / "data")


def test_mat_wrong_layout_is_reported(tmp_path):
  manual = tmp_path / "manual"
  _write_toolbox(manual)
  with h5py.File(manual / "nyu_depth_v2_labeled.mat", "w") as f:
    f.create_dataset("images", data=np.zeros((2, 3, W, H), np.uint8))
    f.create_dataset("depths", data=np.zeros((2, H, W), np.float32))  # axes swapped.
    f.create_dataset("labels", data=np.zeros((2, H, W), np.uint16))
  with pytest.raises(ValueError, match=r"expected images \(N, 3, W, H\)"):
    _build(manual, tmp_path / "data")


def test_split_index_beyond_mat_frames(tmp_path):
  manual = tmp_path / "manual"
  _write_toolbox(manual)
  sio.savemat(manual / "splits.mat", {"trainNdxs": [[1], [9]], "testNdxs": [[2]]})
  _write_mat(manual / "nyu_depth_v2_labeled.mat")
  with pytest.raises(ValueError, match=r"splits\.mat: indices \[9\] exceed the 5 frames"):
    _build(manual, tmp_path / "data")


def test_png_frame_in_no_split(tmp_path):
  manual = tmp_path / "manual"
  _write_toolbox(manual / "meta")
  _write_pngs(manual / "joint", ["000007"])
  with pytest.raises(
    ValueError, match=r"000007\.png: frame 7 is in neither trainNdxs nor testNdxs"
  ):
    _build(manual, tmp_path / "data")


def test_class13_names_in_other_order_raise(tmp_path):
  manual = tmp_path / "manual"
  names = list(meta.NYU13_CLASS_NAMES)
  names[0], names[1] = names[1], names[0]
  _write_toolbox(manual / "meta", class13_names=names)
  _write_pngs(manual / "joint", ["000001"])
  with pytest.raises(ValueError, match=r"classMapping13\.classNames .* 1: 'books' != 'bed'"):
    _build(manual, tmp_path / "data", "13")


@pytest.mark.parametrize("config", ["40_raw", "13_raw"])
def test_raw_configs_store_raw_depths(tmp_path, config):
  manual = tmp_path / "manual"
  _write_toolbox(manual / "meta")
  frames = _write_mat(manual / "nyu_depth_v2_labeled.mat")
  builder = _build(manual, tmp_path / "data", config)
  test = _read_split(builder, "test")
  assert sorted(test) == ["000002", "000005"]
  for key, ex in test.items():
    image, inpainted, raw = frames[int(key)]
    np.testing.assert_array_equal(ex["depth"], RAW_DEPTHS[int(key)])  # rawDepths, holes kept as 0.
    assert (ex["depth"] == 0).any() and not np.array_equal(ex["depth"], inpainted)
    np.testing.assert_array_equal(ex["image"], image)
    np.testing.assert_array_equal(ex["segmentation"][..., 0], _expected_labels(raw, config[:2]))
  m = meta.get_meta(f"nyu_depth_v2_labeled/{config}")
  assert m.num_classes == int(config[:2]) and "rawDepths" in m.depth_note
  assert m.eval_crop == "nyu_eigen" and m.max_depth == 10.0


def test_raw_config_without_raw_depths_names_the_file(tmp_path):
  manual = tmp_path / "manual"
  _write_toolbox(manual / "meta")
  _write_mat(manual / "nyu_depth_v2_labeled.mat", raw_depths=False)
  with pytest.raises(
    ValueError, match=r"nyu_depth_v2_labeled\.mat: datasets \['rawDepths'\] missing"
  ):
    _build(manual, tmp_path / "data", "40_raw")


def test_raw_config_from_pngs_is_refused_with_reason(tmp_path):
  manual = tmp_path / "manual"
  _write_toolbox(manual / "meta")
  _write_pngs(manual / "joint", ["000002"])
  with pytest.raises(
    ValueError, match=r"nyu_depth_v2_labeled\.mat: config '40_raw' stores rawDepths"
  ):
    _build(manual, tmp_path / "data", "40_raw")
