"""Tests of the ``kitti_depth`` builder on tiny KITTI layouts written into tmp_path (no TensorFlow).

Hand values: the velodyne fixture uses a calibration whose projection is worked out by hand below; the
real 2011_09_26 calibration lines check the parser and the intrinsics.
"""

import json
import re
import shutil
import zipfile

import numpy as np
import pytest
import tensorflow_datasets as tfds
from PIL import Image

from data_builders import get_builder_class
from data_builders.kitti_depth import kitti_depth_dataset_builder as kb
from semdepth_jax.data import meta

DRIVE = "2011_09_26_drive_0001_sync"
DRIVE2 = "2011_09_28_drive_0002_sync"
SIZES = {"2011_09_26": (8, 16), "2011_09_28": (7, 15)}  # (H, W); dates differ, as in KITTI.

# Velodyne -> camera: x_cam = -y, y_cam = -z, z_cam = x - 0.5; no rectification; f = 8, c = (7.5, 3.5).
VELO_TO_CAM = (
  "calib_time: 15-Mar-2012 11:37:16\nR: 0 -1 0 0 0 -1 1 0 0\nT: 0 0 -0.5\ndelta_f: 0 0\n"
)


def _cam_to_cam(h, w, fx=8.0, cx=7.5, cy=3.5):
  return (
    "calib_time: 09-Jan-2012 13:57:47\ncorner_dist: 9.950000e-02\n"
    "R_rect_00: 1 0 0 0 1 0 0 0 1\n"
    f"S_rect_02: {w:e} {h:e}\n"
    f"P_rect_02: {fx} 0 {cx} 0 0 {fx} {cy} 0 0 0 1 0\n"
    f"S_rect_03: {w:e} {h:e}\n"
    f"P_rect_03: {fx + 1} 0 {cx + 1} -3 0 {fx + 1} {cy + 1} 0 0 0 1 0\n"
  )


# Points (x, y, z, reflectance) and where they land, worked by hand with the calibration above:
#   (8.5, -0.5, 0.25): cam (0.5, -0.25, 8.0): u = 8 * 0.5 / 8 + 7.5 = 8.0, v = 3.25 -> (row 2, col 7)
#   (4.5, -0.25, 0.125): cam (0.25, -0.125, 4.0): u = 8.0, v = 3.25 -> same pixel; nearer point wins
#   (2.5, 1.0, -0.25): cam (-1, 0.25, 2.0): u = 3.5 -> 4 (half to even), v = 4.5 -> 4 -> (row 3, col 3)
#   (-3, 0, 0): behind the LiDAR; (1.5, -5, 0): u = 47.5 outside; (0.25, 0, 0): camera z = -0.25 < 0.
POINTS = np.array(
  [
    [8.5, -0.5, 0.25, 0.1],
    [4.5, -0.25, 0.125, 0.2],
    [2.5, 1.0, -0.25, 0.3],
    [-3.0, 0.0, 0.0, 0.4],
    [1.5, -5.0, 0.0, 0.5],
    [0.25, 0.0, 0.0, 0.6],
  ],
  np.float32,
)
EXPECTED_FORWARD = {(2, 7): 4.5, (3, 3): 2.5}
EXPECTED_CAMERA_Z = {(2, 7): 4.0, (3, 3): 2.0}

# calib_cam_to_cam.txt / calib_velo_to_cam.txt lines of the real 2011_09_26 drives.
REAL_CAM_TO_CAM = (
  "calib_time: 09-Jan-2012 13:57:47\n"
  "corner_dist: 9.950000e-02\n"
  "S_rect_00: 1.242000e+03 3.750000e+02\n"
  "R_rect_00: 9.999239e-01 9.837760e-03 -7.445048e-03 -9.869795e-03 9.999421e-01 -4.278459e-03 "
  "7.402527e-03 4.351614e-03 9.999631e-01\n"
  "S_rect_02: 1.242000e+03 3.750000e+02\n"
  "P_rect_02: 7.215377e+02 0.000000e+00 6.095593e+02 4.485728e+01 0.000000e+00 7.215377e+02 "
  "1.728540e+02 2.163791e-01 0.000000e+00 0.000000e+00 1.000000e+00 2.745884e-03\n"
)
REAL_VELO_TO_CAM = (
  "calib_time: 15-Mar-2012 11:37:16\n"
  "R: 7.533745e-03 -9.999714e-01 -6.166020e-04 1.480249e-02 7.280733e-04 -9.998902e-01 "
  "9.998621e-01 7.523790e-03 1.480755e-02\n"
  "T: -4.069766e-03 -7.631618e-02 -2.717806e-01\n"
  "delta_f: 0.000000e+00 0.000000e+00\n"
)


