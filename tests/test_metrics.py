"""Tests of semdepth_jax.metrics against hand-worked cases and independent numpy references.

The references below are written from the definitions in model_spec §8 (plain numpy, float64, per image
loops); none of them calls the code under test.
"""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.sharding import AxisType, NamedSharding
from jax.sharding import PartitionSpec as P

from semdepth_jax import metrics as mt
from semdepth_jax.data import meta

DIFFERENTIABLE_KEYS = (
  "abs_rel",
  "sq_rel",
  "rmse",
  "rmse_log",
  "log10",
  "silog",
  "sie",
  "mae",
  "irmse",
  "mse",
  "sq_rel_kitti",
)


# ----------------------------------------------------------------------------------------------------------
# Independent numpy references.
# ----------------------------------------------------------------------------------------------------------
def ref_pixels(p, y):
  """All metrics of one set of valid pixels (1-D float64 arrays, p > 0, y > 0)."""
  th = np.maximum(y / p, p / y)
  d = p - y
  e = np.log(p) - np.log(y)
  sie = np.mean(e**2) - np.mean(e) ** 2
  return {
    "delta1": np.mean(th < 1.25),
    "delta2": np.mean(th < 1.25**2),
    "delta3": np.mean(th < 1.25**3),
    "abs_rel": np.mean(np.abs(d) / y),
    "sq_rel": np.mean(d**2 / y),
    "rmse": np.sqrt(np.mean(d**2)),
    "rmse_log": np.sqrt(np.mean(e**2)),
    "log10": np.mean(np.abs(np.log10(p) - np.log10(y))),
    "silog": 100 * np.sqrt(sie),
    "sie": sie,
    "mae": np.mean(np.abs(d)),
    "irmse": np.sqrt(np.mean((1000 / p - 1000 / y) ** 2)),
    "mse": np.mean(d**2),
    "sq_rel_kitti": np.mean((d / y) ** 2),
  }


def ref_depth(pred, gt, *, min_depth=1e-3, max_depth=None, crop=None, per_image=True):
  pred = np.asarray(pred, np.float64)
  gt = np.asarray(gt, np.float64)
  hi = np.inf if max_depth is None else max_depth
  ps, ys = [], []
  for i in range(gt.shape[0]):
    g, p = gt[i], pred[i]
    keep = np.zeros(g.shape, bool)
    if crop is None:
      keep[:] = True
    else:
      t, b, l, r = crop
      keep[t:b, l:r] = True
    with np.errstate(invalid="ignore"):
      valid = keep & np.isfinite(g) & (g > min_depth) & (g < hi)
    if valid.any():
      ys.append(g[valid])
      ps.append(np.clip(np.nan_to_num(p[valid], nan=min_depth), min_depth, hi))
  if not ys:
    return None
  if per_image:
    per = [ref_pixels(p, y) for p, y in zip(ps, ys, strict=True)]
    return {k: np.mean([m[k] for m in per]) for k in per[0]}
  return ref_pixels(np.concatenate(ps), np.concatenate(ys))


def random_depth(seed, shape=(4, 9, 11), invalid_frac=0.2):
  rng = np.random.default_rng(seed)
  gt = rng.uniform(0.3, 12.0, shape).astype(np.float32)
  gt[rng.random(shape) < invalid_frac] = 0.0
  gt[rng.random(shape) < 0.05] = np.nan
  pred = np.nan_to_num(gt, nan=3.0) * rng.uniform(0.7, 1.4, shape) + rng.uniform(0, 0.5, shape)
  return pred.astype(np.float32), gt


def assert_metrics_close(got, want, keys, rtol=2e-5, atol=1e-6):
  for k in keys:
    assert got[k] == pytest.approx(want[k], rel=rtol, abs=atol), k


# ----------------------------------------------------------------------------------------------------------
# Depth metrics: hand-worked cases.
# ----------------------------------------------------------------------------------------------------------
def test_depth_metrics_hand_worked_2x2():
  # Valid pixels (y, p): (1, 1), (2, 1), (4, 5); the 0 is invalid.
  gt = np.array([[[1.0, 2.0], [4.0, 0.0]]], np.float32)
  pred = np.array([[[1.0, 1.0], [5.0, 3.0]]], np.float32)
  m = mt.depth_metrics(pred, gt)
  assert set(m) == set(mt.DEPTH_METRIC_KEYS)
  e1, e2 = math.log(1 / 2), math.log(5 / 4)
  mean_e, mean_e2 = (e1 + e2) / 3, (e1**2 + e2**2) / 3
  expected = {
    "delta1": 1 / 3,  # ratios 1, 2, 1.25; 1.25 is not < 1.25.
    "delta2": 2 / 3,
    "delta3": 2 / 3,
    "abs_rel": (0 + 1 / 2 + 1 / 4) / 3,
    "sq_rel": (0 + 1 / 2 + 1 / 4) / 3,
    "rmse": math.sqrt(2 / 3),
    "rmse_log": math.sqrt(mean_e2),
    "log10": (math.log10(2) + math.log10(5 / 4)) / 3,
    "sie": mean_e2 - mean_e**2,
    "silog": 100 * math.sqrt(mean_e2 - mean_e**2),
    "mae": 2 / 3,
    "irmse": math.sqrt((500**2 + 50**2) / 3),  # 1000/p - 1000/y = 0, 500, -50 (1/km).
  }
  assert_metrics_close(m, expected, mt.DEPTH_METRIC_KEYS, rtol=1e-5)


