"""Tests of the ``scannet`` builder on tiny scenes written into tmp_path in ScanNet's / ROB 2018's layout."""

import re
import zipfile

import numpy as np
import pytest
import tensorflow_datasets as tfds
from etils import epath
from PIL import Image

from data_builders import get_builder_class
from data_builders.scannet import scannet_dataset_builder as sb
from semdepth_jax.data import meta

HC, WC = 24, 32  # colour frames (ScanNet: 968 x 1296).
HD, WD = 12, 16  # depth frames (ScanNet: 480 x 640).

# Scenes whose split is read by hand from the devkit's data_splits/*.txt (first line of each list):
# scannet_train.txt starts with scene0191_00, scannet_val.txt with scene0534_00, scannet_test.txt (moved to
# val/ by assign_scenes_to_split.py) with scene0568_00, scannet_rob_test.txt with scene0707_00;
# scene0141_01 is a ScanNet v1 train scan the devkit removed from its train list ("update scannet split").
TRAIN, VAL, VAL_FROM_TEST, TEST, UNLISTED = (
  "scene0191_00",
  "scene0534_00",
  "scene0568_00",
  "scene0707_00",
  "scene0141_01",
)
K_DEPTH = (
  (577.590698, 0.0, 318.905426, 0.0),
  (0.0, 578.729797, 242.683609, 0.0),
  (0, 0, 1, 0),
  (0, 0, 0, 1),
)

# scannetv2-labels.combined.tsv: the real file's first columns (id .. nyu40id) and a few rows.
TSV = (
  "id\traw_category\tcategory\tcount\tnyu40id\teigen13id\tnyuClass\tnyu40class\teigen13class\n"
  "1\twall\twall\t8277\t1\t12\twall\twall\tWall\n"
  "2\tchair\tchair\t4646\t5\t4\tchair\tchair\tChair\n"
  "22\tbook\tbook\t1678\t23\t2\tbook\tbooks\tBooks\n"
  "40\tobject\tobject\t1\t40\t7\t\totherprop\tObjects\n"
  "1163\tstick\tstick\t1\t40\t7\t\totherprop\tObjects\n"
  "7\tunknown thing\t\t1\t\t\t\t\t\n"
)
# ScanNet id -> stored training id, by hand from TSV: nyu40id - 1; 0 (unannotated) and an empty nyu40id -> 255.
EXPECTED_LABEL = {0: 255, 1: 0, 2: 4, 22: 22, 40: 39, 1163: 39, 7: 255}


def _png(path, array):
  path.parent.mkdir(parents=True, exist_ok=True)
  Image.fromarray(array).save(path)


def _write_scene(root, scene, frames, labels=True, depth=True, pad=0, seed=0):
  """Writes a scene in the SensReader / ROB layout; returns {frame: (rgb, depth_mm, label ids)}."""
  rng = np.random.default_rng(seed)
  out = {}
  folder = root / scene
  for n in frames:
    stem = f"{n:0{pad}d}" if pad else str(n)
    rgb = rng.integers(0, 256, (HC, WC, 3), dtype=np.uint8)
    (folder / "color").mkdir(parents=True, exist_ok=True)
    Image.fromarray(rgb).save(folder / "color" / f"{stem}.jpg", quality=95)
    depth_mm = rng.integers(0, 10000, (HD, WD), dtype=np.uint16)
    depth_mm[0, :3] = (0, 1, 9999)
    if depth:
      _png(folder / "depth" / f"{stem}.png", depth_mm)
    ids = rng.choice(np.array(list(EXPECTED_LABEL), np.uint16), (HC, WC))
    if labels:
      _png(folder / "label-filt" / f"{n}.png", ids)
    out[n] = (rgb, depth_mm, ids)
  text = "\n".join(" ".join(f"{v:f}" for v in row) for row in K_DEPTH) + "\n"
  (folder / "intrinsic").mkdir(parents=True, exist_ok=True)
  (folder / "intrinsic" / "intrinsic_depth.txt").write_text(text)
  (folder / "intrinsic" / "intrinsic_color.txt").write_text(text)
  return out


