"""Tests of the ``replica`` builder on tiny scenes written into tmp_path (no TensorFlow, no real data)."""

import json
import re
import tarfile
import zipfile

import numpy as np
import pytest
import tensorflow_datasets as tfds
from PIL import Image

from data_builders import common, get_builder_class
from data_builders.replica import meta as replica_meta
from data_builders.replica import replica_dataset_builder as rb
from semdepth_jax.data import meta

H, W = 17, 30  # 1/40 of the native 680 x 1200, same aspect ratio.


def _png(path, array):
  path.parent.mkdir(parents=True, exist_ok=True)
  Image.fromarray(array).save(path)


def _write_scene(root, stems, seed=0):
  """Writes a scene; returns {stem: (rgb, depth_mm, raw_labels)} as written."""
  rng = np.random.default_rng(seed)
  frames = {}
  for stem in stems:
    rgb = rng.integers(0, 256, (H, W, 3), dtype=np.uint8)
    depth = rng.integers(0, 65536, (H, W), dtype=np.uint16)
    depth[0, :4] = (0, 1, 40000, 65535)  # invalid, 1 mm, above int16, uint16 max.
    labels = rng.integers(0, 102, (H, W), dtype=np.uint8)
    labels[0, :3] = (0, 1, 101)
    _png(root / "rgb" / f"{stem}.png", rgb)
    _png(root / "depth_mm" / f"{stem}.png", depth)
    _png(root / "semantic_class" / f"{stem}.png", labels)
    frames[stem] = (rgb, depth, labels)
  names = {str(i + 1): n for i, n in enumerate(replica_meta.CLASS_NAMES)}
  (root / "classes_replica.json").write_text(json.dumps(names))
  return frames


def _build(manual_dir, data_dir, config=None):
  builder = rb.Builder(data_dir=str(data_dir), config=config)
  builder.download_and_prepare(
    download_config=tfds.download.DownloadConfig(manual_dir=str(manual_dir)),
    file_format="array_record",
  )
  return builder


def _read_split(builder, split):
  source = builder.as_data_source(split)
  return {source[i]["file_name"].decode(): source[i] for i in range(len(source))}


def test_registered_name_and_registry():
  assert rb.Builder.name == "replica"
  assert get_builder_class("replica") is rb.Builder
  assert rb.Builder.VERSION == "1.1.0"


def test_metadata_files_are_read():
  metadata = rb.Builder.get_metadata()
  assert "straub2019replica" in metadata.citation
  assert "ml.task.semantic-segmentation" in metadata.tags
  assert rb.Builder.MANUAL_DOWNLOAD_INSTRUCTIONS


def test_build_reads_back_units_labels_and_split(tmp_path):
  frames = _write_scene(tmp_path / "scene", ["0000", "0001", "0002", "0003", "0004"])
  config = rb.ReplicaConfig(name="first_val_3", first_validation_frame=3)
  builder = _build(tmp_path / "scene", tmp_path / "data", config)
  train, val = _read_split(builder, "train"), _read_split(builder, "validation")
  assert sorted(train) == ["0000", "0001", "0002"]
  assert sorted(val) == ["0003", "0004"]
  # Hand-scaled intrinsics: fx = 600 / 40, cx = (599.5 + 0.5) / 40 - 0.5, cy = (339.5 + 0.5) / 40 - 0.5.
  expected_k = np.array([15.0, 15.0, 14.5, 8.0], np.float32)
  for stem, ex in {**train, **val}.items():
    rgb, depth_mm, raw = frames[stem]
    assert ex["image"].dtype == np.uint8 and ex["image"].shape == (H, W, 3)
    np.testing.assert_array_equal(ex["image"], rgb)
    assert ex["depth"].dtype == np.float32 and ex["depth"].shape == (H, W)
    np.testing.assert_allclose(ex["depth"], depth_mm.astype(np.float64) / 1000.0, rtol=1e-6)
    assert ex["depth"][0, 0] == 0 and ex["depth"][0, 3] == pytest.approx(65.535)
    assert ex["segmentation"].dtype == np.uint8 and ex["segmentation"].shape == (H, W, 1)
    expected = np.array([[255 if v == 0 else v - 1 for v in row] for row in raw.tolist()])
    np.testing.assert_array_equal(ex["segmentation"][..., 0], expected)
    assert tuple(ex["segmentation"][0, :3, 0]) == (255, 0, 100)
    assert bool(ex["has_depth"]) and bool(ex["has_segmentation"])
    np.testing.assert_allclose(ex["intrinsics"], expected_k, rtol=1e-6)


