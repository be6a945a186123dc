"""Tests of the ``cityscapes`` builder on tiny frames written into tmp_path in the official layout.

Fixtures: 16 x 32 frames (1/64 of 1024 x 2048) named and foldered as in the official archives
(``leftImg8bit/train/aachen/aachen_000000_000019_leftImg8bit.png`` ...), given as extracted folders
or as the four zip archives (with the archives' top-level README / license.txt members).
"""

import json
import re
import zipfile

import numpy as np
import pytest
import tensorflow_datasets as tfds
from PIL import Image

from data_builders import get_builder_class
from data_builders.cityscapes import cityscapes_dataset_builder as cb
from semdepth_jax.data import meta

H, W = 16, 32
BASELINE, FX, FY, U0, V0 = 0.25, 2000.0, 2010.0, 15.25, 7.75  # baseline * fx = 500 m px.
FRAMES = {
  "train": [
    "aachen/aachen_000000_000019",
    "aachen/aachen_000001_000019",
    "bochum/bochum_000000_000313",
  ],
  "val": ["frankfurt/frankfurt_000000_000294", "lindau/lindau_000000_000019"],
}
KEYS = {
  "image",
  "depth",
  "segmentation",
  "has_depth",
  "has_segmentation",
  "intrinsics",
  "file_name",
}

# Official cityscapesScripts labels.py, written out independently of the code under test:
# label id -> trainId for the 19 evaluated classes; every other id 0..33 -> 255.
_TRAIN_IDS = {
  7: 0, 8: 1, 11: 2, 12: 3, 13: 4, 17: 5, 19: 6, 20: 7, 21: 8, 22: 9, 23: 10, 24: 11, 25: 12,
  26: 13, 27: 14, 28: 15, 31: 16, 32: 17, 33: 18,
}  # fmt: skip

# Disparity codes p and the depth they mean, by hand: d = (p - 1) / 256, depth = 500 / d.
_HAND_DEPTH = {
  0: 0.0,  # no measurement.
  1: 0.0,  # zero disparity: infinitely far -> invalid.
  257: 500.0,  # d = 1 px.
  2561: 50.0,  # d = 10 px.
  12801: 10.0,  # d = 50 px.
  25601: 5.0,  # d = 100 px.
  65535: 500.0 * 256.0 / 65534.0,  # d = 255.9921875 px -> 1.9531846... m.
}


def _png(path, array):
  path.parent.mkdir(parents=True, exist_ok=True)
  Image.fromarray(array).save(path)


def _camera(**override):
  camera = {
    "extrinsic": {"baseline": BASELINE, "pitch": 0.05, "roll": 0.0, "x": 1.7, "y": 0.1, "yaw": 0.0,
                  "z": 1.2},
    "intrinsic": {"fx": FX, "fy": FY, "u0": U0, "v0": V0},
  }  # fmt: skip
  for key, value in override.items():
    group, field = key.split("__")
    if value is None:
      del camera[group][field]
    else:
      camera[group][field] = value
  return camera


def _write_tree(root, frames=FRAMES, seed=0):
  """Writes the four folders under ``root``; returns {stem: (rgb, label_ids, disparity_code)}."""
  rng = np.random.default_rng(seed)
  out = {}
  for folder, items in frames.items():
    for item in items:
      rgb = rng.integers(0, 256, (H, W, 3), dtype=np.uint8)
      ids = rng.integers(0, 34, (H, W), dtype=np.uint8)
      ids[0, :5] = (0, 7, 33, 9, 26)
      code = rng.integers(0, 65536, (H, W), dtype=np.uint16)
      code[1, : len(_HAND_DEPTH)] = list(_HAND_DEPTH)
      _png(root / "leftImg8bit" / folder / f"{item}_leftImg8bit.png", rgb)
      _png(root / "gtFine" / folder / f"{item}_gtFine_labelIds.png", ids)
      _png(root / "gtFine" / folder / f"{item}_gtFine_color.png", rgb)  # present, never read.
      _png(root / "disparity" / folder / f"{item}_disparity.png", code)
      camera = root / "camera" / folder / f"{item}_camera.json"
      camera.parent.mkdir(parents=True, exist_ok=True)
      camera.write_text(json.dumps(_camera(), indent=4))
      out[item.split("/")[1]] = (rgb, ids, code)
  return out