def _png(path, array):
  path.parent.mkdir(parents=True, exist_ok=True)
  Image.fromarray(array).save(path)


def _write_raw(root, drive, frames, seed=0, velodyne=True):
  """Writes raw frames + both calib files of the drive's date; returns {frame: rgb}."""
  date = drive[:10]
  h, w = SIZES[date]
  (root / date).mkdir(parents=True, exist_ok=True)
  (root / date / "calib_cam_to_cam.txt").write_text(_cam_to_cam(h, w))
  (root / date / "calib_velo_to_cam.txt").write_text(VELO_TO_CAM)
  rng = np.random.default_rng(seed)
  out = {}
  for f in frames:
    rgb = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
    _png(root / date / drive / "image_02" / "data" / f"{f:010d}.png", rgb)
    _png(root / date / drive / "image_03" / "data" / f"{f:010d}.png", rgb[::-1].copy())
    if velodyne:
      velo = root / date / drive / "velodyne_points" / "data" / f"{f:010d}.bin"
      velo.parent.mkdir(parents=True, exist_ok=True)
      POINTS.astype("<f4").tofile(velo)
    out[f] = rgb
  return out


def _write_annotated(root, subset, drive, frames, seed=1, camera="02"):
  """Writes groundtruth PNGs; returns {frame: uint16 depth}."""
  h, w = SIZES[drive[:10]]
  rng = np.random.default_rng(seed)
  out = {}
  for f in frames:
    d = rng.integers(1, 65536, (h, w), dtype=np.uint16)
    d[rng.random((h, w)) < 0.8] = 0  # sparse, like the real ground truth.
    d[0, :3] = (0, 1, 65535)
    path = (
      root / subset / drive / "proj_depth" / "groundtruth" / f"image_{camera}" / f"{f:010d}.png"
    )
    _png(path, d)
    out[f] = d
  return out


def _zip_folder(folder, archive, prefix=""):
  with zipfile.ZipFile(archive, "w") as z:
    for p in sorted(folder.rglob("*")):
      if p.is_file():
        z.write(p, prefix + str(p.relative_to(folder)))


def _splits_file(path, lists):
  table = {
    name: {f"{d[:10]}/{d}": sorted(frames) for d, frames in drives.items()}
    for name, drives in lists.items()
  }
  path.write_text(json.dumps(table))
  return str(path)


def _build(manual_dir, data_dir, config):
  builder = kb.Builder(data_dir=str(data_dir), config=config)
  builder.download_and_prepare(
    download_config=tfds.download.DownloadConfig(manual_dir=str(manual_dir)),
    file_format="array_record",
  )
  return builder


def _read(builder, split):
  source = builder.as_data_source(split)
  return {source[i]["file_name"].decode(): source[i] for i in range(len(source))}


def test_registered_configs_and_metas():
  assert kb.Builder.name == "kitti_depth"
  assert get_builder_class("kitti_depth/benchmark") is kb.Builder
  assert [c.name for c in kb.Builder.BUILDER_CONFIGS] == [
    "eigen",
    "eigen_benchmark",
    "benchmark",
    "semantics",
  ]
  assert meta.get_meta("kitti_depth").name == "kitti_depth/eigen"
  assert meta.get_meta("kitti_depth/eigen").eval_crop == "kitti_garg"
  sem = meta.get_meta("kitti_depth/semantics")
  assert sem.num_classes == 19 and sem.class_names[0] == "road" and sem.class_names[18] == "bicycle"
  assert "geiger2013vision" in kb.Builder.get_metadata().citation


def test_shipped_eigen_lists_have_the_paper_counts():
  lists = kb.read_eigen_splits()
  assert len(lists["eigen_train"]) == 23488 and len(set(lists["eigen_train"])) == 23488
  assert len(lists["eigen_test"]) == 697 and len(lists["eigen_benchmark_test"]) == 652
  assert set(lists["eigen_benchmark_test"]) <= set(lists["eigen_test"])
  train_drives = {f.drive for f in lists["eigen_train"]}
  test_drives = {f.drive for f in lists["eigen_test"]}
  assert not train_drives & test_drives
  assert (len(train_drives), len(test_drives)) == (33, 28)
  # First line of monodepth's eigen_test_files.txt: 2011_09_26_drive_0002_sync frame 69.
  assert kb.Frame("2011_09_26_drive_0002_sync", 69) in set(lists["eigen_test"])


