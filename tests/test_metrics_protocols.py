"""Metric and protocol fixes of issue 15, each against hand-computed values.

Every expected number below is worked out by hand (or with plain numpy from the definitions) in the test;
none is copied from the code under test.
"""

import dataclasses
import math

import jax.numpy as jnp
import numpy as np
import pytest

from semdepth_jax import metrics as mt

# ----------------------------------------------------------------------------------------------------------
# A broken image (non-finite prediction) never scores a perfect value.
# ----------------------------------------------------------------------------------------------------------
GT = np.array([[[2.0, 3.0], [4.0, 5.0]]], np.float32)
PRED_INF = np.array([[[2.2, 2.7], [4.4, np.inf]]], np.float32)


def test_per_image_metrics_of_inf_prediction_are_all_nan():
  valid = jnp.ones((1, 2, 2), bool)
  # No upper clamp: +inf survives clip_prediction and reaches the metrics (silog was 0.0 = perfect).
  m, n = mt.per_image_depth_metrics(mt.clip_prediction(PRED_INF, 1e-3, None), GT, valid)
  assert float(n[0]) == 4.0
  for k in mt.ALL_DEPTH_KEYS:
    assert np.isnan(float(m[k][0])), k
  # NaN passed straight to per_image_depth_metrics (no clamp ran) is broken too.
  m, _ = mt.per_image_depth_metrics(np.where(np.isinf(PRED_INF), np.nan, PRED_INF), GT, valid)
  assert all(np.isnan(float(m[k][0])) for k in mt.ALL_DEPTH_KEYS)


def test_broken_image_gives_nan_per_image_and_pooled_and_is_counted():
  good_p = np.array([[[2.2, 2.7], [4.4, 5.5]]], np.float32)
  pred = np.concatenate([good_p, PRED_INF])
  gt = np.concatenate([GT, GT])
  for per_image in (True, False):
    got = mt.depth_metrics(pred, gt, per_image=per_image)
    for k in mt.DEPTH_METRIC_KEYS:
      assert np.isnan(got[k]), (per_image, k)
  acc = mt.DepthAccumulator()
  state = acc.update(acc.init(), pred, gt)
  assert acc.counts(state)["num_nonfinite_images"] == 1
  # The state stays finite (nothing downstream trips over a NaN sum); the flag carries the news.
  for leaf in (state.e_mean, state.e_m2, *state.sums.values(), *state.image_sum.values()):
    assert np.isfinite(float(leaf))
  # The finite image alone still scores normally: e = ln 1.1, ln 0.9, ln 1.1, ln 1.1.
  ok = mt.depth_metrics(good_p, GT)
  e = np.log([1.1, 0.9, 1.1, 1.1])
  assert ok["silog"] == pytest.approx(100 * math.sqrt(np.mean(e**2) - np.mean(e) ** 2), rel=1e-5)
  assert ok["abs_rel"] == pytest.approx(0.1, rel=1e-5)
  # With an upper cap the +inf is clamped (to 80 m) and the image is scored, not broken.
  capped = mt.depth_metrics(PRED_INF, GT, max_depth=80.0)
  assert np.isfinite(capped["silog"]) and capped["abs_rel"] == pytest.approx(
    (0.1 + 0.1 + 0.1 + 75 / 5) / 4, rel=1e-5
  )


# ----------------------------------------------------------------------------------------------------------
# Crops: kb_crop, the official NYU toolbox crop, DenseDepth's crop, the legacy name.
# ----------------------------------------------------------------------------------------------------------
def test_crop_bounds_hand_computed():
  # KITTI 375 x 1242: kb window top = 375 - 352 = 23, left = (1242 - 1216) // 2 = 13.
  assert mt.resolve_crop("kitti_kb", 375, 1242) == (23, 375, 13, 1229)
  # Garg of the 352 x 1216 window: int(0.40810811 * 352) = int(143.65) = 143, int(0.99189189 * 352) =
  # int(349.15) = 349, int(0.03594771 * 1216) = int(43.71) = 43, int(0.96405229 * 1216) = int(1172.29).
  assert mt.resolve_crop("kitti_kb_garg", 375, 1242) == (23 + 143, 23 + 349, 13 + 43, 13 + 1172)
  # Garg of the full image differs: int(153.04), int(371.96), int(44.65), int(1197.35).
  assert mt.resolve_crop("kitti_garg", 375, 1242) == (153, 371, 44, 1197)
  # 376 x 1241 (odd width): left = 25 // 2 = 12.
  assert mt.resolve_crop("kitti_kb", 376, 1241) == (24, 376, 12, 1228)
  # NYU: official toolbox MATLAB 45:471, 41:601 inclusive = Python 44:471, 40:601; BTS/AdaBins 45:471,
  # 41:601; DenseDepth [20, 459, 24, 615] inclusive = 20:460, 24:616; the legacy name is unchanged.
  assert mt.resolve_crop("nyu_toolbox", 480, 640) == (44, 471, 40, 601)
  assert mt.resolve_crop("nyu_eigen", 480, 640) == (45, 471, 41, 601)
  assert mt.resolve_crop("nyu_densedepth", 480, 640) == (20, 460, 24, 616)
  assert mt.resolve_crop("nyu_md2", 480, 640) == (20, 459, 24, 615)
  with pytest.raises(ValueError, match=r"kitti_kb_garg.*352x1216.*got 240x320"):
    mt.resolve_crop("kitti_kb_garg", 240, 320)