def test_default_config_splits_at_frame_60(tmp_path):
  _write_scene(tmp_path / "scene", ["0059", "0060", "0080"])
  builder = _build(tmp_path / "scene", tmp_path / "data")
  assert builder.builder_config.name == "default"
  assert sorted(_read_split(builder, "train")) == ["0059"]
  assert sorted(_read_split(builder, "validation")) == ["0060", "0080"]


def test_native_size_gets_native_intrinsics_and_other_aspect_gets_zeros():
  assert common.scaled_intrinsics(meta.get_meta("replica"), 680, 1200) == replica_meta.INTRINSICS
  assert common.scaled_intrinsics(meta.get_meta("replica"), 480, 640) == (0.0, 0.0, 0.0, 0.0)


@pytest.mark.parametrize("kind", ["zip", "tar.gz"])
def test_archive_in_manual_dir(tmp_path, kind):
  frames = _write_scene(tmp_path / "office_0", ["0000", "0070"])
  manual = tmp_path / "manual"
  manual.mkdir()
  if kind == "zip":
    with zipfile.ZipFile(manual / "office_0.zip", "w") as z:
      for p in sorted((tmp_path / "office_0").rglob("*")):
        z.write(p, p.relative_to(tmp_path))
  else:
    with tarfile.open(manual / "office_0.tar.gz", "w:gz") as t:
      t.add(tmp_path / "office_0", arcname="office_0")
  builder = _build(manual, tmp_path / "data")
  val = _read_split(builder, "validation")
  np.testing.assert_array_equal(val["0070"]["image"], frames["0070"][0])
  assert sorted(_read_split(builder, "train")) == ["0000"]
  assert sorted(p.name for p in manual.iterdir()) == [f"office_0.{kind}"]  # manual_dir only read.


def test_scene_in_subfolder(tmp_path):
  _write_scene(tmp_path / "manual" / "office_0", ["0001"])
  builder = _build(tmp_path / "manual", tmp_path / "data")
  assert sorted(_read_split(builder, "train")) == ["0001"]


def test_missing_files_listed_in_one_error(tmp_path):
  root = tmp_path / "scene"
  _write_scene(root, ["0000", "0001", "0002"])
  (root / "depth_mm" / "0001.png").unlink()
  (root / "semantic_class" / "0002.png").unlink()
  (root / "rgb" / "0000.png").unlink()
  with pytest.raises(FileNotFoundError) as info:
    _build(root, tmp_path / "data")
  msg = str(info.value)
  assert "3 required file(s) missing" in msg
  for missing in ("depth_mm/0001.png", "semantic_class/0002.png", "rgb/0000.png"):
    assert str(root / missing) in msg


def test_missing_folders_and_class_table_listed(tmp_path):
  manual = tmp_path / "manual"
  manual.mkdir()
  (manual / "notes.txt").write_text("not a scene")
  with pytest.raises(FileNotFoundError) as info:
    _build(manual, tmp_path / "data")
  msg = str(info.value)
  assert "4 required file(s) missing" in msg
  for missing in ("classes_replica.json", "rgb", "depth_mm", "semantic_class"):
    assert str(manual / missing) in msg


def test_class_table_mismatch_raises(tmp_path):
  root = tmp_path / "scene"
  _write_scene(root, ["0000"])
  names = json.loads((root / "classes_replica.json").read_text())
  names["5"], names["6"] = names["6"], names["5"]
  (root / "classes_replica.json").write_text(json.dumps(names))
  with pytest.raises(ValueError, match=r"classes_replica\.json: 2 class name\(s\) differ"):
    _build(root, tmp_path / "data")