def _zip_tree(root, dest):
  """Packs each of the four folders of ``root`` into its official archive in ``dest``."""
  dest.mkdir(parents=True, exist_ok=True)
  for folder, name in cb.INPUTS.items():
    with zipfile.ZipFile(dest / name, "w") as z:
      z.writestr("README", "Cityscapes")
      z.writestr("license.txt", "licence")
      for path in sorted((root / folder).rglob("*")):
        if path.is_file():
          z.write(path, path.relative_to(root).as_posix())


def _build(manual_dir, data_dir, config="full"):
  builder = cb.Builder(data_dir=str(data_dir), config=config)
  builder.download_and_prepare(
    download_config=tfds.download.DownloadConfig(manual_dir=str(manual_dir)),
    file_format="array_record",
  )
  return builder


def _read_split(builder, split):
  source = builder.as_data_source(split)
  return {source[i]["file_name"].decode(): source[i] for i in range(len(source))}


def _expected_depth(code):
  """Independent numpy reference of docs/model_spec.md §9.2."""
  disparity = (code.astype(np.float64) - 1.0) / 256.0
  with np.errstate(divide="ignore"):
    depth = np.where(code > 1, BASELINE * FX / np.where(code > 1, disparity, 1.0), 0.0)
  return depth


def _expected_labels(ids):
  return np.vectorize(lambda i: _TRAIN_IDS.get(int(i), 255))(ids)


@pytest.fixture(scope="module")
def built(tmp_path_factory):
  """One full-size build from extracted folders and one from the zip archives (shared by tests)."""
  tmp = tmp_path_factory.mktemp("cityscapes")
  frames = _write_tree(tmp / "folders")
  test_image = tmp / "folders/leftImg8bit/test/berlin/berlin_000000_000019_leftImg8bit.png"
  _png(test_image, frames["aachen_000000_000019"][0])  # a test frame has no labels: not built.
  _zip_tree(tmp / "folders", tmp / "zips")
  return {
    "frames": frames,
    "folders": _build(tmp / "folders", tmp / "data_folders"),
    "zips": _build(tmp / "zips", tmp / "data_zips"),
  }


def test_registered_name_configs_and_meta():
  assert cb.Builder.name == "cityscapes"
  assert get_builder_class("cityscapes/half") is cb.Builder
  assert [c.name for c in cb.Builder.BUILDER_CONFIGS] == ["full", "half"]
  assert meta.get_meta("cityscapes").name == "cityscapes/full"
  assert meta.get_meta("cityscapes").native_size == (1024, 2048)
  assert meta.get_meta("cityscapes/half").native_size == (512, 1024)
  assert meta.get_meta("cityscapes").class_names[0] == "road"
  assert meta.get_meta("cityscapes").num_classes == 19
  assert len(meta.CITYSCAPES_LABEL_ID_TO_TRAIN_ID) == 34


def test_metadata_files_are_read():
  metadata = cb.Builder.get_metadata()
  assert "cordts2016cityscapes" in metadata.citation
  assert "ml.task.semantic-segmentation" in metadata.tags
  assert "test frames have no public labels" in cb.Builder.MANUAL_DOWNLOAD_INSTRUCTIONS


def test_label_table_matches_the_official_one():
  lut = cb.label_lut()
  for label_id in range(34):
    assert lut[label_id] == _TRAIN_IDS.get(label_id, 255), label_id
  assert (lut[34:] == -1).all()
  assert sorted(_TRAIN_IDS.values()) == list(range(19))