def _ref_per_image(pred, gt, lo, hi, keep):
  """abs_rel, rmse, delta1 (numpy, float64), metric per image over ``keep`` then mean over images."""
  out = {"abs_rel": [], "rmse": [], "delta1": []}
  for p, y, k in zip(pred, gt, keep, strict=True):
    p, y = np.clip(p[k].astype(np.float64), lo, hi), y[k].astype(np.float64)
    out["abs_rel"].append(np.mean(np.abs(p - y) / y))
    out["rmse"].append(np.sqrt(np.mean((p - y) ** 2)))
    out["delta1"].append(np.mean(np.maximum(p / y, y / p) < 1.25))
  return {k: float(np.mean(v)) for k, v in out.items()}


def test_kitti_kb_garg_equals_cropping_both_then_garg():
  rng = np.random.default_rng(0)
  H, W = 376, 1242
  gt = rng.uniform(1.0, 90.0, (2, H, W)).astype(np.float32)
  gt[rng.uniform(size=gt.shape) < 0.5] = 0.0
  pred = (gt * rng.uniform(0.8, 1.3, gt.shape) + 0.5).astype(np.float32)
  # Reference: cut both to the 352 x 1216 window (rows 24:376, cols 13:1229), Garg on the cut maps.
  g, p = gt[:, 24:376, 13:1229], pred[:, 24:376, 13:1229]
  keep = np.zeros(g.shape, bool)
  keep[:, 143:349, 43:1172] = True
  keep &= (g > 1e-3) & (g < 80.0)
  ref = _ref_per_image(p, g, 1e-3, 80.0, keep)
  for name, cap in (("kitti_kb_garg", 80.0), ("kitti_toolbox_benchmark", 88.0)):
    keep_c = np.zeros(g.shape, bool)
    keep_c[:, 143:349, 43:1172] = True
    keep_c &= (g > 1e-3) & (g < cap)
    want = ref if cap == 80.0 else _ref_per_image(p, g, 1e-3, cap, keep_c)
    got = mt.evaluate_depth_protocol(pred, gt, name)
    for k, v in want.items():
      assert got[k] == pytest.approx(v, rel=1e-4), (name, k)
  garg = mt.evaluate_depth_protocol(pred, gt, "kitti_garg")
  assert garg["abs_rel"] != pytest.approx(ref["abs_rel"], rel=1e-6)


def test_eigen_benchmark_hand_worked():
  # valid = GT > 0 (no lower 1e-3 bound, no upper cap), no crop; prediction clamped to [1e-3, 80].
  gt = np.array([[[0.0005, 100.0], [10.0, 0.0]]], np.float32)
  pred = np.array([[[0.0001, 200.0], [12.0, 5.0]]], np.float32)
  got = mt.evaluate_depth_protocol(pred, gt, "kitti_eigen_benchmark")
  # Pixels (y, p clamped): (0.0005, 0.001), (100, 80), (10, 12).
  assert got["abs_rel"] == pytest.approx((1.0 + 0.2 + 0.2) / 3, rel=1e-5)
  assert got["rmse"] == pytest.approx(math.sqrt((0.0005**2 + 400.0 + 4.0) / 3), rel=1e-5)
  assert got["delta1"] == pytest.approx(1 / 3)  # ratios 2, 1.25 (not < 1.25), 1.2: one pass.
  # kitti_garg on the same map would drop the 0.0005 m and 100 m pixels (1e-3 < y < 80) and crop.
  assert mt.get_protocol("kitti_eigen_benchmark").accumulator().clip_range == (1e-3, 80.0)