def _write_tsv(root):
  root.mkdir(parents=True, exist_ok=True)
  (root / sb.LABEL_MAP_FILE).write_text(TSV)


def _build(manual_dir, data_dir):
  builder = sb.Builder(data_dir=str(data_dir))
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


def _decoded_and_resized(path, size=(HD, WD)):
  """The colour frame as PIL decodes it, resized to ``size`` (H, W) with PIL's bilinear filter."""
  return np.asarray(Image.open(path).convert("RGB").resize(size[::-1], Image.BILINEAR))


def test_registered_name_meta_and_metadata():
  assert sb.Builder.name == "scannet"
  assert get_builder_class("scannet") is sb.Builder
  m = meta.get_meta("scannet")
  assert m.class_names == meta.NYU40_CLASS_NAMES and m.native_size == (480, 640)
  metadata = sb.Builder.get_metadata()
  assert "dai2017scannet" in metadata.citation


def test_rob_split_lists():
  split_of = sb.read_split()
  counts = {}
  for split in split_of.values():
    counts[split] = counts.get(split, 0) + 1
  # Devkit lists: 1,041 train, 156 val + 309 test (both to val/), 80 rob_test.
  assert counts == {"train": 1041, "validation": 465, "test": 80}
  assert split_of[TRAIN] == "train" and split_of[VAL] == "validation"
  assert split_of[VAL_FROM_TEST] == "validation" and split_of[TEST] == "test"
  assert UNLISTED not in split_of


def test_intrinsics_parsing(tmp_path):
  path = epath.Path(tmp_path / "k.txt")
  path.write_text("577.590698 0.000000 318.905426 0.000000\n0.000000 578.729797 242.683609 0.000000\n"
                  "0.000000 0.000000 1.000000 0.000000\n0.000000 0.000000 0.000000 1.000000\n")  # fmt: skip
  assert sb.read_intrinsics(path) == pytest.approx((577.590698, 578.729797, 318.905426, 242.683609))
  path.write_text("10 0 4\n0 11 3\n0 0 1")
  assert sb.read_intrinsics(path) == (10.0, 11.0, 4.0, 3.0)
  path.write_text("1 2 3 4")
  with pytest.raises(
    ValueError, match=re.escape(f"{path}: expected 16 (4 x 4) or 9 (3 x 3) numbers, got 4")
  ):
    sb.read_intrinsics(path)
  path.write_text("0 0 4\n0 11 3\n0 0 1")
  with pytest.raises(ValueError, match="invalid intrinsics fx=0.0"):
    sb.read_intrinsics(path)


def test_label_map_columns_and_values(tmp_path):
  _write_tsv(tmp_path)
  lut = sb.read_label_map(epath.Path(tmp_path / sb.LABEL_MAP_FILE))
  assert lut.shape == (65536,) and lut.dtype == np.int16
  for scannet_id, train_id in EXPECTED_LABEL.items():
    assert lut[scannet_id] == train_id, scannet_id
  assert lut[3] == -1 and lut[65535] == -1  # not in the table.
  bad = tmp_path / "bad.tsv"
  bad.write_text("id\tcategory\n1\twall\n")
  with pytest.raises(ValueError, match=r"bad\.tsv: columns 'id' and 'nyu40id' required"):
    sb.read_label_map(epath.Path(bad))
  bad.write_text("id\tnyu40id\n1\t41\n")
  with pytest.raises(
    ValueError, match=r"bad\.tsv:2: id 1 must be in 1\.\.65535 and nyu40id 41 in 0\.\.40"
  ):
    sb.read_label_map(epath.Path(bad))


def test_nearest_resize_by_hand():
  labels = np.arange(4 * 6).reshape(4, 6)
  # Output (i, j) of 2 x 3 takes input (floor((i + .5) * 2), floor((j + .5) * 2)) = rows 1, 3; cols 1, 3, 5.
  np.testing.assert_array_equal(sb.nearest_resize(labels, 2, 3), [[7, 9, 11], [19, 21, 23]])