def test_disparity_to_depth_by_hand():
  code = np.array([list(_HAND_DEPTH)], np.uint16)
  depth = cb.disparity_to_depth(code, BASELINE, FX)
  assert depth.dtype == np.float32
  np.testing.assert_allclose(depth[0], list(_HAND_DEPTH.values()), rtol=1e-6)
  assert depth[0, -1] == pytest.approx(1.9531846, rel=1e-6)


@pytest.mark.parametrize("kind", ["folders", "zips"])
def test_build_reads_back(built, kind):
  builder = built[kind]
  assert sorted(builder.info.splits) == ["train", "validation"]  # leftImg8bit/test is ignored.
  train, val = _read_split(builder, "train"), _read_split(builder, "validation")
  assert sorted(train) == ["aachen_000000_000019", "aachen_000001_000019", "bochum_000000_000313"]
  assert sorted(val) == ["frankfurt_000000_000294", "lindau_000000_000019"]
  for key, ex in {**train, **val}.items():
    rgb, ids, code = built["frames"][key]
    assert set(ex) == KEYS
    np.testing.assert_array_equal(ex["image"], rgb)
    assert ex["segmentation"].shape == (H, W, 1)
    np.testing.assert_array_equal(ex["segmentation"][..., 0], _expected_labels(ids))
    np.testing.assert_array_equal(ex["segmentation"][0, :5, 0], [255, 0, 18, 255, 13])
    assert ex["depth"].dtype == np.float32 and ex["depth"].shape == (H, W)
    np.testing.assert_allclose(ex["depth"], _expected_depth(code), rtol=1e-6)
    np.testing.assert_allclose(
      ex["depth"][1, : len(_HAND_DEPTH)], list(_HAND_DEPTH.values()), rtol=1e-6
    )
    np.testing.assert_allclose(ex["intrinsics"], [FX, FY, U0, V0])
    assert bool(ex["has_depth"]) and bool(ex["has_segmentation"])


def test_folders_and_zips_store_the_same(built):
  for split in ("train", "validation"):
    a, b = _read_split(built["folders"], split), _read_split(built["zips"], split)
    assert a.keys() == b.keys()
    for key in a:
      for feature in ("image", "depth", "segmentation", "intrinsics"):
        np.testing.assert_array_equal(a[key][feature], b[key][feature])


