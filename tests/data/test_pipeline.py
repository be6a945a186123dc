"""Tests of semdepth_jax.data.pipeline: determinism, sharding, eval padding, resumption, global batches."""

import json
import math

import numpy as np
import pytest
import tensorflow_datasets as tfds

import data_builders
from data_builders import common
from semdepth_jax.data import pipeline
from semdepth_jax.data import transforms as tr

H, W = 12, 16


def make_example(i, h=H, w=W):
  """Stored-format example whose identity is its depth value i + 1 (also in file_name)."""
  rng = np.random.default_rng(i)
  return {
    "image": rng.integers(0, 256, (h, w, 3), dtype=np.uint8),
    "depth": np.full((h, w), i + 1.0, np.float32),
    "segmentation": rng.integers(0, 5, (h, w, 1), dtype=np.uint8),
    "has_depth": True,
    "has_segmentation": bool(i % 2),
    "intrinsics": np.asarray([10.0, 10.0, 7.5, 5.5], np.float32),
    "file_name": f"{i:03d}".encode(),
  }


def source(n):
  return [make_example(i) for i in range(n)]


NO_JITTER = {"flip": True, "resize": None}


def ids(batch):
  """Example identities of a train/eval batch (depth is constant = id + 1 when unscaled)."""
  return [int(round(d.max())) - 1 for d in batch["depth"]]


def take(it, n):
  return [next(it) for _ in range(n)]


def assert_batches_equal(a, b):
  assert len(a) == len(b)
  for x, y in zip(a, b, strict=True):
    assert x.keys() == y.keys()
    for key in x:
      np.testing.assert_array_equal(x[key], y[key], err_msg=key)


# ---------------------------------------------------------------------------------------------------------
# sharding and layout


@pytest.mark.parametrize("n", [0, 1, 7, 11])
@pytest.mark.parametrize("count", [1, 2, 3])
def test_shard_indices_disjoint_and_complete(n, count):
  shards = [pipeline.shard_indices(n, p, count) for p in range(count)]
  allidx = np.concatenate(shards)
  assert sorted(allidx.tolist()) == list(range(n))
  assert max(len(s) for s in shards) - min(len(s) for s in shards) <= 1


def test_process_layout_defaults_and_errors():
  assert pipeline.process_layout() == (0, 1)  # jax.process_index(), jax.process_count()
  assert pipeline.process_layout(1, 2) == (1, 2)
  with pytest.raises(ValueError, match="process_index"):
    pipeline.process_layout(2, 2)
  with pytest.raises(ValueError, match="multiple of the process count"):
    pipeline.per_process_batch_size(6, 4)
  assert pipeline.per_process_batch_size(8, 4) == 2


# ---------------------------------------------------------------------------------------------------------
# training stream


def test_train_batch_format():
  ds = pipeline.train_dataset(
    source(5), batch_size=2, image_size=(8, 10), augment=tr.EIGEN_AUGMENT, process_count=1,
    process_index=0,
  )  # fmt: skip
  b = ds[0]
  assert set(b) == set(pipeline.BATCH_KEYS)
  assert b["image"].shape == (2, 8, 10, 3) and b["image"].dtype == np.float32
  assert b["image"].min() >= 0.0 and b["image"].max() <= 1.0
  assert b["depth"].shape == (2, 8, 10) and b["depth"].dtype == np.float32
  assert b["segmentation"].shape == (2, 8, 10) and b["segmentation"].dtype == np.int32
  for key in ("has_depth", "has_segmentation", "mask"):
    assert b[key].shape == (2,) and b[key].dtype == np.bool_
  assert b["mask"].all()
  assert b["intrinsics"].shape == (2, 4) and b["intrinsics"].dtype == np.float32