def test_median_scaling_hand_worked_scale_then_clamp():
  # median(gt) = (60 + 70) / 2 = 65, median(pred) = (12 + 20) / 2 = 16, ratio 65 / 16 = 4.0625;
  # scaled pred 40.625, 81.25, 48.75, 121.875 -> clamped to 80 (monodepth2: scale first, then clamp).
  gt = np.array([[[50.0, 70.0], [60.0, 79.0]]], np.float32)
  pred = np.array([[[10.0, 20.0], [12.0, 30.0]]], np.float32)
  got = mt.evaluate_depth_protocol(pred, gt, "kitti_eigen_benchmark_median")
  want = (9.375 / 50 + 10.0 / 70 + 11.25 / 60 + 1.0 / 79) / 4
  assert got["abs_rel"] == pytest.approx(want, rel=1e-5)
  # Per image: a second image with its own ratio (median 5 / median 2.5 = 2 -> exact but one pixel).
  gt2 = np.array([[[2.0, 4.0], [6.0, 8.0]]], np.float32)
  pred2 = np.array([[[1.0, 2.0], [3.0, 5.0]]], np.float32)
  both = mt.evaluate_depth_protocol(
    np.concatenate([pred, pred2]), np.concatenate([gt, gt2]), "kitti_eigen_benchmark_median"
  )
  assert both["abs_rel"] == pytest.approx((want + 0.25 / 4) / 2, rel=1e-5)
  # The median is over the valid pixels only: an invalid (0) GT pixel does not move it.
  gt3 = gt2.copy()
  gt3[0, 0, 0] = 0.0
  pred3 = pred2.copy()
  pred3[0, 0, 0] = 1000.0
  # valid gt 4, 6, 8 -> median 6; pred 2, 3, 5 -> median 3; ratio 2: 4, 6, 10 -> abs_rel 0.25 / 3.
  got3 = mt.evaluate_depth_protocol(pred3, gt3, "kitti_eigen_benchmark_median")
  assert got3["abs_rel"] == pytest.approx(0.25 / 3, rel=1e-5)
  # Median scaling is also an option of any DepthAccumulator / Protocol.
  acc = mt.DepthAccumulator(max_depth=80.0, median_scaling=True)
  assert acc.finish(acc.update(acc.init(), pred, gt))["abs_rel"] == pytest.approx(want, rel=1e-5)
  assert mt.get_protocol("kitti_garg_median").median_scaling
  assert not mt.get_protocol("kitti_garg").median_scaling


# ----------------------------------------------------------------------------------------------------------
# Prediction resizing per protocol.
# ----------------------------------------------------------------------------------------------------------
def _np_linear_1d(n_in, n_out, align_corners):
  """(n_out, n_in) interpolation weights written from the two sampling rules (numpy reference)."""
  w = np.zeros((n_out, n_in))
  for i in range(n_out):
    if align_corners:
      x = i * (n_in - 1) / (n_out - 1) if n_out > 1 else 0.0
    else:
      x = min(max((i + 0.5) * n_in / n_out - 0.5, 0.0), n_in - 1)
    lo = int(np.floor(x))
    hi = min(lo + 1, n_in - 1)
    w[i, lo] += 1 - (x - lo)
    w[i, hi] += x - lo
  return w


def test_bilinear_switch_hand_values_and_numpy_reference():
  from semdepth_jax import resize

  x = np.array([[[0.0, 1.0]]], np.float32)  # (1, 1, 2) -> width 4
  # align corners: samples at 0, 1/3, 2/3, 1; half-pixel: at -0.25 (edge), 0.25, 0.75, 1.25 (edge).
  np.testing.assert_allclose(
    resize.bilinear(x, (1, 4), align_corners=True)[0, 0], [0, 1 / 3, 2 / 3, 1], atol=1e-6
  )
  np.testing.assert_allclose(resize.bilinear(x, (1, 4))[0, 0], [0, 0.25, 0.75, 1], atol=1e-6)
  rng = np.random.default_rng(1)
  img = rng.uniform(0, 10, (2, 5, 7)).astype(np.float32)
  for ac in (False, True):
    for size in ((9, 13), (3, 4)):
      want = np.einsum(
        "ih,bhw,jw->bij", _np_linear_1d(5, size[0], ac), img.astype(np.float64),
        _np_linear_1d(7, size[1], ac),
      )  # fmt: skip
      got = resize.bilinear(img, size, align_corners=ac)
      np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)
      # (B, H, W, C) too, and resize_prediction by name.
      np.testing.assert_allclose(
        resize.bilinear(img[..., None], size, align_corners=ac)[..., 0], want, rtol=1e-5, atol=1e-5
      )
      method = "bilinear_align_corners" if ac else "bilinear"
      np.testing.assert_allclose(
        mt.resize_prediction(img, size, method=method), want, rtol=1e-5, atol=1e-5
      )


