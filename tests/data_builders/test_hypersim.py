"""Tests of the ``hypersim`` builder on tiny HDF5 scenes written into tmp_path in HyperSim's layout."""

import math
import re
import zipfile

import h5py
import numpy as np
import pytest
import tensorflow_datasets as tfds

from data_builders import get_builder_class
from data_builders.hypersim import hypersim_dataset_builder as hb
from semdepth_jax.data import meta

H, W = 6, 8  # 1/128 of the native 768 x 1024, same aspect ratio.
# The standard HyperSim camera has a 60 deg horizontal field of view.
TAN30 = math.tan(math.radians(30.0))

# Frames whose split is read by hand from R3's lists (github.com/charyyev/semantic_md
# source/datasets/paths/*_imgPath.txt): train_imgPath.txt starts with ai_001_001 cam_00 frames 0000-0032,
# val_imgPath.txt with ai_044_010 cam_00 0000-0013, test_imgPath.txt with ai_044_007 cam_00 0000-0013;
# ai_017_009 cam_00 0000-0013 is in val (a tilt-shift camera in metadata_camera_parameters.csv).
TRAIN = ("ai_001_001", "cam_00", 3)
VAL = ("ai_044_010", "cam_00", 13)
TEST = ("ai_044_007", "cam_00", 0)
TILTED_VAL = ("ai_017_009", "cam_00", 2)
UNLISTED = ("ai_001_001", "cam_00", 50)  # frames 33..99 of the train cameras are in no R3 list.


def _h5(path, array):
  path.parent.mkdir(parents=True, exist_ok=True)
  with h5py.File(path, "w") as f:
    f.create_dataset("dataset", data=array)


def _paths(root, scene, cam, frame):
  images = root / scene / "images"
  stem = f"frame.{frame:04d}"
  return {
    "color": images / f"scene_{cam}_final_hdf5" / f"{stem}.color.hdf5",
    "depth_meters": images / f"scene_{cam}_geometry_hdf5" / f"{stem}.depth_meters.hdf5",
    "semantic": images / f"scene_{cam}_geometry_hdf5" / f"{stem}.semantic.hdf5",
  }


def _write_frame(root, key, seed=0, trees=None):
  """Writes one frame as HyperSim stores it (float16 colour/depth, int16 NYU-40 ids); returns the arrays."""
  rng = np.random.default_rng(seed)
  color = rng.uniform(0.0, 3.0, (H, W, 3)).astype(np.float16)
  color[0, 0] = (np.nan, np.inf, -0.5)
  depth = rng.uniform(0.5, 20.0, (H, W)).astype(np.float16)
  depth[0, :2] = np.nan
  sem = rng.integers(-1, 41, (H, W)).astype(np.int16)
  sem[0, :4] = (-1, 0, 1, 40)
  arrays = {"color": color, "depth_meters": depth, "semantic": sem}
  for kind, path in _paths(root, *key).items():
    tree_root = root if trees is None else root / trees[kind]
    _h5(tree_root / path.relative_to(root), arrays[kind])
  return arrays


def _build(manual_dir, data_dir, config=None):
  builder = hb.Builder(data_dir=str(data_dir), config=config)
  builder.download_and_prepare(
    download_config=tfds.download.DownloadConfig(manual_dir=str(manual_dir)),
    file_format="array_record",
  )
  return builder


def _read(builder):
  out = {}
  for split in builder.info.splits:
    source = builder.as_data_source(split)
    out[split] = {source[i]["file_name"].decode(): source[i] for i in range(len(source))}
  return out


def _name(key):
  return f"{key[0]}_{key[1]}_{key[2]:04d}"


def _tonemap_reference(color):
  """R3 extract_data.py with scale 1, written out with numpy: gamma 1/2.2, clip, then * 255 rounded."""
  c = color.astype(np.float64)
  out = np.zeros(c.shape)
  finite = np.isfinite(c)
  out[finite] = np.clip(np.maximum(c[finite], 0.0) ** (1 / 2.2), 0.0, 1.0)
  out[np.isposinf(c)] = 1.0
  return np.round(out * 255).astype(np.uint8)


def test_registered_name_configs_and_metadata():
  assert hb.Builder.name == "hypersim"
  assert get_builder_class("hypersim") is hb.Builder
  assert [c.name for c in hb.Builder.BUILDER_CONFIGS] == ["distance", "planar"]
  assert hb.Builder.DEFAULT_BUILDER_CONFIG_NAME == "distance"
  assert meta.get_meta("hypersim").name == "hypersim/distance"
  assert meta.get_meta("hypersim/planar").class_names == meta.NYU40_CLASS_NAMES
  metadata = hb.Builder.get_metadata()
  assert "roberts2021hypersim" in metadata.citation
  assert "ml.task.semantic-segmentation" in metadata.tags