def test_train_deterministic_and_independent_of_threads():
  kwargs = dict(batch_size=3, image_size=(8, 12), seed=5, augment=tr.EIGEN_AUGMENT)
  kwargs.update(process_index=0, process_count=1)
  a = take(pipeline.to_iterator(pipeline.train_dataset(source(11), **kwargs), num_threads=0), 6)
  b = take(pipeline.to_iterator(pipeline.train_dataset(source(11), **kwargs), num_threads=3), 6)
  assert_batches_equal(a, b)
  kwargs["seed"] = 6
  c = take(pipeline.to_iterator(pipeline.train_dataset(source(11), **kwargs), num_threads=0), 6)
  assert not all(np.array_equal(x["image"], y["image"]) for x, y in zip(a, c, strict=True))


def test_train_shards_disjoint_complete_and_reshuffled_each_epoch():
  n, count = 11, 2
  seen = []
  for p in range(count):
    shard = pipeline.shard_indices(n, p, count)
    ds = pipeline.train_dataset(
      source(n), batch_size=1, image_size=(H, W), augment=NO_JITTER, seed=3, process_index=p,
      process_count=count,
    )  # fmt: skip
    stream = [ids(ds[i])[0] for i in range(2 * len(shard))]
    epoch0, epoch1 = stream[: len(shard)], stream[len(shard) :]
    assert sorted(epoch0) == shard.tolist()  # each epoch is a permutation of the shard
    assert sorted(epoch1) == shard.tolist()
    assert epoch0 != epoch1  # reshuffled
    seen.append(set(epoch0))
  assert not seen[0] & seen[1]
  assert seen[0] | seen[1] == set(range(n))


def test_train_finite_epochs_give_equal_batch_counts():
  counts = []
  for p in range(2):
    ds = pipeline.train_dataset(
      source(11), batch_size=2, image_size=(8, 8), num_epochs=2, process_index=p, process_count=2
    )
    counts.append(len(list(pipeline.to_iterator(ds))))
  # 2 epochs * (11 // 2) examples // 2 per batch = 5 on both processes (shards of 6 and 5 examples).
  assert counts == [5, 5]


def test_augmentation_seeded_by_example_and_epoch_not_by_layout():
  """The same example in the same epoch is augmented identically whatever the process layout."""
  kwargs = dict(batch_size=1, image_size=(8, 12), seed=9, augment={**NO_JITTER, "jitter": True})

  def first_epoch(p, count):
    ds = pipeline.train_dataset(source(6), process_index=p, process_count=count, **kwargs)
    out = {}
    for i in range(len(pipeline.shard_indices(6, p, count))):
      b = ds[i]
      out[ids(b)[0]] = b["image"][0]
    return out

  single = first_epoch(0, 1)
  split = {**first_epoch(0, 2), **first_epoch(1, 2)}
  assert single.keys() == split.keys() == set(range(6))
  for k in single:
    np.testing.assert_array_equal(single[k], split[k])
  # A new epoch draws new augmentations for the same example.
  ds = pipeline.train_dataset(source(6), process_index=0, process_count=1, **kwargs)
  second = {ids(ds[i])[0]: ds[i]["image"][0] for i in range(6, 12)}
  assert second.keys() == single.keys()
  assert all(not np.array_equal(single[k], second[k]) for k in single)


def test_train_rejects_tiny_splits():
  with pytest.raises(ValueError, match="fewer than the 3 processes"):
    pipeline.train_dataset(
      source(2), batch_size=1, image_size=(4, 4), process_index=0, process_count=3
    )
  with pytest.raises(ValueError, match="do not fill one batch"):
    pipeline.train_dataset(
      source(3), batch_size=4, image_size=(4, 4), num_epochs=1, process_index=0, process_count=1
    )


# ---------------------------------------------------------------------------------------------------------
# evaluation