def test_real_calibration_parses_to_hand_values():
  cam = kb.parse_calib(REAL_CAM_TO_CAM, "cam")
  velo = kb.parse_calib(REAL_VELO_TO_CAM, "velo")
  assert "calib_time" not in cam
  assert kb.intrinsics_from_calib(cam, "02", "cam") == pytest.approx(
    (721.5377, 721.5377, 609.5593, 172.854)
  )
  np.testing.assert_allclose(velo["T"], [-4.069766e-03, -7.631618e-02, -2.717806e-01])
  # A point 20 m ahead, written out step by step: velodyne -> cam0 -> rectified -> pixels.
  p = np.array([20.0, 1.0, -0.5])
  cam0 = velo["R"].reshape(3, 3) @ p + velo["T"]
  rect = cam["R_rect_00"].reshape(3, 3) @ cam0
  pix = cam["P_rect_02"].reshape(3, 4) @ np.append(rect, 1.0)
  matrix = kb.velodyne_to_image(cam, velo, "02")
  np.testing.assert_allclose(matrix @ np.append(p, 1.0), pix, rtol=1e-12)
  u, v = pix[0] / pix[2], pix[1] / pix[2]
  assert 0 < u < 1242 and 0 < v < 375 and pix[2] == pytest.approx(20.0 - 0.2718 + 0.0027, abs=0.02)


def test_bad_calibration_entry_names_the_file():
  cam = kb.parse_calib("P_rect_02: 1 2 3\n", "x/calib_cam_to_cam.txt")
  with pytest.raises(
    ValueError, match=r"x/calib_cam_to_cam\.txt: P_rect_02 must hold 12 numbers, got 3"
  ):
    kb.intrinsics_from_calib(cam, "02", "x/calib_cam_to_cam.txt")
  with pytest.raises(ValueError, match=r"y\.txt: line 2 is not 'key: values'"):
    kb.parse_calib("R: 1 0 0\ngarbage\n", "y.txt")


@pytest.mark.parametrize(
  ("kind", "expected"), [("forward", EXPECTED_FORWARD), ("camera_z", EXPECTED_CAMERA_Z)]
)
def test_velodyne_projection_hand_values(kind, expected):
  cam = kb.parse_calib(_cam_to_cam(8, 16), "cam")
  velo = kb.parse_calib(VELO_TO_CAM, "velo")
  depth = kb.project_velodyne(POINTS, kb.velodyne_to_image(cam, velo, "02"), (8, 16), kind)
  assert depth.dtype == np.float32 and depth.shape == (8, 16)
  want = np.zeros((8, 16), np.float32)
  for (r, c), v in expected.items():
    want[r, c] = v
  np.testing.assert_array_equal(depth, want)


def test_eigen_build_velodyne_depth_and_intrinsics(tmp_path):
  raw = tmp_path / "manual" / "raw"
  rgb = _write_raw(raw, DRIVE, [0, 3]) | {
    10 + k: v for k, v in _write_raw(raw, DRIVE2, [5]).items()
  }
  splits = _splits_file(
    tmp_path / "s.json", {"eigen_train": {DRIVE: [0, 3]}, "eigen_test": {DRIVE2: [5]}}
  )
  config = kb.KittiConfig(name="eigen_tiny", layout="eigen", splits_file=splits)
  builder = _build(tmp_path / "manual", tmp_path / "data", config)
  train, test = _read(builder, "train"), _read(builder, "test")
  assert sorted(train) == [f"{DRIVE}_02_0000000000", f"{DRIVE}_02_0000000003"]
  assert sorted(test) == [f"{DRIVE2}_02_0000000005"]
  ex = train[f"{DRIVE}_02_0000000003"]
  np.testing.assert_array_equal(ex["image"], rgb[3])
  assert ex["depth"][2, 7] == 4.5 and ex["depth"][3, 3] == 2.5 and (ex["depth"] > 0).sum() == 2
  assert bool(ex["has_depth"]) and not bool(ex["has_segmentation"])
  assert (ex["segmentation"] == 255).all()
  np.testing.assert_allclose(ex["intrinsics"], [8.0, 8.0, 7.5, 3.5])
  ex2 = test[f"{DRIVE2}_02_0000000005"]
  assert ex2["image"].shape == (7, 15, 3) and ex2["depth"].shape == (7, 15)  # native size per date.
  np.testing.assert_array_equal(ex2["image"], rgb[15])