def test_per_image_vs_pooled_and_empty_images_excluded():
  # Image A: one valid pixel with abs_rel 0.5; image B: three perfect pixels; image C: nothing valid.
  gt = np.zeros((3, 2, 2), np.float32)
  pred = np.ones((3, 2, 2), np.float32)
  gt[0, 0, 0], pred[0, 0, 0] = 2.0, 1.0
  gt[1, :, :3] = 3.0
  gt[1, 1, 1] = 0.0
  pred[1] = 3.0
  per = mt.depth_metrics(pred, gt)
  pooled = mt.depth_metrics(pred, gt, per_image=False)
  assert per["abs_rel"] == pytest.approx((0.5 + 0.0) / 2)  # C is excluded, not counted as 0.
  assert pooled["abs_rel"] == pytest.approx(0.5 / 4)
  assert per["delta1"] == pytest.approx((0 + 1) / 2)
  assert pooled["delta1"] == pytest.approx(3 / 4)
  none = mt.depth_metrics(pred, np.zeros_like(gt))
  assert all(math.isnan(v) for v in none.values())


def test_prediction_is_clamped_and_max_depth_masks():
  gt = np.array([[[5.0, 12.0, 0.0005]]], np.float32)
  pred = np.array([[[20.0, 5.0, 1.0]]], np.float32)
  m = mt.depth_metrics(pred, gt, max_depth=10.0)
  # Only y = 5 is valid (12 >= 10, 0.0005 <= 1e-3); p = 20 is clamped to 10.
  assert m["abs_rel"] == pytest.approx(1.0)
  assert m["rmse"] == pytest.approx(5.0)
  nan_pred = mt.depth_metrics(np.full((1, 1, 1), np.nan, np.float32), np.full((1, 1, 1), 2.0))
  assert nan_pred["abs_rel"] == pytest.approx((2.0 - 1e-3) / 2.0)  # NaN -> min_depth.


@pytest.mark.parametrize("per_image", [True, False])
@pytest.mark.parametrize("crop,max_depth", [(None, None), ((2, 8, 1, 10), 10.0)])
def test_depth_metrics_against_numpy_reference(per_image, crop, max_depth):
  pred, gt = random_depth(0)
  got = mt.depth_metrics(pred, gt, max_depth=max_depth, crop=crop, per_image=per_image)
  want = ref_depth(pred, gt, max_depth=max_depth, crop=crop, per_image=per_image)
  assert_metrics_close(got, want, mt.DEPTH_METRIC_KEYS, rtol=1e-4)


def test_shapes_with_channel_axis_and_errors():
  pred, gt = random_depth(1, shape=(2, 5, 6))
  a = mt.depth_metrics(pred[..., None], gt[..., None])
  b = mt.depth_metrics(pred, gt)
  assert a == b
  with pytest.raises(ValueError, match="resize the prediction"):
    mt.depth_metrics(pred[:, :4], gt)
  with pytest.raises(ValueError, match=r"\(B, H, W\)"):
    mt.depth_metrics(pred[0], gt[0])


# ----------------------------------------------------------------------------------------------------------
# Crops.
# ----------------------------------------------------------------------------------------------------------
def test_crop_presets_resolve_to_known_pixel_bounds():
  assert mt.resolve_crop("nyu_eigen", 480, 640) == (45, 471, 41, 601)
  assert mt.resolve_crop("nyu_md2", 480, 640) == (20, 459, 24, 615)
  # Scaled: floor(45 * 240 / 480) = 22, floor(471 / 2) = 235, floor(41 / 2) = 20, floor(601 / 2) = 300.
  assert mt.resolve_crop("nyu_eigen", 240, 320) == (22, 235, 20, 300)
  # The MD2 Garg crop of a 375x1242 KITTI image is rows 153:371, cols 44:1197.
  assert mt.resolve_crop("kitti_garg", 375, 1242) == (153, 371, 44, 1197)
  # Eigen: 0.3324324 * 375 = 124.66, 0.91351351 * 375 = 342.57.
  assert mt.resolve_crop("kitti_eigen", 375, 1242) == (124, 342, 44, 1197)
  assert mt.resolve_crop(None, 10, 10) is None
  assert mt.resolve_crop((1, 5, 2, 8), 10, 10) == (1, 5, 2, 8)
  with pytest.raises(KeyError, match="nyu_eigen"):
    mt.resolve_crop("eigen", 10, 10)
  with pytest.raises(ValueError, match="does not fit"):
    mt.resolve_crop((0, 11, 0, 5), 10, 10)