@pytest.mark.parametrize(("n", "count", "batch"), [(11, 2, 4), (7, 3, 2), (5, 1, 4), (2, 3, 1)])
def test_eval_padding_counts_every_example_once(n, count, batch):
  names, num_batches = [], []
  for p in range(count):
    ds = pipeline.eval_dataset(
      source(n), batch_size=batch, image_size=(6, 8), process_index=p, process_count=count
    )
    batches = list(pipeline.to_iterator(ds))
    num_batches.append(len(batches))
    for b in batches:
      assert b["image"].shape == (batch, 6, 8, 3)
      names += b["file_name"][b["mask"]].tolist()
      pad = ~b["mask"]
      assert (b["file_name"][pad] == "").all()
      assert (b["depth"][pad] == 0).all() and (b["segmentation"][pad] == 255).all()
      assert not b["has_depth"][pad].any() and not b["has_segmentation"][pad].any()
  assert sorted(names) == [f"{i:03d}" for i in range(n)]
  # Every process runs the same number of steps: ceil(ceil(n / count) / batch).
  expected = math.ceil(math.ceil(n / count) / batch)
  assert num_batches == [expected] * count
  assert pipeline.num_eval_batches(n, batch, count) == expected


def test_eval_examples_in_order_and_unaugmented():
  src = source(5)
  ds = pipeline.eval_dataset(src, batch_size=2, process_index=0, process_count=1)
  batches = list(pipeline.to_iterator(ds))
  images = np.concatenate([b["image"] for b in batches])[:5]
  np.testing.assert_array_equal(images, np.stack([e["image"] for e in src]) / np.float32(255.0))
  seg = np.concatenate([b["segmentation"] for b in batches])[:5]
  np.testing.assert_array_equal(seg, np.stack([e["segmentation"][..., 0] for e in src]))
  flags = np.concatenate([b["has_segmentation"] for b in batches])[:5]
  assert flags.tolist() == [False, True, False, True, False]


def test_eval_native_size_requires_one_size():
  src = source(2) + [make_example(2, h=10)]
  ds = pipeline.eval_dataset(src, batch_size=3, process_index=0, process_count=1)
  with pytest.raises(ValueError, match="different sizes"):
    ds[0]


# ---------------------------------------------------------------------------------------------------------
# checkpointing


@pytest.mark.parametrize("threads", [0, 2])
def test_train_iterator_state_resumes_identically(threads):
  def make():
    ds = pipeline.train_dataset(
      source(11), batch_size=3, image_size=(8, 12), seed=1, augment=tr.EIGEN_AUGMENT,
      process_index=0, process_count=1,
    )  # fmt: skip
    return pipeline.to_iterator(ds, num_threads=threads)

  it = make()
  take(it, 3)
  state = it.get_state()
  json.dumps(state)  # small and serialisable (saved next to the model checkpoint)
  expected = take(it, 5)  # crosses the epoch boundary at example 11
  resumed = make()
  resumed.set_state(json.loads(json.dumps(state)))
  assert_batches_equal(take(resumed, 5), expected)


def test_eval_iterator_state_resumes_identically():
  ds = pipeline.eval_dataset(source(9), batch_size=2, process_index=0, process_count=1)
  it = pipeline.to_iterator(ds)
  next(it)
  state = it.get_state()
  rest = list(it)
  it2 = pipeline.to_iterator(ds)
  it2.set_state(state)
  assert_batches_equal(list(it2), rest)


# ---------------------------------------------------------------------------------------------------------
# global arrays on 8 fake devices


@pytest.mark.multidevice
@pytest.mark.parametrize("shape", [(8, 1), (4, 2)])
def test_make_global_batch(shape):
  import jax
  from jax.sharding import AxisType, NamedSharding, PartitionSpec

  assert jax.device_count() == 8
  mesh = jax.make_mesh(shape, ("data", "model"), axis_types=(AxisType.Auto,) * 2)
  ds = pipeline.eval_dataset(
    source(7), batch_size=8, image_size=(4, 6), process_index=0, process_count=1
  )
  batch = ds[0]
  glob = pipeline.make_global_batch(batch, mesh)
  assert "file_name" not in glob
  assert set(glob) == set(pipeline.BATCH_KEYS)
  rows_per_shard = 8 // shape[0]
  for key, arr in glob.items():
    assert isinstance(arr.sharding, NamedSharding)
    assert arr.sharding.spec == PartitionSpec("data")
    assert arr.shape == batch[key].shape and arr.dtype == batch[key].dtype
    np.testing.assert_array_equal(np.asarray(arr), batch[key])
    assert len(arr.addressable_shards) == 8
    for shard in arr.addressable_shards:
      start = shard.index[0].start or 0
      assert shard.data.shape[0] == rows_per_shard
      np.testing.assert_array_equal(
        np.asarray(shard.data), batch[key][start : start + rows_per_shard]
      )
  assert not np.asarray(glob["mask"]).all()  # 7 examples + 1 padding
  with pytest.raises(ValueError, match="no 'batch' axis"):
    pipeline.make_global_batch(batch, mesh, data_axis="batch")