def test_benchmark_from_zips_keeps_sparse_depth_exactly(tmp_path):
  src, manual = tmp_path / "src", tmp_path / "manual"
  manual.mkdir()
  _write_raw(src / "raw", DRIVE, [5, 6], velodyne=False)
  rgb2 = _write_raw(src / "raw", DRIVE2, [7], velodyne=False)
  depth = _write_annotated(src / "ann", "train", DRIVE, [5, 6])
  depth |= {100 + k: v for k, v in _write_annotated(src / "ann", "val", DRIVE2, [7]).items()}
  # Official archive names and member layouts; the calib zip holds <date>/calib_*.txt.
  for drive in (DRIVE, DRIVE2):
    date = drive[:10]
    _zip_folder(src / "raw" / date / drive, manual / f"{drive}.zip", f"{date}/{drive}/")
    with zipfile.ZipFile(manual / f"{date}_calib.zip", "w") as z:
      z.write(src / "raw" / date / "calib_cam_to_cam.txt", f"{date}/calib_cam_to_cam.txt")
  _zip_folder(src / "ann", manual / "data_depth_annotated.zip")
  builder = _build(manual, tmp_path / "data", kb.KittiConfig(name="bench", layout="benchmark"))
  train, val = _read(builder, "train"), _read(builder, "validation")
  assert sorted(train) == [f"{DRIVE}_02_0000000005", f"{DRIVE}_02_0000000006"]
  assert sorted(val) == [f"{DRIVE2}_02_0000000007"]
  for key, ex, raw in (
    (5, train[f"{DRIVE}_02_0000000005"], depth[5]),
    (107, val[f"{DRIVE2}_02_0000000007"], depth[107]),
  ):
    assert ex["depth"].dtype == np.float32
    np.testing.assert_array_equal(ex["depth"], raw.astype(np.float64) / 256.0)
    np.testing.assert_array_equal(ex["depth"] == 0, raw == 0)  # sparse stays sparse.
    assert ex["depth"][0, 1] == 1 / 256 and ex["depth"][0, 2] == 65535 / 256, key
  np.testing.assert_array_equal(val[f"{DRIVE2}_02_0000000007"]["image"], rgb2[7])
  assert sorted(p.name for p in manual.iterdir()) == sorted(
    [f"{DRIVE}.zip", f"{DRIVE2}.zip", "2011_09_26_calib.zip", "2011_09_28_calib.zip"]
    + ["data_depth_annotated.zip"]
  )  # zips are read in place, nothing extracted into manual_dir.


def test_benchmark_both_cameras_use_their_own_intrinsics(tmp_path):
  manual = tmp_path / "manual"
  rgb = _write_raw(manual, DRIVE, [5], velodyne=False)
  _write_annotated(manual / "data_depth_annotated", "train", DRIVE, [5], camera="02")
  _write_annotated(manual / "data_depth_annotated", "train", DRIVE, [5], camera="03")
  config = kb.KittiConfig(name="bench2", layout="benchmark", cameras=("02", "03"))
  train = _read(_build(manual, tmp_path / "data", config), "train")
  assert sorted(train) == [f"{DRIVE}_02_0000000005", f"{DRIVE}_03_0000000005"]
  np.testing.assert_allclose(train[f"{DRIVE}_03_0000000005"]["intrinsics"], [9.0, 9.0, 8.5, 4.5])
  np.testing.assert_array_equal(train[f"{DRIVE}_03_0000000005"]["image"], rgb[5][::-1])