def test_dataset_meta_crops_are_presets():
  for name in meta.known_datasets():
    crop = meta.get_meta(name).eval_crop
    assert crop is None or crop in mt.CROP_PRESETS, name
  for name in ("nyu_eigen", "nyu_md2", "kitti_garg", "kitti_eigen"):
    assert name in mt.CROP_PRESETS


def test_named_crop_equals_slicing():
  pred, gt = random_depth(2, shape=(2, 48, 64))
  got = mt.depth_metrics(pred, gt, crop="nyu_eigen", max_depth=10.0)
  # nyu_eigen at 48x64: rows floor(4.5):floor(47.1) = 4:47, cols floor(4.1):floor(60.1) = 4:60.
  want = ref_depth(pred[:, 4:47, 4:60], gt[:, 4:47, 4:60], max_depth=10.0)
  assert_metrics_close(got, want, mt.DEPTH_METRIC_KEYS, rtol=1e-4)


# ----------------------------------------------------------------------------------------------------------
# NaN safety and gradients.
# ----------------------------------------------------------------------------------------------------------
def _metric_sum(pred, gt, valid):
  m, _ = mt.per_image_depth_metrics(mt.clip_prediction(pred, 1e-3, None), gt, valid)
  return sum(jnp.sum(m[k]) for k in DIFFERENTIABLE_KEYS)


_grad_jit = jax.jit(jax.grad(_metric_sum))
_ACC = mt.DepthAccumulator()
_STEP = jax.jit(_ACC.update)
_per_image_jit = jax.jit(
  lambda p, g, v: mt.per_image_depth_metrics(mt.clip_prediction(p, 1e-3, None), g, v)
)


@pytest.mark.parametrize(
  "case", ["all_invalid", "zero_gt", "nan_gt", "zero_pred", "exact", "nan_pred"]
)
def test_values_and_gradients_finite_on_degenerate_inputs(case):
  rng = np.random.default_rng(3)
  gt = rng.uniform(1, 5, (2, 3, 4)).astype(np.float32)
  pred = gt * 1.1
  if case == "zero_gt":
    gt[0] = 0.0
    gt[1, 0] = 0.0
  elif case == "nan_gt":
    gt[:, 1] = np.nan
  elif case == "zero_pred":
    pred[:] = 0.0
  elif case == "exact":
    pred = gt.copy()
  elif case == "nan_pred":
    pred[0, 0] = np.nan
  gt, pred = jnp.asarray(gt), jnp.asarray(pred)
  valid = mt.depth_valid_mask(gt)
  if case == "all_invalid":
    valid = jnp.zeros_like(valid)
  m, n = _per_image_jit(pred, gt, valid)
  for k, v in m.items():
    assert np.all(np.isfinite(v)), k
  grad = _grad_jit(pred, gt, valid)
  assert np.all(np.isfinite(grad))
  if case == "all_invalid":
    np.testing.assert_array_equal(grad, 0.0)
    np.testing.assert_array_equal(n, 0.0)
  # The streaming state stays finite too.
  state = _STEP(_ACC.init(), pred, jnp.where(valid, gt, 0.0))
  for leaf in jax.tree.leaves(state):
    assert np.all(np.isfinite(leaf))


# ----------------------------------------------------------------------------------------------------------
# Streaming accumulators.
# ----------------------------------------------------------------------------------------------------------
def _batches(pred, gt, sizes, pad_to):
  rng = np.random.default_rng(7)
  start = 0
  for s in sizes:
    p, g = pred[start : start + s], gt[start : start + s]
    start += s
    mask = np.ones((pad_to,), bool)
    mask[s:] = False
    # Padding examples hold garbage that must not count.
    pad_p = rng.uniform(0.1, 50, (pad_to - s,) + p.shape[1:]).astype(np.float32)
    pad_g = rng.uniform(0.1, 50, (pad_to - s,) + g.shape[1:]).astype(np.float32)
    yield np.concatenate([p, pad_p]), np.concatenate([g, pad_g]), mask