def test_r3_split_file_matches_the_paper_counts():
  # docs/model_spec.md §4.5 (R3 source/datasets/paths): 19,399 / 362, 1,203 / 45, 933 / 45.
  splits = hb.read_split()
  counts = {name: (len(keys), len({k[0] for k in keys})) for name, keys in splits.items()}
  assert counts == {"train": (19399, 362), "validation": (1203, 45), "test": (933, 45)}
  scenes = {name: {k[0] for k in keys} for name, keys in splits.items()}
  assert not scenes["train"] & scenes["validation"]  # split by scene.
  assert not scenes["train"] & scenes["test"] and not scenes["validation"] & scenes["test"]
  assert {(TRAIN[0], TRAIN[1], f) for f in range(33)} <= splits["train"]
  assert (*UNLISTED[:2], 33) not in splits["train"]
  for key, split in ((VAL, "validation"), (TEST, "test"), (TILTED_VAL, "validation")):
    assert key in splits[split]


def test_tonemap_values_by_hand():
  c = np.array([0.0, 0.5, 1.0, 2.0, -0.3, 0.01, np.nan, np.inf, 0.2], np.float32).reshape(1, 3, 3)
  # 0.5 ** (1/2.2) = exp(-0.693147 / 2.2) = 0.729740 -> 186.08; 0.01 ** (1/2.2) = 0.123285 -> 31.44;
  # 0.2 ** (1/2.2) = exp(-1.609438 / 2.2) = 0.481156 -> 122.69; >= 1 and +inf -> 255; < 0 and NaN -> 0.
  expected = np.array([0, 186, 255, 255, 0, 31, 0, 255, 123], np.uint8).reshape(1, 3, 3)
  out = hb.tonemap_r3(c)
  assert out.dtype == np.uint8
  np.testing.assert_array_equal(out, expected)


def test_semantic_ids_to_training_ids():
  raw = np.array([[-1, 0, 1, 2], [22, 38, 39, 40]], np.int16)
  expected = np.array([[255, 255, 0, 1], [21, 37, 38, 39]], np.uint8)
  np.testing.assert_array_equal(hb.semantic_to_train_ids(raw, "x.hdf5"), expected)
  with pytest.raises(ValueError, match=r"x\.hdf5: NYU-40 ids \[-2, 41\] outside -1\.\.40"):
    hb.semantic_to_train_ids(np.array([[-2, 41]], np.int16), "x.hdf5")


def test_standard_camera_intrinsics_and_tilted_camera():
  cameras = hb.read_camera_table()
  assert len(cameras) == 482
  # 60 deg horizontal field of view at 1024 x 768: f = 512 / tan(30 deg) for both axes, centre 511.5 / 383.5.
  f = 512 / TAN30
  np.testing.assert_allclose(
    hb.pinhole_intrinsics(cameras["ai_001_001"], 768, 1024), (f, f, 511.5, 383.5), rtol=1e-7
  )
  assert hb.pinhole_intrinsics(cameras["ai_017_009"], 768, 1024) is None  # M_21 = -0.174: tilted.


def test_shifted_pinhole_intrinsics_by_hand_and_reprojection():
  m = np.array([[0.5, 0.0, 0.1], [0.0, 0.4, -0.05], [0.0, 0.0, -1.0]])
  # fx = 8 / (2 * 0.5) = 8, cx = 4 - 0.5 - 0.2 * 4 = 2.7; fy = 6 / 0.8 = 7.5, cy = 3 - 0.5 - 0.125 * 3.
  fx, fy, cx, cy = hb.pinhole_intrinsics(m, 6, 8)
  np.testing.assert_allclose((fx, fy, cx, cy), (8.0, 7.5, 2.7, 2.125), rtol=1e-12)
  # Reprojection: the ray of pixel (row i, column j) per ml-hypersim's notebook, mapped to x right, y down,
  # z forward, lands back on (i, j) with these intrinsics.
  for i, j in ((0, 0), (5, 7), (2, 3)):
    u, v = (j + 0.5) * 2 / 8 - 1, 1 - (i + 0.5) * 2 / 6
    x, y, z = m @ np.array([u, v, 1.0])
    assert fx * x / -z + cx == pytest.approx(j)
    assert fy * -y / -z + cy == pytest.approx(i)