def test_eigen_benchmark_finds_train_and_val_ground_truth(tmp_path):
  manual = tmp_path / "manual"
  _write_raw(manual, DRIVE, [1, 2], velodyne=False)
  ann = manual / "data_depth_annotated"
  d1 = _write_annotated(ann, "train", DRIVE, [1])
  d2 = _write_annotated(ann, "val", DRIVE, [2], seed=5)
  splits = _splits_file(tmp_path / "s.json", {"eigen_benchmark_test": {DRIVE: [1, 2]}})
  config = kb.KittiConfig(name="eb", layout="eigen_benchmark", splits_file=splits)
  builder = _build(manual, tmp_path / "data", config)
  assert list(builder.info.splits) == ["test"]
  test = _read(builder, "test")
  np.testing.assert_array_equal(test[f"{DRIVE}_02_0000000001"]["depth"] * 256, d1[1])
  np.testing.assert_array_equal(test[f"{DRIVE}_02_0000000002"]["depth"] * 256, d2[2])


def test_semantics_maps_cityscapes_ids_to_train_ids(tmp_path):
  src = tmp_path / "src"
  labels = np.array([[7, 8, 11, 33, 0, 6, 9, 33], [26, 24, 23, 21, 1, 0, 31, 32]], np.uint8)
  _png(src / "training" / "image_2" / "000000_10.png", np.zeros((2, 8, 3), np.uint8))
  _png(src / "training" / "semantic" / "000000_10.png", labels)
  _png(src / "testing" / "image_2" / "000000_10.png", np.zeros((2, 8, 3), np.uint8))
  (tmp_path / "manual").mkdir()
  _zip_folder(src, tmp_path / "manual" / "data_semantics.zip")
  builder = _build(
    tmp_path / "manual", tmp_path / "data", kb.KittiConfig(name="s", layout="semantics")
  )
  assert list(builder.info.splits) == ["train"]
  ex = _read(builder, "train")["000000_10"]
  # Hand table: 7 road 0, 8 sidewalk 1, 11 building 2, 33 bicycle 18, 26 car 13, 24 person 11,
  # 23 sky 10, 21 vegetation 8, 31 train 16, 32 motorcycle 17; 0, 6, 9, 1 are void -> 255.
  want = [[0, 1, 2, 18, 255, 255, 255, 18], [13, 11, 10, 8, 255, 255, 16, 17]]
  np.testing.assert_array_equal(ex["segmentation"][..., 0], want)
  assert not bool(ex["has_depth"]) and bool(ex["has_segmentation"])
  assert not ex["intrinsics"].any()


def test_semantics_bad_label_names_the_member(tmp_path):
  src = tmp_path / "src"
  _png(src / "training" / "image_2" / "000001_10.png", np.zeros((2, 3, 3), np.uint8))
  _png(src / "training" / "semantic" / "000001_10.png", np.full((2, 3), 40, np.uint8))
  (tmp_path / "manual").mkdir()
  _zip_folder(src, tmp_path / "manual" / "data_semantics.zip")
  with pytest.raises(
    ValueError, match=r"data_semantics\.zip:training/semantic/000001_10\.png: .*\[40\]"
  ):
    _build(tmp_path / "manual", tmp_path / "data", kb.KittiConfig(name="s", layout="semantics"))


def test_missing_files_are_listed_with_a_count(tmp_path):
  manual = tmp_path / "manual"
  _write_raw(manual, DRIVE, [0, 1, 2])
  (manual / "2011_09_26" / DRIVE / "velodyne_points" / "data" / "0000000001.bin").unlink()
  (manual / "2011_09_26" / DRIVE / "image_02" / "data" / "0000000002.png").unlink()
  splits = _splits_file(
    tmp_path / "s.json", {"eigen_train": {DRIVE: [0, 1, 2]}, "eigen_test": {DRIVE2: [4]}}
  )
  with pytest.raises(FileNotFoundError) as info:
    _build(manual, tmp_path / "data", kb.KittiConfig(name="e", layout="eigen", splits_file=splits))
  msg = str(info.value)
  assert "6 required file(s) missing" in msg  # 2 above + DRIVE2: image, velodyne, 2 calib files.
  for rel in (
    f"2011_09_26/{DRIVE}/velodyne_points/data/0000000001.bin",
    f"2011_09_26/{DRIVE}/image_02/data/0000000002.png",
    f"2011_09_28/{DRIVE2}/image_02/data/0000000004.png",
    "2011_09_28/calib_velo_to_cam.txt",
  ):
    assert str(manual / rel) in msg


def test_many_missing_files_are_counted(tmp_path):
  manual = tmp_path / "manual"
  (manual / "2011_09_26").mkdir(parents=True)
  splits = _splits_file(
    tmp_path / "s.json", {"eigen_train": {DRIVE: list(range(30))}, "eigen_test": {}}
  )
  with pytest.raises(FileNotFoundError, match=r"62 required file\(s\) missing(.|\n)*and 42 more"):
    _build(manual, tmp_path / "data", kb.KittiConfig(name="e", layout="eigen", splits_file=splits))