def test_protocols_choose_their_resize_and_evaluator_uses_it():
  import jax

  from semdepth_jax import evaluate

  assert mt.get_protocol("nyu_eigen").resize == "bilinear"
  assert mt.get_protocol("nyu_eigen_ac").resize == "bilinear_align_corners"
  assert mt.get_protocol("kitti_kb_garg").resize == "bilinear_align_corners"
  with pytest.raises(ValueError, match="resize must be one of"):
    mt.Protocol(name="x", description="", reproduces="", resize="bicubic")
  # A 1 x 2 prediction [1, 3] m upsampled to a 1 x 4 GT of [1, 5/3, 7/3, 3] m: exact only with
  # aligned corners; half-pixel gives [1, 1.5, 2.5, 3].
  pred = np.array([[[1.0, 3.0]]], np.float32)
  gt = np.array([[[1.0, 5 / 3, 7 / 3, 3.0]]], np.float32)
  p = mt.get_protocol("nyu_eigen_ac")
  np.testing.assert_allclose(p.resize_prediction(pred, (1, 4))[0, 0], gt[0, 0], rtol=1e-6)
  batch = {
    "image": np.zeros((1, 1, 4, 3), np.float32),
    "depth": gt,
    "segmentation": np.zeros((1, 1, 4), np.int32),
    "mask": np.ones(1, bool),
  }
  results = {}
  for name in ("nyu_eigen", "nyu_eigen_ac"):
    proto = dataclasses.replace(mt.get_protocol(name), crop=None)
    ev = evaluate.JointEvaluator(proto, num_classes=1, class_names=("a",))
    acc = jax.jit(ev.update)(ev.init(), {"depth": pred[..., None]}, batch)
    results[name] = ev.finish(acc)["depth"]["abs_rel"]
  assert results["nyu_eigen_ac"] == pytest.approx(0.0, abs=1e-6)
  want = (abs(1.5 - 5 / 3) / (5 / 3) + abs(2.5 - 7 / 3) / (7 / 3)) / 4
  assert results["nyu_eigen"] == pytest.approx(want, rel=1e-5)


def test_nyu_protocol_on_inpainted_depth_is_flagged():
  from semdepth_jax import evaluate
  from semdepth_jax.data import meta

  nyu = mt.get_protocol("nyu_eigen")
  note = evaluate.depth_source_note(nyu, meta.get_meta("nyu_depth_v2_labeled"))
  assert note and "nyu_depth_v2_labeled/40_raw" in note and "in-painted" in note
  assert evaluate.depth_source_note(nyu, meta.get_meta("nyu_depth_v2_labeled/13_raw")) is None
  assert (
    evaluate.depth_source_note(mt.get_protocol("kitti_garg"), meta.get_meta("kitti_depth")) is None
  )
  # The raw configs keep the dataset's default protocol.
  assert mt.dataset_protocol(meta.get_meta("nyu_depth_v2_labeled/40_raw")).name == "nyu_eigen"


@pytest.mark.parametrize("built", [True, False])
def test_nyu_evaluation_scores_the_raw_twin_when_it_is_built(built, monkeypatch):
  """Default NYU evaluation of an in-painted run scores rawDepths (the field's convention) if built."""
  import jax

  from semdepth_jax import evaluate
  from semdepth_jax.train import config_utils
  from semdepth_jax.train import mesh as mesh_lib

  asked = []

  def fake_built(dataset, data_dir):
    asked.append(dataset)
    return built

  monkeypatch.setattr(evaluate, "raw_twin_built", fake_built)
  config = config_utils.load_config(
    "configs/ssegdepnet.py:model=unet,size=tiny", ["--config.dataset=nyu_depth_v2_labeled"]
  )
  model = evaluate.ConstantModel(depth=2.0, label=0, num_classes=40)
  mesh = mesh_lib.make_mesh((1, 1), devices=jax.devices()[:1])
  ev = evaluate.Evaluation(model, config, evaluate.EvalSettings(split="test"), mesh=mesh)
  assert asked == ["nyu_depth_v2_labeled/40_raw"]
  assert ev.protocol.name == "nyu_eigen"
  if built:
    assert ev.dataset == "nyu_depth_v2_labeled/40_raw" and not ev.warnings
  else:
    assert ev.dataset == "nyu_depth_v2_labeled"
    assert any("in-painted" in w and "40_raw" in w for w in ev.warnings)
  # An explicitly named dataset is never switched.
  asked.clear()
  named = evaluate.EvalSettings(split="test", dataset="nyu_depth_v2_labeled/40")
  ev = evaluate.Evaluation(model, config, named, mesh=mesh)
  assert ev.dataset == "nyu_depth_v2_labeled/40" and asked == []