def test_streaming_uneven_padded_batches_equal_one_shot():
  pred, gt = random_depth(4, shape=(7, 6, 8))
  gt[5] = 0.0  # an image without valid pixels in the middle of a batch.
  acc = mt.DepthAccumulator(max_depth=10.0, crop=(1, 6, 0, 7))
  step = jax.jit(acc.update)
  state = acc.init()
  for p, g, m in _batches(pred, gt, [3, 1, 3], pad_to=4):
    state = step(state, p, g, m)
  one = step(acc.init(), pred, gt, np.ones(7, bool))
  for per_image in (True, False):
    got = acc.finish(state, per_image=per_image)
    want = acc.finish(one, per_image=per_image)
    assert_metrics_close(got, want, mt.ALL_DEPTH_KEYS, rtol=1e-5)
    api = mt.depth_metrics(pred, gt, max_depth=10.0, crop=(1, 6, 0, 7), per_image=per_image)
    assert_metrics_close(got, api, mt.DEPTH_METRIC_KEYS, rtol=1e-5)
    ref = ref_depth(pred, gt, max_depth=10.0, crop=(1, 6, 0, 7), per_image=per_image)
    assert_metrics_close(got, ref, mt.DEPTH_METRIC_KEYS, rtol=1e-4)
  assert acc.counts(state) == {
    "num_examples": 7,
    "num_images": 6,
    "num_pixels": int(np.sum((gt[:, 1:6, 0:7] > 1e-3) & (gt[:, 1:6, 0:7] < 10.0))),
    "num_nonfinite_images": 0,
  }


def test_merge_equals_single_stream():
  pred, gt = random_depth(5, shape=(6, 5, 5))
  acc = mt.DepthAccumulator()
  step = jax.jit(acc.update)
  a = step(acc.init(), pred[:3], gt[:3])
  b = step(acc.init(), pred[3:], gt[3:])
  both = step(acc.init(), np.concatenate([pred[:3], pred[3:]]), gt)
  for per_image in (True, False):
    assert_metrics_close(
      acc.finish(acc.merge(a, b), per_image=per_image),
      acc.finish(both, per_image=per_image),
      mt.ALL_DEPTH_KEYS,
      rtol=1e-5,
    )


def test_wide_counter_carries_exactly():
  w = mt._wide_zeros()
  big = jnp.int32(2**30 + 12345)
  for _ in range(5):
    w = mt._wide_add(w, big)
  assert int(mt._wide_value(w)) == 5 * (2**30 + 12345)
  assert int(mt._wide_value(mt._wide_merge(w, w))) == 10 * (2**30 + 12345)


@pytest.mark.multidevice
def test_sharded_batch_update_matches_single_device():
  n = len(jax.devices())
  assert n == 8, "tests/conftest.py sets 8 fake CPU devices"
  mesh = jax.make_mesh((n,), ("data",), axis_types=(AxisType.Auto,))
  shard = NamedSharding(mesh, P("data"))
  pred, gt = random_depth(6, shape=(n, 4, 6))
  mask = np.array([True] * (n - 2) + [False] * 2)
  acc = mt.DepthAccumulator(max_depth=10.0)
  state = jax.jit(acc.update)(
    acc.init(), jax.device_put(pred, shard), jax.device_put(gt, shard), jax.device_put(mask, shard)
  )
  want = ref_depth(pred[: n - 2], gt[: n - 2], max_depth=10.0)
  assert_metrics_close(acc.finish(state), want, mt.DEPTH_METRIC_KEYS, rtol=1e-4)
  sacc = mt.SegAccumulator(num_classes=3)
  labels = np.random.default_rng(0).integers(0, 3, (n, 4, 6)).astype(np.int32)
  sstate = jax.jit(sacc.update)(
    sacc.init(), jax.device_put(labels, shard), jax.device_put(labels, shard)
  )
  assert sacc.finish(sstate)["pixel_acc"] == 1.0
  assert sacc.finish(sstate)["num_pixels"] == labels.size


# ----------------------------------------------------------------------------------------------------------
# PP-MVN (paper 001).
# ----------------------------------------------------------------------------------------------------------
def test_pp_mvn_literal_and_signed_hand_worked():
  gt = np.array([[[1.0, 2.0, 3.0, 4.0]]], np.float32)
  reversed_pred = gt[..., ::-1].copy()
  # MVN values are exact negatives: both ratios are -1 < 1.25, so the literal test passes everything.
  r = mt.pp_mvn(reversed_pred, gt)
  assert [r[f"pp_mvn{k}"] for k in (1, 2, 3)] == [1.0, 1.0, 1.0]
  assert [r[f"pp_mvn_signed{k}"] for k in (1, 2, 3)] == [0.0, 0.0, 0.0]
  same = mt.pp_mvn(gt * 3.0, gt)
  assert same["pp_mvn1"] == same["pp_mvn_signed1"] == 1.0
  # MVN(gt) = (-c, 0, c), MVN(pred) = (-c, c, 0): one pixel with ratio 1; the zeros fail (a/0 = inf).
  g3 = np.array([[[1.0, 2.0, 3.0]]], np.float32)
  p3 = np.array([[[1.0, 3.0, 2.0]]], np.float32)
  r3 = mt.pp_mvn(p3, g3)
  assert r3["pp_mvn1"] == pytest.approx(1 / 3)
  assert r3["pp_mvn_signed1"] == pytest.approx(1 / 3)