@pytest.mark.parametrize("damage", ["garbage", "truncated"])
def test_corrupt_png_names_the_file(tmp_path, damage):
  root = tmp_path / "scene"
  _write_scene(root, ["0000", "0001"])
  bad = root / "rgb" / "0001.png"
  data = bad.read_bytes()
  bad.write_bytes(b"not a png" if damage == "garbage" else data[: len(data) // 2])
  with pytest.raises(ValueError, match=re.escape(str(bad))):
    _build(root, tmp_path / "data")


def test_mismatched_size_names_the_file(tmp_path):
  root = tmp_path / "scene"
  _write_scene(root, ["0000"])
  _png(root / "depth_mm" / "0000.png", np.ones((H, W + 1), np.uint16))
  with pytest.raises(ValueError, match=re.escape(str(root / "depth_mm" / "0000.png"))):
    _build(root, tmp_path / "data")


def test_out_of_range_label_names_the_file(tmp_path):
  root = tmp_path / "scene"
  _write_scene(root, ["0000"])
  labels = np.ones((H, W), np.uint8)
  labels[3, 4] = 102
  _png(root / "semantic_class" / "0000.png", labels)
  with pytest.raises(
    ValueError, match=re.escape(str(root / "semantic_class" / "0000.png"))
  ) as info:
    _build(root, tmp_path / "data")
  assert "[102]" in str(info.value)


def test_8bit_depth_png_is_rejected(tmp_path):
  root = tmp_path / "scene"
  _write_scene(root, ["0000"])
  _png(root / "depth_mm" / "0000.png", np.ones((H, W), np.uint8))
  with pytest.raises(ValueError, match=r"0000\.png: expected a uint16 PNG, got PIL mode 'L'"):
    _build(root, tmp_path / "data")


def test_read_png_uint16_values(tmp_path):
  values = np.array([[0, 1, 255, 256], [32767, 32768, 40000, 65535]], np.uint16)
  _png(tmp_path / "d.png", values)
  from etils import epath

  out = common.read_png(epath.Path(tmp_path / "d.png"), "uint16")
  assert out.dtype == np.uint16
  np.testing.assert_array_equal(out, values)


def test_two_scenes_in_manual_dir_is_an_error(tmp_path):
  for name in ("a", "b"):
    _write_scene(tmp_path / "manual" / name, ["0000"])
  with pytest.raises(ValueError, match="found 2 folders holding classes_replica.json"):
    _build(tmp_path / "manual", tmp_path / "data")


def test_real_builders_write_array_record_by_default(tmp_path):
  for name in ("replica", "nyu_depth_v2_labeled", "camvid", "synthetic_city"):
    builder = get_builder_class(name)(data_dir=tmp_path)
    assert builder.info.file_format.value == "array_record", name


# --- Config nyu40: Replica classes mapped to NYU-40 (meta.NYU40_MAPPING). -------------------------------

# Raw Replica id (classes_replica.json) -> NYU-40 training id (NYU-40 id - 1 in Gupta et al.'s order:
# 1 wall, 2 floor, 12 counter, 18 pillow, 23 books, 25 television, 32 night stand, 37 bag,
# 38 otherstructure, 39 otherfurniture, 40 otherprop), picked by hand with the reason in meta.py.
HAND_PICKED = {
  93: ("wall", 0),
  40: ("floor", 1),
  33: ("countertop", 11),
  29: ("cushion", 17),  # no NYU "cushion": pillow.
  13: ("book", 22),  # departure: books, not NYU "book" -> otherprop.
  87: ("tv-screen", 24),
  54: ("nightstand", 31),
  41: ("handbag", 36),  # departure: bag, not NYU "purse" -> otherprop.
  100: ("bag", 36),
  60: ("pillar", 37),
  6: ("beanbag", 38),  # NYU "bean bag".
  98: ("rug", 39),  # NYU "rug" -> otherprop, not floor mat.
  52: ("monitor", 39),  # NYU "monitor" -> otherprop; only television is television.
  78: ("stool", 39),  # NYU "stool" -> otherprop.
  56: ("panel", 255),  # unmappable -> ignore.
}


def test_nyu40_mapping_of_hand_picked_classes():
  lut = rb.label_lut("nyu40")
  assert lut.dtype == np.int16 and lut.shape == (256,)
  for raw, (name, train_id) in HAND_PICKED.items():
    assert replica_meta.CLASS_NAMES[raw - 1] == name
    assert lut[raw] == train_id, name
  assert lut[0] == 255 and (lut[102:] == -1).all()
  assert set(lut[1:102].tolist()) <= set(range(40)) | {255}
  assert [n for n, t in replica_meta.NYU40_MAPPING.items() if t is None] == ["panel"]
  assert list(replica_meta.NYU40_MAPPING) == list(replica_meta.CLASS_NAMES)
  np.testing.assert_array_equal(rb.label_lut("replica")[1:102], np.arange(101))
  with pytest.raises(ValueError, match="label_set must be one of"):
    rb.label_lut("nyu13")


def test_nyu40_config_builds_with_nyu40_meta(tmp_path):
  frames = _write_scene(tmp_path / "scene", ["0000", "0061"])
  builder = _build(tmp_path / "scene", tmp_path / "data", "nyu40")
  assert builder.builder_config.name == "nyu40"
  nyu40 = meta.get_meta("replica/nyu40")
  assert nyu40.class_names == meta.NYU40_CLASS_NAMES and meta.get_meta("replica").num_classes == 101
  names = list(meta.NYU40_CLASS_NAMES)
  for split, stem in (("train", "0000"), ("validation", "0061")):
    ex = _read_split(builder, split)[stem]
    raw = frames[stem][2]
    expected = np.full(raw.shape, 255)
    for k, name in enumerate(replica_meta.CLASS_NAMES, start=1):
      target = replica_meta.NYU40_MAPPING[name]
      if target is not None:
        expected[raw == k] = names.index(target)
    np.testing.assert_array_equal(ex["segmentation"][..., 0], expected)
    np.testing.assert_array_equal(ex["image"], frames[stem][0])


@pytest.fixture(scope="module")
def replica_nyu40_real(shared_data, tmp_path_factory):
  """Builds config nyu40 once on 6 real office_0 frames (3 train, 3 validation), linked into a tmp scene."""
  src = shared_data / "replica_office0"
  scene = tmp_path_factory.mktemp("replica_subset")
  (scene / "classes_replica.json").symlink_to(src / "classes_replica.json")
  for folder in ("rgb", "depth_mm", "semantic_class"):
    (scene / folder).mkdir()
    for stem in ("0000", "0030", "0059", "0060", "0070", "0080"):
      (scene / folder / f"{stem}.png").symlink_to(src / folder / f"{stem}.png")
  return _build(scene, tmp_path_factory.mktemp("data"), "nyu40"), src


@pytest.mark.real_data
def test_nyu40_real_office0_labels(replica_nyu40_real):
  builder, src = replica_nyu40_real
  assert builder.info.splits["train"].num_examples == 3
  assert builder.info.splits["validation"].num_examples == 3
  source = builder.as_data_source("validation")
  seen = set()
  for i in range(len(source)):
    ex = source[i]
    stem = ex["file_name"].decode()
    raw = np.array(Image.open(src / "semantic_class" / f"{stem}.png")).astype(int)
    seg = ex["segmentation"][..., 0].astype(int)
    assert set(np.unique(seg)) <= set(range(40)) | {255}
    np.testing.assert_array_equal(seg[raw == 0], 255)
    for k, (_, train_id) in HAND_PICKED.items():
      np.testing.assert_array_equal(seg[raw == k], train_id)
    seen |= set(np.unique(raw).tolist())
  assert {93, 98} <= seen  # wall and rug are in every office_0 view: the hand-picked check ran.