# ---------------------------------------------------------------------------------------------------------
# the real TFDS path: a tiny builder with the shared feature spec, built into tmp_path


class SemdepthPipelineTestDs(tfds.core.GeneratorBasedBuilder):
  """Tiny dataset in the stored format of data_builders/common.py (7 train, 5 test examples)."""

  VERSION = tfds.core.Version("1.0.0")
  RELEASE_NOTES = {"1.0.0": "Test data."}

  def _info(self):
    return tfds.core.DatasetInfo(builder=self, features=common.example_features())

  def _split_generators(self, dl_manager):
    del dl_manager
    return {"train": self._generate_examples(0, 7), "test": self._generate_examples(100, 5)}

  def _generate_examples(self, start, n):
    for i in range(start, start + n):
      ex = make_example(i)
      yield (
        f"{i:03d}",
        common.make_example(
          image=ex["image"],
          depth=ex["depth"],
          segmentation=ex["segmentation"][..., 0] if ex["has_segmentation"] else None,
          intrinsics=ex["intrinsics"],
          file_name=f"{i:03d}",
          num_classes=5,
          source=f"test example {i}",
        ),
      )


NAME = "semdepth_pipeline_test_ds"


# Test builders are not part of the project's dataset list: register them explicitly.
data_builders.register_builder(NAME, SemdepthPipelineTestDs)


@pytest.fixture(scope="module")
def built_dir(tmp_path_factory):
  data_dir = tmp_path_factory.mktemp("tfds")
  SemdepthPipelineTestDs(data_dir=str(data_dir)).download_and_prepare(
    file_format="array_record",
    download_config=tfds.download.DownloadConfig(try_download_gcs=False),
  )
  return str(data_dir)


def test_tfds_source_roundtrip_through_pipeline(built_dir):
  assert pipeline.num_examples(NAME, "train", built_dir) == 7
  it = pipeline.make_train_iterator(
    NAME, data_dir=built_dir, batch_size=2, image_size=(8, 12), seed=0, augment=tr.EIGEN_AUGMENT,
    process_index=0, process_count=1,
  )  # fmt: skip
  b = next(it)
  assert b["image"].shape == (2, 8, 12, 3) and b["segmentation"].dtype == np.int32
  # Scale augmentation divides the constant depth id + 1 by s in [1, 1.5].
  d = b["depth"].reshape(2, -1).max(axis=1)
  assert ((d > 0) & (d <= 7)).all()

  # 5 test examples over 2 processes, global batch 8 (4 per process): one padded batch each.
  names = []
  for p in range(2):
    batches = list(
      pipeline.make_eval_iterator(
        NAME, data_dir=built_dir, split="test", batch_size=8, process_index=p, process_count=2
      )
    )
    assert len(batches) == 1
    b = batches[0]
    assert b["mask"].tolist() == [True] * (3 - p) + [False] * (1 + p)
    for k in np.flatnonzero(b["mask"]):
      name = str(b["file_name"][k])
      names.append(name)
      expected = make_example(int(name))  # TFDS stores examples in key-hash order
      np.testing.assert_array_equal(b["depth"][k], expected["depth"])
      seg = expected["segmentation"][..., 0] if expected["has_segmentation"] else 255
      np.testing.assert_array_equal(b["segmentation"][k], np.broadcast_to(seg, (H, W)))
      np.testing.assert_array_equal(b["image"][k], expected["image"] / np.float32(255.0))
      assert b["has_segmentation"][k] == expected["has_segmentation"]
  assert sorted(names) == ["100", "101", "102", "103", "104"]