# ----------------------------------------------------------------------------------------------------------
# Segmentation.
# ----------------------------------------------------------------------------------------------------------
def test_segmentation_hand_worked_3x3():
  gt = np.array([[[0, 0, 1], [1, 2, 255], [2, 2, 0]]])
  pred = np.array([[[0, 1, 1], [1, 2, 0], [0, 2, 7]]])  # 7 is not a class: counts as wrong.
  m = mt.segmentation_metrics(pred, gt, num_classes=3, ignore_index=255)
  np.testing.assert_array_equal(m["confusion_matrix"], [[1, 1, 0], [0, 2, 0], [1, 0, 2]])
  assert m["num_invalid_pred"] == 1
  assert m["num_pixels"] == 8
  assert m["pixel_acc"] == pytest.approx(5 / 8)
  assert m["mean_class_acc"] == pytest.approx((1 / 3 + 1 + 2 / 3) / 3)
  np.testing.assert_allclose(m["iou_per_class"], [1 / 4, 2 / 3, 2 / 3])
  assert m["miou"] == pytest.approx((1 / 4 + 2 / 3 + 2 / 3) / 3)
  assert m["fw_iou"] == pytest.approx(3 / 8 * 1 / 4 + 2 / 8 * 2 / 3 + 3 / 8 * 2 / 3)


def test_segmentation_absent_classes():
  gt = np.array([[[0, 1], [1, 0]]])
  pred = np.array([[[0, 1], [1, 2]]])
  m = mt.segmentation_metrics(pred, gt, num_classes=4, ignore_index=255)
  # Class 2: predicted but not in GT -> IoU 0 (counted); class 3: empty union -> NaN (excluded).
  np.testing.assert_allclose(m["iou_per_class"], [1 / 2, 1.0, 0.0, np.nan])
  assert m["miou"] == pytest.approx((0.5 + 1.0 + 0.0) / 3)
  assert m["mean_class_acc"] == pytest.approx((1 / 2 + 1) / 2)  # only classes present in GT.
  empty = mt.segmentation_metrics(pred, np.full_like(gt, 255), num_classes=4, ignore_index=255)
  assert math.isnan(empty["miou"]) and math.isnan(empty["pixel_acc"])


def ref_confusion(pred, gt, C, ignore):
  cm = np.zeros((C, C), np.int64)
  for p, g in zip(pred.ravel(), gt.ravel(), strict=True):
    if g == ignore or not 0 <= g < C:
      continue
    if 0 <= p < C:
      cm[g, p] += 1
  return cm


def test_segmentation_streaming_and_logits_against_reference():
  rng = np.random.default_rng(8)
  C = 5
  gt = rng.integers(0, C, (7, 6, 5))
  gt[rng.random(gt.shape) < 0.2] = 255
  logits = rng.normal(size=gt.shape + (C,)).astype(np.float32)
  pred = logits.argmax(-1)
  acc = mt.SegAccumulator(num_classes=C, ignore_index=255)
  step = jax.jit(acc.update)
  state = acc.init()
  start = 0
  for s in (2, 4, 1):
    p = np.concatenate([logits[start : start + s], np.zeros((4 - s, 6, 5, C), np.float32)])
    g = np.concatenate([gt[start : start + s], np.zeros((4 - s, 6, 5), np.int64)])
    state = step(state, p, g, np.arange(4) < s)
    start += s
  got = acc.finish(state)
  cm = ref_confusion(pred, gt, C, 255)
  np.testing.assert_array_equal(got["confusion_matrix"], cm)
  one = mt.segmentation_metrics(pred, gt, num_classes=C, ignore_index=255)
  for k in mt.SEG_METRIC_KEYS:
    assert got[k] == pytest.approx(one[k])
  diag = np.diag(cm)
  iou = diag / (cm.sum(0) + cm.sum(1) - diag)
  assert got["miou"] == pytest.approx(np.mean(iou))
  assert got["pixel_acc"] == pytest.approx(diag.sum() / cm.sum())


