"""HybridNet A1 and A2 at ``size=tiny`` learn on real frames: Replica office_0 (../shared/data).

The replica TFDS dataset is built into a temporary folder (frames 0-59 train, 60-80 validation) as in
tests/train/test_real_data.py. To keep the test short the decoded frames are downscaled once, 4x (680 x 1200
-> 170 x 300; RGB bilinear, depth and labels nearest, ``transforms.resize``), and the training loop reads
them from memory (``pipeline.train_dataset`` over that list instead of re-decoding full-resolution PNGs
every step). The presets' own resize-to-cover then scales them to 65 x 115 before the 65 x 97 crops, the
same geometry as from the stored frames. Everything else is the shipped ``configs/hybridnet.py:model=a1|a2,
dataset=replica,size=tiny`` through the real loop (A2: global-net pre-training, then joint training).

The baselines and metrics are computed here, independently of the library, on the 21 validation frames at
170 x 300: the mean training depth everywhere and the majority training class everywhere; numpy depth
metrics of docs/model_spec.md §8.1 per image, mIoU / pixel accuracy from one confusion matrix (§8.3).
The thresholds are the baselines themselves. Over 3 seeds (``benchmarks/hybridnet_compare.py --datasets
replica --seeds 3 --size tiny --train_size replica=170,300``, the same in-memory frames) every A1 and A2 seed
beat both baselines on abs_rel, rmse, delta1, mIoU and pixel accuracy (A1 mIoU 0.089 ± 0.025, A2 0.071 ±
0.007, baseline 0.023; abs_rel 0.356 ± 0.040, 0.358 ± 0.020, baseline 0.459).
"""

import dataclasses
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from semdepth_jax import predict
from semdepth_jax.data import pipeline, transforms
from semdepth_jax.train import config_utils, loop

pytestmark = [pytest.mark.real_data, pytest.mark.slow]

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
CONFIG = os.path.join(REPO, "configs", "hybridnet.py")
MIN_DEPTH, MAX_DEPTH = 1e-3, 10.0  # get_meta('replica') validity range.
IGNORE = 255
NUM_CLASSES = 101
SMALL = (170, 300)  # 1/4 of the stored 680 x 1200


@pytest.fixture(scope="module")
def replica(shared_data, tmp_path_factory):
  """Builds replica in a temporary TFDS dir; returns (data_dir, train list, validation list, stats)."""
  data_dir = str(tmp_path_factory.mktemp("tfds"))
  loop.ensure_dataset("replica", data_dir, manual_dir=shared_data / "replica_office0")
  frames = {}
  for split in ("train", "validation"):
    source = pipeline.open_source("replica", split, data_dir)
    frames[split] = [transforms.resize(dict(source[i]), SMALL) for i in range(len(source))]
  train = frames["train"]
  depth = np.concatenate([np.ravel(e["depth"]) for e in train]).astype(np.float64)
  depth = depth[(depth > MIN_DEPTH) & (depth < MAX_DEPTH)]
  labels = np.concatenate([np.ravel(e["segmentation"]) for e in train])
  hist = np.bincount(labels[labels != IGNORE], minlength=NUM_CLASSES)
  stats = {"mean_depth": float(depth.mean()), "majority": int(np.argmax(hist))}
  return data_dir, train, frames["validation"], stats


def _train(model, data_dir, train_frames, workdir):
  cfg = config_utils.load_config(
    f"{CONFIG}:model={model},dataset=replica,size=tiny",
    [
      f"--config.data_dir={data_dir}",
      "--config.mesh_shape=(1, 1)",
      "--config.progress_bar=False",
      "--config.data.num_threads=0",
      "--config.eval.split=",  # the test evaluates on its own (independent numpy metrics)
    ],
  )
  comps = loop.default_components(cfg)
  augment = loop._augment_dict(cfg)

  def train_iterator(batch_size, seed):
    ds = pipeline.train_dataset(
      train_frames,
      batch_size=batch_size,
      image_size=tuple(cfg.image_size),
      seed=seed,
      augment=augment,
    )
    return pipeline.to_iterator(ds, num_threads=0, prefetch=0)

  comps = dataclasses.replace(comps, train_iterator=train_iterator)
  return cfg, loop.train(cfg, workdir, components=comps)


def _depth_scores(pred, gt):
  """Per-image abs_rel, rmse, rmse_log, delta1 (numpy, docs/model_spec.md §8.1)."""
  out = []
  for p, g in zip(pred, gt, strict=True):
    v = (g > MIN_DEPTH) & (g < MAX_DEPTH)
    p = np.clip(p[v].astype(np.float64), MIN_DEPTH, MAX_DEPTH)
    g = g[v].astype(np.float64)
    out.append(
      (
        np.mean(np.abs(p - g) / g),
        np.sqrt(np.mean((p - g) ** 2)),
        np.sqrt(np.mean((np.log(p) - np.log(g)) ** 2)),
        np.mean(np.maximum(p / g, g / p) < 1.25),
      )
    )
  return np.mean(out, axis=0)


def _confusion(gt, pred):
  ok = gt != IGNORE
  idx = gt[ok].astype(np.int64) * NUM_CLASSES + pred[ok]
  return np.bincount(idx, minlength=NUM_CLASSES**2).reshape(NUM_CLASSES, NUM_CLASSES)


def _miou_acc(conf):
  tp = np.diag(conf).astype(np.float64)
  union = conf.sum(0) + conf.sum(1) - tp
  return float(np.mean(tp[union > 0] / union[union > 0])), float(tp.sum() / conf.sum())


@pytest.mark.parametrize("model", ["a1", "a2"])
def test_hybridnet_tiny_beats_trivial_baselines(replica, tmp_path, record_property, model):
  data_dir, train_frames, val_frames, stats = replica
  cfg, result = _train(model, data_dir, train_frames, tmp_path)
  inference = predict.InferenceModel(result.model, input_size=tuple(cfg.image_size))
  batch = pipeline.collate([transforms.to_float(e) for e in val_frames])
  out = jax.device_get(
    jax.jit(inference.dense)(result.state.variables(), jnp.asarray(batch["image"]))
  )
  gt_depth, gt_seg = batch["depth"], batch["segmentation"]
  assert out["depth"].shape == gt_depth.shape == (21, *SMALL)
  names = ("abs_rel", "rmse", "rmse_log", "delta1")
  got = dict(zip(names, _depth_scores(out["depth"], gt_depth), strict=True))
  base = dict(
    zip(names, _depth_scores(np.full_like(gt_depth, stats["mean_depth"]), gt_depth), strict=True)
  )
  miou, acc = _miou_acc(_confusion(gt_seg, np.argmax(out["probs"], axis=-1)))
  base_miou, base_acc = _miou_acc(_confusion(gt_seg, np.full_like(gt_seg, stats["majority"])))
  for k in names:
    record_property(k, float(got[k]))
    record_property("base_" + k, float(base[k]))
  record_property("miou", miou)
  record_property("pixel_acc", acc)
  print(
    f"{model} tiny: "
    + ", ".join(f"{k} {got[k]:.3f} (baseline {base[k]:.3f})" for k in names)
    + f", miou {miou:.4f} ({base_miou:.4f}), pixel_acc {acc:.3f} ({base_acc:.3f})"
  )
  for k in names[:3]:
    assert got[k] < base[k], k
  assert got["delta1"] > base["delta1"]
  assert miou > base_miou
  assert acc > base_acc