def test_build_units_resize_labels_splits_and_intrinsics(tmp_path):
  manual = tmp_path / "manual"
  written = {
    TRAIN: _write_scene(manual, TRAIN, [0, 100]),
    VAL: _write_scene(manual, VAL, [200], labels=False, seed=1),
    VAL_FROM_TEST: _write_scene(manual / "val", VAL_FROM_TEST, [0], pad=6, seed=2),
    TEST: _write_scene(manual, TEST, [300], labels=False, depth=False, seed=3),
  }
  _write_scene(manual, UNLISTED, [0], seed=4)
  _write_tsv(manual)
  data = _read(_build(manual, tmp_path / "data"))
  assert {s: sorted(v) for s, v in data.items()} == {
    "train": [f"{TRAIN}_000000", f"{TRAIN}_000100"],
    "validation": [f"{VAL}_000200", f"{VAL_FROM_TEST}_000000"],
    "test": [f"{TEST}_000300"],
  }
  k = (577.590698, 578.729797, 318.905426, 242.683609)
  for split, scene, n in (
    ("train", TRAIN, 100),
    ("validation", VAL, 200),
    ("validation", VAL_FROM_TEST, 0),
    ("test", TEST, 300),
  ):
    ex = data[split][f"{scene}_{n:06d}"]
    rgb, depth_mm, ids = written[scene][n]
    color = manual / scene / "color" / f"{n}.jpg"
    if scene == VAL_FROM_TEST:
      color = manual / "val" / scene / "color" / f"{n:06d}.jpg"
    # Frames without a depth image are stored at ScanNet's depth size, 640 x 480.
    size = (480, 640) if scene == TEST else (HD, WD)
    assert ex["image"].shape == (*size, 3) and ex["image"].dtype == np.uint8
    np.testing.assert_array_equal(ex["image"], _decoded_and_resized(color, size))
    np.testing.assert_allclose(ex["intrinsics"], k, rtol=1e-6)
    if scene == TEST:  # a rob_test scene without depth: flagged, zeros.
      assert not bool(ex["has_depth"]) and not ex["depth"].any()
    else:
      assert bool(ex["has_depth"])
      np.testing.assert_allclose(ex["depth"], depth_mm.astype(np.float64) / 1000.0, rtol=1e-6)
      assert tuple(ex["depth"][0, :3]) == pytest.approx((0.0, 0.001, 9.999))
    seg = ex["segmentation"][..., 0].astype(int)
    if scene in (TRAIN, VAL_FROM_TEST):
      assert bool(ex["has_segmentation"])
      # Nearest from 24 x 32 to 12 x 16: rows 1, 3, ..., 23 and columns 1, 3, ..., 31.
      expected = np.vectorize(EXPECTED_LABEL.get)(ids[1::2, 1::2])
      np.testing.assert_array_equal(seg, expected)
    else:
      assert not bool(ex["has_segmentation"]) and (seg == 255).all()


def test_colour_resize_keeps_flat_regions(tmp_path):
  manual = tmp_path / "manual"
  _write_scene(manual, TRAIN, [0], labels=False)
  rgb = np.zeros((968, 1296, 3), np.uint8)  # ScanNet's real sizes, left half red, right half blue.
  rgb[:, :648] = (200, 30, 30)
  rgb[:, 648:] = (20, 40, 220)
  Image.fromarray(rgb).save(manual / TRAIN / "color" / "0.jpg", quality=95)
  _png(manual / TRAIN / "depth" / "0.png", np.full((480, 640), 1500, np.uint16))
  ex = _read(_build(manual, tmp_path / "data"))["train"][f"{TRAIN}_000000"]
  assert ex["image"].shape == (480, 640, 3)
  np.testing.assert_allclose(ex["image"][:, :300].reshape(-1, 3).mean(0), (200, 30, 30), atol=3)
  np.testing.assert_allclose(ex["image"][:, 340:].reshape(-1, 3).mean(0), (20, 40, 220), atol=3)
  np.testing.assert_allclose(ex["depth"], 1.5)