# ----------------------------------------------------------------------------------------------------------
# Protocols.
# ----------------------------------------------------------------------------------------------------------
def test_protocol_registry():
  for name, proto in mt.PROTOCOLS.items():
    assert proto.name == name
    assert proto.description and proto.reproduces
    assert mt.get_protocol(name) is proto
  for name in ("nyu_eigen", "kitti_garg", "kitti_eigen", "kitti_benchmark", "r0_ssegdepnet"):
    assert name in mt.PROTOCOLS
  for name in ("nyu_eigen_pooled", "kitti_garg_pooled", "kitti_eigen_pooled", "clean_000"):
    assert name in mt.PROTOCOLS
  assert "r3_semantic_md" in mt.PROTOCOLS
  with pytest.raises(KeyError, match="kitti_garg"):
    mt.get_protocol("kitti")


def test_nyu_eigen_protocol_against_reference():
  pred, gt = random_depth(9, shape=(3, 48, 64))
  res = mt.evaluate_depth_protocol(pred, gt, "nyu_eigen")
  want = ref_depth(pred[:, 4:47, 4:60], gt[:, 4:47, 4:60], max_depth=10.0)
  assert_metrics_close(res, want, mt.DEPTH_METRIC_KEYS, rtol=1e-4)
  assert res["protocol"] == "nyu_eigen" and res["averaging"] == "per_image"
  assert res["num_images"] == 3


def test_kitti_benchmark_against_devkit_reference():
  pred, gt = random_depth(10, shape=(3, 7, 9))
  pred[0, 0, :3] = 0.0  # clamped to 1e-3.
  res = mt.evaluate_depth_protocol(pred, gt, "kitti_benchmark")
  vals = {"silog": [], "sq_error_rel": [], "abs_error_rel": [], "irmse": []}
  for i in range(3):
    valid = np.nan_to_num(gt[i]) > 0
    y = gt[i][valid].astype(np.float64)
    p = np.maximum(pred[i][valid].astype(np.float64), 1e-3)
    log_diff = np.log(y) - np.log(p)
    n = y.size
    vals["silog"].append(100 * np.sqrt(np.sum(log_diff**2) / n - np.sum(log_diff) ** 2 / n**2))
    vals["sq_error_rel"].append(100 * np.mean((p - y) ** 2 / y**2))
    vals["abs_error_rel"].append(100 * np.mean(np.abs(p - y) / y))
    vals["irmse"].append(1000 * np.sqrt(np.mean((1 / y - 1 / p) ** 2)))
  for k, v in vals.items():
    assert res[k] == pytest.approx(np.mean(v), rel=1e-4), k
  assert set(mt.get_protocol("kitti_benchmark").metric_keys) == set(vals)


def r0_reference(x, y, denom):
  """R0's per-image procedure (model_spec §8.2), transcribed from the description, float64."""
  out = {k: [] for k in mt.R0_KEYS}
  with np.errstate(all="ignore"):
    for xi, yi in zip(x.astype(np.float64), y.astype(np.float64), strict=True):
      xi = np.clip(xi, 0, 1)
      out["rms"].append(np.sqrt(np.mean((yi - xi) ** 2)))
      out["mqe"].append(np.mean((yi - xi) ** 2))
      a = np.log10(np.where(yi <= 0, 0, yi))
      b = np.log10(np.where(xi <= 0, 0, xi))
      a[a == -np.inf] = 0
      b[b == -np.inf] = 0
      out["rmsl"].append(np.sqrt(np.mean((a - b) ** 2)))
      out["rlsi"].append(np.mean(np.abs(a - b)))
      out["absr"].append(np.float32(np.nan_to_num(np.mean(np.abs(yi - xi) / xi))))
      out["absq"].append(np.float32(np.nan_to_num(np.mean((yi - xi) ** 2 / xi))))
      r = np.maximum(yi / xi, xi / yi)
      for k in (1, 2, 3):
        rk = r.copy()
        rk[rk > 1.25**k] = 0
        out[f"sigma{k}"].append(np.count_nonzero(rk) / denom)
  return {k: np.mean(np.asarray(v, np.float64)) for k, v in out.items()}