def test_planar_depth_by_hand():
  cameras = hb.read_camera_table()
  distance = np.full((4, 6), 2.0, np.float32)
  planar = hb.distance_to_planar(distance, cameras["ai_001_001"])
  # Pixel (0, 0) of a 4 x 6 image: u = 0.5 * 2/6 - 1 = -0.833333, v = 1 - 0.5 * 2/4 = 0.75,
  # ray (0.577350 * u, 0.433013 * v, -1) = (-0.481125, 0.324760, -1), |ray| = 1.156266,
  # planar = 2 / 1.156266 = 1.729706.
  assert planar[0, 0] == pytest.approx(1.729706, rel=1e-5)
  assert planar.dtype == np.float32
  np.testing.assert_allclose(planar, planar[::-1, ::-1], rtol=1e-6)  # centred camera: symmetric.
  np.testing.assert_array_equal(hb.distance_to_planar(np.zeros((4, 6)), cameras["ai_001_001"]), 0)


def _plane_distances(height, width, z0):
  """Distances to the fronto-parallel plane z = -z0 seen by the standard camera (pinhole, f = (W/2)/tan 30)."""
  f = (width / 2) / TAN30
  j = np.arange(width) - (width - 1) / 2
  i = np.arange(height) - (height - 1) / 2
  return z0 * np.sqrt(1 + (j[None, :] / f) ** 2 + (i[:, None] / f) ** 2)


def test_planar_depth_of_a_plane_is_constant_for_standard_and_tilted_cameras():
  cameras = hb.read_camera_table()
  planar = hb.distance_to_planar(_plane_distances(H, W, 3.0), cameras["ai_001_001"])
  np.testing.assert_allclose(planar, 3.0, rtol=1e-6)
  # Tilted camera: distance along each pixel ray d to the plane z = -3 is 3 |d| / -d_z.
  m = cameras["ai_017_009"]
  u = (np.arange(W) + 0.5) * 2 / W - 1
  v = 1 - (np.arange(H) + 0.5) * 2 / H
  d = np.einsum("ij,hwj->hwi", m, np.stack(np.broadcast_arrays(u[None], v[:, None], 1.0), -1))
  distance = 3.0 * np.linalg.norm(d, axis=-1) / -d[..., 2]
  np.testing.assert_allclose(hb.distance_to_planar(distance, m), 3.0, rtol=1e-6)


def test_build_reads_back_units_labels_splits_and_intrinsics(tmp_path):
  manual = tmp_path / "manual"
  arrays = {key: _write_frame(manual, key, seed=n) for n, key in enumerate((TRAIN, VAL, TEST))}
  _write_frame(manual, UNLISTED, seed=9)
  _write_frame(manual, TILTED_VAL, seed=7)
  data = _read(_build(manual, tmp_path / "data"))
  assert {s: sorted(v) for s, v in data.items()} == {
    "train": [_name(TRAIN)],
    "validation": sorted([_name(VAL), _name(TILTED_VAL)]),
    "test": [_name(TEST)],
  }
  # ai_001_001 has the standard camera: at 8 x 6, fx = fy = 4 / tan 30, cx = 3.5, cy = 2.5. The others
  # have tilt-shift cameras (M_cam_from_uv_21 = 0.0173 / -0.0148 / -0.174 in metadata_camera_parameters.csv):
  # no 4-number pinhole, so zeros.
  f = (W / 2) / TAN30
  intrinsics = {TRAIN: (f, f, 3.5, 2.5), VAL: (0, 0, 0, 0), TEST: (0, 0, 0, 0)}
  for split, key in (("train", TRAIN), ("validation", VAL), ("test", TEST)):
    ex = data[split][_name(key)]
    raw = arrays[key]
    assert ex["image"].shape == (H, W, 3) and ex["image"].dtype == np.uint8
    np.testing.assert_array_equal(ex["image"], _tonemap_reference(raw["color"]))
    assert tuple(ex["image"][0, 0]) == (0, 255, 0)  # NaN, +inf, negative.
    assert ex["depth"].dtype == np.float32
    nan = np.isnan(raw["depth_meters"])
    np.testing.assert_array_equal(ex["depth"][~nan], raw["depth_meters"][~nan].astype(np.float32))
    assert (ex["depth"][nan] == 0).all() and nan[0, :2].all()
    seg = ex["segmentation"][..., 0].astype(int)
    np.testing.assert_array_equal(seg, np.where(raw["semantic"] >= 1, raw["semantic"] - 1, 255))
    assert tuple(seg[0, :4]) == (255, 255, 0, 39)
    assert bool(ex["has_depth"]) and bool(ex["has_segmentation"])
    np.testing.assert_allclose(ex["intrinsics"], intrinsics[key], rtol=1e-6)
  np.testing.assert_array_equal(data["validation"][_name(TILTED_VAL)]["intrinsics"], 0)


def test_planar_config_stores_planar_depth(tmp_path):
  manual = tmp_path / "manual"
  _write_frame(manual, TRAIN)
  _h5(_paths(manual, *TRAIN)["depth_meters"], _plane_distances(H, W, 2.5))
  builder = _build(manual, tmp_path / "data", "planar")
  assert builder.builder_config.name == "planar"
  ex = _read(builder)["train"][_name(TRAIN)]
  np.testing.assert_allclose(ex["depth"], 2.5, rtol=1e-6)