@pytest.mark.parametrize("damage", ["png", "velodyne", "zip"])
def test_corrupt_files_are_named(tmp_path, damage):
  manual = tmp_path / "manual"
  _write_raw(manual, DRIVE, [0])
  splits = _splits_file(tmp_path / "s.json", {"eigen_train": {DRIVE: [0]}, "eigen_test": {}})
  config = kb.KittiConfig(name="e", layout="eigen", splits_file=splits)
  if damage == "png":
    bad = manual / "2011_09_26" / DRIVE / "image_02" / "data" / "0000000000.png"
    bad.write_bytes(b"not a png")
  elif damage == "velodyne":
    bad = manual / "2011_09_26" / DRIVE / "velodyne_points" / "data" / "0000000000.bin"
    bad.write_bytes(bad.read_bytes()[:-4])
  else:
    bad = manual / "data_depth_annotated.zip"
    bad.write_bytes(b"PK\x03\x04 broken")
  with pytest.raises(ValueError, match=re.escape(str(bad))):
    _build(manual, tmp_path / "data", config)


def test_image_size_against_calibration_is_checked(tmp_path):
  manual = tmp_path / "manual"
  _write_raw(manual, DRIVE, [0])
  (manual / "2011_09_26" / "calib_cam_to_cam.txt").write_text(_cam_to_cam(9, 16))
  splits = _splits_file(tmp_path / "s.json", {"eigen_train": {DRIVE: [0]}, "eigen_test": {}})
  with pytest.raises(ValueError, match=r"0000000000\.png: image size \(H, W\) = \(8, 16\) differs"):
    _build(manual, tmp_path / "data", kb.KittiConfig(name="e", layout="eigen", splits_file=splits))


@pytest.mark.real_data
def test_real_kitti_samples_in_benchmark_layout(shared_data, tmp_path):
  """The three shared KITTI frames (sparse LiDAR png/256) arranged in the benchmark layout.

  The shared folder keeps neither drive names nor calibration files: the frames are placed under a
  stand-in drive, and a calib_cam_to_cam.txt is written from the intrinsics in test_annotations.json.
  """
  src = shared_data / "kitti_samples" / "depth_sparse"
  table = json.loads((src / "test_annotations.json").read_text())
  fx, fy, cx, cy = table["files"][0]["cam_in"]
  drive = "2011_09_28_drive_0000_sync"
  manual = tmp_path / "manual"
  raw_dir = manual / "2011_09_28" / drive / "image_02" / "data"
  gt_dir = (
    manual / "data_depth_annotated" / "val" / drive / "proj_depth" / "groundtruth" / "image_02"
  )
  raw_dir.mkdir(parents=True)
  gt_dir.mkdir(parents=True)
  for p in sorted((src / "rgb").glob("*.png")):
    shutil.copy(p, raw_dir / p.name)
    shutil.copy(src / "depth" / p.name, gt_dir / p.name)
  (manual / "2011_09_28" / "calib_cam_to_cam.txt").write_text(
    f"P_rect_02: {fx} 0 {cx} 0 0 {fy} {cy} 0 0 0 1 0\n"
  )
  builder = _build(manual, tmp_path / "data", kb.KittiConfig(name="real", layout="benchmark"))
  val = _read(builder, "validation")
  assert sorted(val) == [f"{drive}_02_{n:010d}" for n in (5, 50, 100)]
  for name, ex in val.items():
    raw = np.array(Image.open(gt_dir / f"{name[-10:]}.png"))
    assert ex["image"].shape == (375, 1242, 3) and ex["depth"].shape == (375, 1242)
    np.testing.assert_array_equal(ex["depth"], raw.astype(np.float64) / 256.0)
    assert 0.6 < (ex["depth"] == 0).mean() < 0.95  # sparse LiDAR (~80 % empty).
    valid = ex["depth"][ex["depth"] > 0]
    assert valid.min() > 1.0 and valid.max() < 90.0  # street scene, metres.
    np.testing.assert_allclose(
      ex["intrinsics"], [707.0493, 707.0493, 604.0814, 180.5066], rtol=1e-6
    )