def test_r0_hand_worked():
  # Pixel (0,0): x = y = 0 -> 0/0: ABSR image mean NaN -> 0, sigma counts it as a pass.
  # Pixel (0,1): ratio 0.625 / 0.5 = 1.25 passes (R0 zeroes only r > 1.25).
  x = np.array([[[0.0, 0.5], [0.25, 1.5]]], np.float32)  # 1.5 is clipped to 1.
  y = np.array([[[0.0, 0.625], [0.5, 1.0]]], np.float32)
  v = {k: float(a[0]) for k, a in mt.r0_ssegdepnet_per_image(x, y, sigma_denominator=4).items()}
  assert v["mqe"] == pytest.approx((0.125**2 + 0.25**2) / 4)
  assert v["rms"] == pytest.approx(math.sqrt((0.125**2 + 0.25**2) / 4))
  l1, l2 = math.log10(1.25), math.log10(2.0)
  assert v["rmsl"] == pytest.approx(math.sqrt((l1**2 + l2**2) / 4), rel=1e-6)
  assert v["rlsi"] == pytest.approx((l1 + l2) / 4, rel=1e-6)
  assert v["absr"] == 0.0 and v["absq"] == 0.0
  assert v["sigma1"] == v["sigma2"] == v["sigma3"] == pytest.approx(3 / 4)
  x2 = np.array([[[0.5, 0.25], [1.0, 0.5]]], np.float32)
  y2 = np.array([[[0.625, 0.5], [1.0, 0.25]]], np.float32)
  v2 = mt.r0_ssegdepnet_per_image(x2, y2)
  assert float(v2["absr"][0]) == pytest.approx((0.125 / 0.5 + 0.25 / 0.25 + 0 + 0.25 / 0.5) / 4)
  assert float(v2["absq"][0]) == pytest.approx(
    (0.125**2 / 0.5 + 0.25**2 / 0.25 + 0.25**2 / 0.5) / 4
  )
  x3 = np.array([[[0.0, 0.5], [0.5, 0.5]]], np.float32)  # x = 0 < y: inf, no NaN -> inf.
  y3 = np.full((1, 2, 2), 0.5, np.float32)
  assert math.isinf(float(mt.r0_ssegdepnet_per_image(x3, y3)["absr"][0]))


def test_r0_protocol_against_reference_and_sigma_cap():
  rng = np.random.default_rng(11)
  y = rng.uniform(0, 1, (3, 6, 7)).astype(np.float32)
  x = (y + rng.normal(0, 0.1, y.shape)).astype(np.float32)
  y[0, 0, :3] = 0.0
  x[0, 0, :2] = 0.0  # two 0/0 pixels in image 0.
  res = mt.evaluate_depth_protocol(x, y, "r0_ssegdepnet")
  want = r0_reference(x, y, 192 * 320)
  for k in mt.R0_KEYS:
    assert res[k] == pytest.approx(want[k], rel=1e-5, abs=1e-7), k
  # Perfect predictions on R0's 184x312 maps: sigma is capped at 57408 / 61440.
  perfect = np.full((1, 184, 312), 0.5, np.float32)
  cap = mt.evaluate_depth_protocol(perfect, perfect, "r0_ssegdepnet")
  assert cap["sigma1"] == pytest.approx(184 * 312 / (192 * 320))


def test_r0_norm_m_converts_metres():
  depth = np.array([[[2.5, 5.0], [0.0, 20.0]]], np.float32)
  pred = np.array([[[2.5, 5.0], [0.0, 20.0]]], np.float32)
  res = mt.evaluate_depth_protocol(pred, depth, "r0_ssegdepnet", norm_m=10.0)
  # Inverted: (0.75, 0.5, 0, 0): two 0/0 pixels count as sigma passes too.
  assert res["rms"] == 0.0
  assert res["sigma1"] == pytest.approx(4 / (192 * 320))


def test_clean_000_against_reference():
  rng = np.random.default_rng(12)
  y = rng.uniform(0, 1, (3, 5, 6)).astype(np.float32)
  x = np.clip(y + rng.normal(0, 0.1, y.shape), -0.2, 1.2).astype(np.float32)
  y[0, 0] = 0.0
  x[1, 1, :3] = 0.0
  res = mt.evaluate_depth_protocol(x, y, "clean_000")
  vals = {k: [] for k in mt.R0_KEYS}
  for xi, yi in zip(np.clip(x, 0, 1).astype(np.float64), y.astype(np.float64), strict=True):
    v = yi > 0
    lv = v & (xi > 0)
    d = xi[v] - yi[v]
    vals["rms"].append(np.sqrt(np.mean(d**2)))
    vals["mqe"].append(np.mean(d**2))
    vals["absr"].append(np.mean(np.abs(d) / yi[v]))
    vals["absq"].append(np.mean(d**2 / yi[v]))
    e = np.log(xi[lv]) - np.log(yi[lv])
    vals["rmsl"].append(np.sqrt(np.mean(e**2)))
    vals["rlsi"].append(np.mean(e**2) - np.mean(e) ** 2)
    with np.errstate(divide="ignore"):
      r = np.maximum(yi[v] / xi[v], xi[v] / yi[v])
    for k in (1, 2, 3):
      vals[f"sigma{k}"].append(np.mean(r < 1.25**k))
  for k in mt.R0_KEYS:
    assert res[k] == pytest.approx(np.mean(vals[k]), rel=1e-4, abs=1e-7), k