def test_r3_trees_split_by_modality(tmp_path):
  manual = tmp_path / "manual"
  trees = {
    "color": "HyperSim_Data/image",
    "depth_meters": "HyperSim_Data/depth",
    "semantic": "HyperSim_Data/semantic",
  }
  raw = _write_frame(manual, TRAIN, trees=trees)
  ex = _read(_build(manual, tmp_path / "data"))["train"][_name(TRAIN)]
  np.testing.assert_array_equal(ex["image"], _tonemap_reference(raw["color"]))


def test_zip_archive_is_read_in_place(tmp_path):
  scenes = tmp_path / "scenes"
  raw = _write_frame(scenes, TRAIN)
  manual = tmp_path / "manual"
  manual.mkdir()
  with zipfile.ZipFile(manual / f"{TRAIN[0]}.zip", "w") as z:
    for p in sorted((scenes / TRAIN[0]).rglob("*.hdf5")):
      z.write(p, p.relative_to(scenes))
  ex = _read(_build(manual, tmp_path / "data"))["train"][_name(TRAIN)]
  np.testing.assert_array_equal(ex["image"], _tonemap_reference(raw["color"]))
  assert sorted(p.name for p in manual.iterdir()) == [f"{TRAIN[0]}.zip"]  # nothing extracted.


def test_missing_files_listed_in_one_error(tmp_path):
  manual = tmp_path / "manual"
  for key in (TRAIN, VAL, TEST):
    _write_frame(manual, key)
  _paths(manual, *TRAIN)["depth_meters"].unlink()
  _paths(manual, *VAL)["semantic"].unlink()
  _paths(manual, *TEST)["color"].unlink()
  with pytest.raises(FileNotFoundError) as info:
    _build(manual, tmp_path / "data")
  msg = str(info.value)
  assert "3 required file(s) missing" in msg
  assert str(_paths(manual, *TRAIN)["depth_meters"]) in msg
  assert str(_paths(manual, *VAL)["semantic"]) in msg
  assert str(_paths(manual, *TEST)["color"]) in msg


def test_missing_files_in_a_zip_are_named_with_the_archive(tmp_path):
  scenes = tmp_path / "scenes"
  _write_frame(scenes, TRAIN)
  manual = tmp_path / "manual"
  manual.mkdir()
  with zipfile.ZipFile(manual / "part.zip", "w") as z:
    for p in sorted((scenes / TRAIN[0]).rglob("*.hdf5")):
      if "semantic" not in p.name:
        z.write(p, "HyperSim/" / p.relative_to(scenes))
  with pytest.raises(FileNotFoundError) as info:
    _build(manual, tmp_path / "data")
  member = "HyperSim/ai_001_001/images/scene_cam_00_geometry_hdf5/frame.0003.semantic.hdf5"
  assert f"{manual / 'part.zip'}[{member}]" in str(info.value)


def test_no_listed_frame_is_an_error(tmp_path):
  manual = tmp_path / "manual"
  _write_frame(manual, UNLISTED)
  with pytest.raises(FileNotFoundError, match="no HyperSim frame of R3's split lists found"):
    _build(manual, tmp_path / "data")


def test_corrupt_hdf5_names_the_file(tmp_path):
  manual = tmp_path / "manual"
  _write_frame(manual, TRAIN)
  bad = _paths(manual, *TRAIN)["color"]
  bad.write_bytes(b"not hdf5")
  with pytest.raises(ValueError, match=re.escape(f"{bad}: cannot read as HDF5")):
    _build(manual, tmp_path / "data")


def test_wrong_dataset_name_and_size_name_the_file(tmp_path):
  manual = tmp_path / "manual"
  _write_frame(manual, TRAIN)
  sem = _paths(manual, *TRAIN)["semantic"]
  with h5py.File(sem, "w") as f:
    f.create_dataset("labels", data=np.zeros((H, W), np.int16))
  with pytest.raises(
    ValueError, match=re.escape(f"{sem}: no HDF5 dataset 'dataset'; found ['labels']")
  ):
    _build(manual, tmp_path / "data")
  _h5(sem, np.zeros((H, W + 1), np.int16))
  with pytest.raises(ValueError, match=re.escape(f"{sem}: size (6, 9) does not match")):
    _build(manual, tmp_path / "data2")


def test_same_file_in_two_trees_is_an_error(tmp_path):
  manual = tmp_path / "manual"
  _write_frame(manual / "a", TRAIN)
  _write_frame(manual / "b", TRAIN)
  with pytest.raises(ValueError, match="3 HyperSim file\\(s\\) found twice"):
    _build(manual, tmp_path / "data")