def test_missing_dataset_error_gives_build_command(tmp_path):
  with pytest.raises(FileNotFoundError) as info:
    pipeline.make_train_iterator(
      NAME, data_dir=str(tmp_path), batch_size=2, image_size=(8, 8), process_index=0,
      process_count=1,
    )  # fmt: skip
  assert f"semdepth data build --dataset {NAME} --data_dir {tmp_path}" in str(info.value)
  with pytest.raises(KeyError, match="unknown dataset 'no_such_dataset'"):
    pipeline.num_examples("no_such_dataset", "train", str(tmp_path))


def test_build_command_mentions_manual_dir_when_needed():
  assert pipeline.build_command("x_ds", "/d", manual=True) == (
    "semdepth data build --dataset x_ds --manual_dir DIR --data_dir /d"
  )
  assert pipeline.build_command(NAME, "/d") == f"semdepth data build --dataset {NAME} --data_dir /d"


def test_synthetic_city_tiny_through_pipeline(tmp_path):
  pytest.importorskip("data_builders.synthetic_city.synthetic_city_dataset_builder")
  import data_builders

  data_dir = str(tmp_path)
  data_builders.get_builder_class("synthetic_city")(
    config="tiny", data_dir=data_dir
  ).download_and_prepare(download_config=tfds.download.DownloadConfig(try_download_gcs=False))
  name = "synthetic_city/tiny"
  assert pipeline.num_examples(name, "train", data_dir) == 16
  it = pipeline.make_train_iterator(
    name, data_dir=data_dir, batch_size=4, image_size=(40, 64), seed=0, augment=tr.EIGEN_AUGMENT,
    process_index=0, process_count=1,
  )  # fmt: skip
  sky = 1  # SSEGDEP_CLASS_NAMES[1]; sky has no depth (stored 0)
  for b in take(it, 2):
    assert b["image"].shape == (4, 40, 64, 3)
    seg, depth = b["segmentation"], b["depth"]
    assert (seg != 255).all()  # cover resize + scale >= 1: the crop never needs padding
    # Labels and depth stay aligned through scale / crop / flip: sky pixels never get a depth.
    assert (depth[seg == sky] == 0).all()
    assert (depth[depth > 0] <= 80.0).all()
  names = []
  for b in pipeline.make_eval_iterator(
    name, data_dir=data_dir, split="validation", batch_size=3, process_index=0, process_count=1
  ):
    names += b["file_name"][b["mask"]].tolist()
  assert sorted(names) == [f"validation_{i:05d}" for i in range(8)]


def test_mixture_interleaves_by_weight_and_drops_labels_of_other_label_sets():
  a = [dict(make_example(i), has_segmentation=True) for i in range(5)]  # ids 0..4
  b = [dict(make_example(i), has_segmentation=True) for i in range(100, 107)]  # ids 100..106
  ds = pipeline.mixture_train_dataset(
    [a, b], [1.0, 3.0], batch_size=4, image_size=(H, W), seed=3, augment={"resize": None},
    keep_labels=[True, False], process_index=0, process_count=1,
  )  # fmt: skip
  batches = [ds[i] for i in range(6)]
  seen = [i for bt in batches for i in ids(bt)]
  from_a = [i for i in seen if i < 100]
  assert len(from_a) == 6 and len(seen) - len(from_a) == 18  # 1 : 3 over 24 examples
  assert sorted(set(from_a)) == [0, 1, 2, 3, 4] and set(seen) - set(from_a) <= set(range(100, 107))
  for bt in batches:
    for k, i in enumerate(ids(bt)):
      if i >= 100:  # the second member's labels are dropped, its depth kept
        assert not bt["has_segmentation"][k] and (bt["segmentation"][k] == 255).all()
      else:
        assert bt["has_segmentation"][k]
  # Deterministic in the position (resumable): the same batch again.
  np.testing.assert_array_equal(ds[4]["depth"], batches[4]["depth"])
  with pytest.raises(ValueError, match="weights must be > 0"):
    pipeline.mixture_train_dataset([a], [0.0], batch_size=2, image_size=(H, W))
