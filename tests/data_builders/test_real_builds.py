"""Builds the real data in ../shared/data with the replica, nyu_depth_v2_labeled and camvid builders.

Checks counts, units (stored metres against the raw PNG value / 1000 or / 5000), label conventions and the
toolbox class tables. About 20 s on an idle 2-core machine (replica 81 frames at 680 x 1200: ~9 s; camvid
367 frames: ~7 s; NYU joint frames: < 1 s).
"""

import json

import numpy as np
import pytest
import tensorflow_datasets as tfds
from PIL import Image
from scipy import io as sio

from data_builders.camvid import camvid_dataset_builder as cb
from data_builders.nyu_depth_v2_labeled import nyu_depth_v2_labeled_dataset_builder as nb
from data_builders.replica import meta as replica_meta
from data_builders.replica import replica_dataset_builder as rb
from semdepth_jax.data import meta

pytestmark = pytest.mark.real_data


def _build(cls, manual_dir, data_dir, config=None):
  builder = cls(data_dir=str(data_dir), config=config)
  builder.download_and_prepare(
    download_config=tfds.download.DownloadConfig(manual_dir=str(manual_dir)),
    file_format="array_record",
  )
  return builder


def _by_name(source):
  return {source[i]["file_name"].decode(): i for i in range(len(source))}


@pytest.fixture(scope="module")
def replica(shared_data, tmp_path_factory):
  return _build(rb.Builder, shared_data / "replica_office0", tmp_path_factory.mktemp("replica"))


def test_replica_counts_and_split_rule(replica):
  assert replica.info.splits["train"].num_examples == 60
  assert replica.info.splits["validation"].num_examples == 21
  train = _by_name(replica.as_data_source("train"))
  val = _by_name(replica.as_data_source("validation"))
  assert sorted(train) == [f"{i:04d}" for i in range(60)]
  assert sorted(val) == [f"{i:04d}" for i in range(60, 81)]


def test_replica_units_labels_intrinsics(replica, shared_data):
  root = shared_data / "replica_office0"
  source = replica.as_data_source("validation")
  ex = source[_by_name(source)["0065"]]
  raw_depth = np.array(Image.open(root / "depth_mm" / "0065.png"))
  raw_sem = np.array(Image.open(root / "semantic_class" / "0065.png"))
  assert ex["image"].shape == (680, 1200, 3) and ex["depth"].shape == (680, 1200)
  y, x = 340, 600
  assert raw_depth[y, x] > 0
  assert ex["depth"][y, x] == pytest.approx(int(raw_depth[y, x]) / 1000.0, rel=1e-6)
  np.testing.assert_array_equal(ex["depth"] == 0, raw_depth == 0)
  valid = ex["depth"][ex["depth"] > 0]
  assert valid.min() > 0.1 and valid.max() < 10.0  # an office, in metres.
  seg = ex["segmentation"][..., 0].astype(int)
  np.testing.assert_array_equal(seg == 255, raw_sem == 0)
  np.testing.assert_array_equal(seg[raw_sem > 0], raw_sem[raw_sem > 0].astype(int) - 1)
  assert set(np.unique(seg)) <= set(range(101)) | {255}
  np.testing.assert_allclose(ex["intrinsics"], replica_meta.INTRINSICS)
  names = json.loads((root / "classes_replica.json").read_text())
  assert names[str(seg[raw_sem > 0][0] + 1)] == replica_meta.CLASS_NAMES[seg[raw_sem > 0][0]]


@pytest.fixture(scope="module")
def nyu(shared_data, tmp_path_factory):
  data_dir = tmp_path_factory.mktemp("nyu")
  manual = shared_data / "nyu_depth_v2_samples"
  return {c: _build(nb.Builder, manual, data_dir, c) for c in ("40", "13")}


def test_nyu_joint_frames_units_and_labels(nyu, shared_data):
  joint = shared_data / "nyu_depth_v2_samples" / "joint"
  mapping = sio.loadmat(shared_data / "nyu_depth_v2_samples" / "meta" / "class13Mapping.mat")
  labels13 = mapping["classMapping13"][0, 0]["labels13"].ravel().astype(int)
  for config, builder in nyu.items():
    assert list(builder.info.splits) == ["test"]  # 433 and 464 are official test frames.
    source = builder.as_data_source("test")
    index = _by_name(source)
    assert sorted(index) == ["000433", "000464"]
    for frame, i in index.items():
      ex = source[i]
      raw_depth = np.array(Image.open(joint / f"depth_gt_{frame}.png"))
      raw_seg = np.array(Image.open(joint / f"segm_gt_{frame}.png")).astype(int)
      assert ex["image"].shape == (480, 640, 3)
      np.testing.assert_array_equal(ex["image"], np.array(Image.open(joint / f"{frame}.png")))
      y, x = 240, 320
      assert raw_depth[y, x] > 0
      assert ex["depth"][y, x] == pytest.approx(int(raw_depth[y, x]) / 5000.0, rel=1e-6)
      valid = ex["depth"][ex["depth"] > 0]
      assert valid.min() > 0.3 and valid.max() < 10.0
      seg = ex["segmentation"][..., 0].astype(int)
      if config == "40":
        np.testing.assert_array_equal(seg, raw_seg)
      else:
        expected = np.where(raw_seg == 255, 255, labels13[np.minimum(raw_seg, 39)] - 1)
        np.testing.assert_array_equal(seg, expected)
        assert set(np.unique(seg)) <= set(range(13)) | {255}
      np.testing.assert_allclose(ex["intrinsics"], meta.NYU_INTRINSICS)


def test_nyu_toolbox_tables_match_meta(shared_data):
  folder = shared_data / "nyu_depth_v2_samples" / "meta"
  mapping = sio.loadmat(folder / "class13Mapping.mat")["classMapping13"][0, 0]
  names13 = tuple(str(n[0]) for n in mapping["classNames"].ravel())
  assert names13 == meta.NYU13_CLASS_NAMES
  names40 = [str(n[0]) for n in sio.loadmat(folder / "classMapping40.mat")["className"].ravel()]
  assert [n.replace("refridgerator", "refrigerator") for n in names40] == list(
    meta.NYU40_CLASS_NAMES
  )
  train = sio.loadmat(folder / "splits.mat")["trainNdxs"].ravel()
  assert len(train) == 795 and 433 not in train and 464 not in train


@pytest.fixture(scope="module")
def camvid(shared_data, tmp_path_factory):
  return _build(cb.Builder, shared_data / "camvid", tmp_path_factory.mktemp("camvid"))


def test_camvid_counts_and_labels(camvid, shared_data):
  assert list(camvid.info.splits) == ["train"]
  source = camvid.as_data_source("train")
  assert len(source) == 367
  ex = source[0]  # decoding all 367 to find one name would double the test's time.
  name = ex["file_name"].decode()
  raw = np.array(Image.open(shared_data / "camvid" / "trainannot" / f"{name}.png")).astype(int)
  np.testing.assert_array_equal(
    ex["image"], np.array(Image.open(shared_data / "camvid" / "train" / f"{name}.png"))
  )
  np.testing.assert_array_equal(ex["segmentation"][..., 0], np.where(raw == 11, 255, raw))
  assert ex["image"].shape == (360, 480, 3)
  assert not bool(ex["has_depth"]) and not ex["depth"].any()