def test_r3_protocol_batches_of_32_against_reference():
  rng = np.random.default_rng(13)
  gt = rng.uniform(0.5, 20.0, (35, 4, 5)).astype(np.float32)  # > 15 m is clamped to 15.
  gt[rng.random(gt.shape) < 0.1] = 0.0
  gt[2, 0, 0] = np.nan
  pred = (np.nan_to_num(gt, nan=1.0) * rng.uniform(0.8, 1.2, gt.shape)).astype(np.float32)
  pred[3, 0, :2] = -1.0  # clamped to 1e-4 * 15.
  res = mt.evaluate_depth_protocol(pred, gt, "r3_semantic_md")
  batch_vals = []
  for s in (slice(0, 32), slice(32, 35)):
    p = np.maximum(pred[s].astype(np.float64), 1.5e-3)
    with np.errstate(invalid="ignore"):
      y = np.where(np.nan_to_num(gt[s]) > 0, np.minimum(gt[s], 15.0), np.nan).astype(np.float64)
      th = np.maximum(y / p, p / y)
      v = {f"delta{k}": np.mean(th < 1.25**k) for k in (1, 2, 3)}
    v["abs_rel"] = np.nanmean(np.abs(p - y) / y)
    v["sq_rel"] = np.nanmean((p - y) ** 2 / y)
    v["rmse"] = np.sqrt(np.nanmean((p - y) ** 2))
    v["rmse_log"] = np.sqrt(np.nanmean((np.log(p) - np.log(y)) ** 2))
    v["log10"] = np.nanmean(np.abs(np.log10(p) - np.log10(y)))
    batch_vals.append(v)
  for k in mt.R3_KEYS:
    assert res[k] == pytest.approx((batch_vals[0][k] + batch_vals[1][k]) / 2, rel=1e-5), k
  assert res["num_batches"] == 2 and res["averaging"] == "per_batch"


def test_protocol_evaluator_streaming_equals_one_shot():
  pred, gt = random_depth(14, shape=(5, 48, 64))
  for name in ("nyu_eigen_pooled", "r3_semantic_md"):
    ev = mt.ProtocolEvaluator(name)
    ev.add(pred[:2], gt[:2])
    ev.add(pred[2:], gt[2:], example_mask=np.ones(3, bool))
    one = mt.evaluate_depth_protocol(pred, gt, name)
    got = ev.result()
    for k in mt.get_protocol(name).metric_keys:
      assert got[k] == pytest.approx(one[k], rel=1e-5), (name, k)


# ----------------------------------------------------------------------------------------------------------
# Delta_m and resizing.
# ----------------------------------------------------------------------------------------------------------
def test_delta_m_hand_worked():
  metrics = {"miou": 0.55, "rmse": 0.9, "delta1": 0.8}
  baselines = {"miou": 0.5, "rmse": 1.0}
  # (+(0.55 - 0.5) / 0.5 - (0.9 - 1.0) / 1.0) / 2 * 100 = (0.1 + 0.1) / 2 * 100 = 10.
  assert mt.delta_m(metrics, baselines) == pytest.approx(10.0)
  assert mt.delta_m(metrics, baselines, keys=["rmse"]) == pytest.approx(10.0)
  assert mt.delta_m({"abs_rel": 0.2}, {"abs_rel": 0.1}) == pytest.approx(-100.0)
  assert mt.metric_sign("delta1") == 1 and mt.metric_sign("silog") == -1
  with pytest.raises(KeyError, match="higher-better"):
    mt.delta_m({"foo": 1.0}, {"foo": 2.0})
  with pytest.raises(ValueError, match="baseline"):
    mt.delta_m({"rmse": 1.0}, {"rmse": 0.0})
  with pytest.raises(KeyError, match="missing from metrics"):
    mt.delta_m({}, {"rmse": 1.0})


def test_resize_prediction():
  labels = np.array([[1, 2], [3, 4]], np.int32)
  np.testing.assert_array_equal(
    mt.resize_prediction(labels, (4, 4), method="nearest"),
    [[1, 1, 2, 2], [1, 1, 2, 2], [3, 3, 4, 4], [3, 3, 4, 4]],
  )
  # Half-pixel centres, edge clamped: x_in = (i + 0.5) * 2 / 4 - 0.5 = -0.25, 0.25, 0.75, 1.25.
  row = np.array([[0.0, 1.0]], np.float32)
  np.testing.assert_allclose(
    mt.resize_prediction(row, (1, 4), method="bilinear"), [[0.0, 0.25, 0.75, 1.0]]
  )
  with pytest.raises(ValueError, match="method"):
    mt.resize_prediction(row, (2, 2), method="cubic")