def test_half_config_downsamples_with_nearest_depth_and_labels(tmp_path):
  frames = _write_tree(tmp_path / "m", {"val": FRAMES["val"][:1]})
  builder = _build(tmp_path / "m", tmp_path / "data", "half")
  (ex,) = _read_split(builder, "validation").values()
  rgb, ids, code = frames["frankfurt_000000_000294"]
  assert ex["image"].shape == (H // 2, W // 2, 3)
  # Nearest neighbour with half-pixel centres takes source pixel floor((i + 0.5) * 2) = 2 i + 1.
  np.testing.assert_allclose(ex["depth"], _expected_depth(code)[1::2, 1::2], rtol=1e-6)
  np.testing.assert_array_equal(ex["segmentation"][..., 0], _expected_labels(ids)[1::2, 1::2])
  # Antialiased bilinear 2x reduction = separable [1, 3, 3, 1] / 8 filter (interior pixels; PIL's
  # fixed-point weights may differ by 1).
  x = rgb.astype(np.float64)
  taps = [(-1, 1 / 8), (0, 3 / 8), (1, 3 / 8), (2, 1 / 8)]
  cols = sum(w * x[:, 2 + 2 * np.arange(14) + d] for d, w in taps)  # output columns 1..14.
  expected = sum(w * cols[2 + 2 * np.arange(6) + d] for d, w in taps)  # output rows 1..6.
  assert np.abs(ex["image"][1:7, 1:15].astype(np.float64) - expected).max() <= 1.0
  # fx / 2 and (c + 0.5) / 2 - 0.5.
  np.testing.assert_allclose(ex["intrinsics"], [1000.0, 1005.0, 7.375, 3.625])


def test_missing_archive_is_named(tmp_path):
  _write_tree(tmp_path / "folders", {"train": FRAMES["train"][:1]})
  _zip_tree(tmp_path / "folders", tmp_path / "zips")
  (tmp_path / "zips" / "camera_trainvaltest.zip").unlink()
  with pytest.raises(FileNotFoundError) as info:
    _build(tmp_path / "zips", tmp_path / "data")
  msg = str(info.value)
  assert "1 required input(s) missing" in msg
  assert "camera_trainvaltest.zip (or folder camera/)" in msg
  assert "disparity_trainvaltest.zip (or" not in msg


def test_missing_frame_files_listed_in_one_error(tmp_path):
  _write_tree(tmp_path / "m", {"train": FRAMES["train"][:2]})
  gone = [
    tmp_path / "m/disparity/train/aachen/aachen_000000_000019_disparity.png",
    tmp_path / "m/camera/train/aachen/aachen_000001_000019_camera.json",
  ]
  for path in gone:
    path.unlink()
  with pytest.raises(FileNotFoundError) as info:
    _build(tmp_path / "m", tmp_path / "data")
  msg = str(info.value)
  assert "2 required file(s) missing" in msg
  for path in gone:
    assert str(path) in msg


def test_corrupt_png_in_archive_names_the_member(tmp_path):
  _write_tree(tmp_path / "folders", {"train": FRAMES["train"][:1]})
  bad = tmp_path / "folders/disparity/train/aachen/aachen_000000_000019_disparity.png"
  bad.write_bytes(bad.read_bytes()[:50])
  _zip_tree(tmp_path / "folders", tmp_path / "zips")
  member = "disparity_trainvaltest.zip:disparity/train/aachen/aachen_000000_000019_disparity.png"
  with pytest.raises(ValueError, match=re.escape(member) + ": cannot decode PNG"):
    _build(tmp_path / "zips", tmp_path / "data")


@pytest.mark.parametrize(
  "override, match",
  [
    ({"extrinsic__baseline": None}, "key 'extrinsic.baseline' must be a positive number, got None"),
    ({"intrinsic__fx": "2262"}, "key 'intrinsic.fx' must be a positive number, got '2262'"),
    ({"intrinsic__v0": float("nan")}, "key 'intrinsic.v0' must be a finite number, got nan"),
  ],
)
def test_bad_camera_json_names_the_file_and_key(tmp_path, override, match):
  _write_tree(tmp_path / "m", {"val": FRAMES["val"][:1]})
  bad = tmp_path / "m/camera/val/frankfurt/frankfurt_000000_000294_camera.json"
  bad.write_text(json.dumps(_camera(**override)))
  with pytest.raises(ValueError, match=re.escape(f"{bad}: camera json {match}")):
    _build(tmp_path / "m", tmp_path / "data")


def test_unparsable_camera_json_names_the_file(tmp_path):
  _write_tree(tmp_path / "m", {"val": FRAMES["val"][:1]})
  bad = tmp_path / "m/camera/val/frankfurt/frankfurt_000000_000294_camera.json"
  bad.write_text('{"extrinsic": {"baseline": 0.2,')
  with pytest.raises(ValueError, match=re.escape(f"{bad}: cannot read camera json")):
    _build(tmp_path / "m", tmp_path / "data")


def test_label_ids_above_33_name_the_file(tmp_path):
  _write_tree(tmp_path / "m", {"val": FRAMES["val"][:1]})
  bad = tmp_path / "m/gtFine/val/frankfurt/frankfurt_000000_000294_gtFine_labelIds.png"
  ids = np.full((H, W), 7, np.uint8)
  ids[3, 3] = 34
  _png(bad, ids)
  with pytest.raises(ValueError, match=re.escape(f"{bad}: label ids [34] outside 0..33")):
    _build(tmp_path / "m", tmp_path / "data")