def test_archives_scene_zip_and_label_filt_zip(tmp_path):
  src = tmp_path / "src"
  written = _write_scene(src, TRAIN, [0], seed=5)
  manual = tmp_path / "manual"
  manual.mkdir()
  with zipfile.ZipFile(manual / f"{TRAIN}.zip", "w") as z:
    for p in sorted((src / TRAIN).rglob("*")):
      if p.is_file() and "label-filt" not in p.parts:
        z.write(p, p.relative_to(src))
  with zipfile.ZipFile(
    manual / f"{TRAIN}_2d-label-filt.zip", "w"
  ) as z:  # ScanNet's layout: label-filt/<n>.png
    z.write(src / TRAIN / "label-filt" / "0.png", "label-filt/0.png")
  _write_tsv(manual)
  ex = _read(_build(manual, tmp_path / "data"))["train"][f"{TRAIN}_000000"]
  np.testing.assert_allclose(ex["depth"], written[0][1] / 1000.0, rtol=1e-6)
  np.testing.assert_array_equal(
    ex["segmentation"][..., 0], np.vectorize(EXPECTED_LABEL.get)(written[0][2][1::2, 1::2])
  )
  assert sorted(p.name for p in manual.iterdir()) == sorted(
    [f"{TRAIN}.zip", f"{TRAIN}_2d-label-filt.zip", sb.LABEL_MAP_FILE]
  )


def test_missing_files_listed_in_one_error(tmp_path):
  manual = tmp_path / "manual"
  _write_scene(manual, TRAIN, [0, 100])
  _write_scene(manual, VAL, [5], labels=False)
  (manual / TRAIN / "depth" / "100.png").unlink()
  (manual / VAL / "intrinsic" / "intrinsic_depth.txt").unlink()
  with pytest.raises(FileNotFoundError) as info:
    _build(manual, tmp_path / "data")  # label-filt present but no tsv.
  msg = str(info.value)
  assert "3 required file(s) missing" in msg
  for path in (
    manual / TRAIN / "depth" / "100.png",
    manual / VAL / "intrinsic" / "intrinsic_depth.txt",
    manual / sb.LABEL_MAP_FILE,
  ):
    assert str(path) in msg


def test_no_listed_scene_is_an_error(tmp_path):
  _write_scene(tmp_path / "manual", UNLISTED, [0])
  with pytest.raises(
    FileNotFoundError, match=f"no ScanNet scene of the ROB 2018 lists.*{UNLISTED}"
  ):
    _build(tmp_path / "manual", tmp_path / "data")


def test_unknown_scannet_id_names_the_file(tmp_path):
  manual = tmp_path / "manual"
  _write_scene(manual, TRAIN, [0])
  _write_tsv(manual)
  bad = manual / TRAIN / "label-filt" / "0.png"
  ids = np.ones((HC, WC), np.uint16)
  ids[2, 3] = 3
  _png(bad, ids)
  with pytest.raises(
    ValueError, match=re.escape(f"{bad}: ScanNet ids [3] not in {sb.LABEL_MAP_FILE}")
  ):
    _build(manual, tmp_path / "data")


@pytest.mark.parametrize("kind", ["color", "depth"])
def test_corrupt_image_names_the_file(tmp_path, kind):
  manual = tmp_path / "manual"
  _write_scene(manual, TRAIN, [0], labels=False)
  bad = manual / TRAIN / kind / ("0.jpg" if kind == "color" else "0.png")
  bad.write_bytes(b"garbage")
  with pytest.raises(ValueError, match=re.escape(str(bad))):
    _build(manual, tmp_path / "data")


def test_8bit_depth_is_rejected(tmp_path):
  manual = tmp_path / "manual"
  _write_scene(manual, TRAIN, [0], labels=False)
  _png(manual / TRAIN / "depth" / "0.png", np.ones((HD, WD), np.uint8))
  with pytest.raises(ValueError, match=r"0\.png: expected a uint16 PNG, got PIL mode 'L'"):
    _build(manual, tmp_path / "data")


def test_scene_found_twice_is_an_error(tmp_path):
  manual = tmp_path / "manual"
  _write_scene(manual / "a", TRAIN, [0], labels=False)
  _write_scene(manual / "b", TRAIN, [0], labels=False)
  with pytest.raises(ValueError, match=f"scene {TRAIN} found twice"):
    _build(manual, tmp_path / "data")
