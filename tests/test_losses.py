"""Tests of semdepth_jax.losses against hand-worked values and independent numpy/scipy references."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import ndimage

from semdepth_jax import losses

# ----------------------------------------------------------------------------------------------------------
# Independent numpy references (written from the formulas, not from the code under test).
# ----------------------------------------------------------------------------------------------------------


def np_log_softmax(x):
  x = np.asarray(x, np.float64)
  m = x.max(-1, keepdims=True)
  return x - m - np.log(np.exp(x - m).sum(-1, keepdims=True))


def np_ce(logits, labels, mask=None, ignore=255, norm="valid"):
  logits = np.asarray(logits, np.float64)
  C = logits.shape[-1]
  mask = np.ones(labels.shape, bool) if mask is None else mask
  valid = mask & (labels != ignore) & (labels >= 0) & (labels < C)
  lp = np_log_softmax(logits)
  total = 0.0
  for idx in zip(*np.nonzero(valid), strict=True):
    total -= lp[idx][labels[idx]]
  den = valid.sum() if norm == "valid" else mask.sum()
  return total / den if den else 0.0


def np_sigmoid(x):
  return 1.0 / (1.0 + np.exp(-np.asarray(x, np.float64)))


def np_onehot_zero_rows(labels, C):
  out = np.zeros(labels.shape + (C,))
  for idx in np.ndindex(labels.shape):
    if 0 <= labels[idx] < C:
      out[idx + (labels[idx],)] = 1.0
  return out


def np_resize_nearest(x, h, w):
  H, W = x.shape[1:3]
  # Aligned pixel centres (semdepth_jax.resize.nearest): floor((i + 0.5) * in / out).
  rows = [min(math.floor((i + 0.5) * H / h), H - 1) for i in range(h)]
  cols = [min(math.floor((j + 0.5) * W / w), W - 1) for j in range(w)]
  return x[:, rows][:, :, cols]


def close(a, b, rtol=1e-5, atol=1e-6):
  np.testing.assert_allclose(
    np.asarray(a, np.float64), np.asarray(b, np.float64), rtol=rtol, atol=atol
  )


# ----------------------------------------------------------------------------------------------------------
# Resizing.
# ----------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("in_hw,out_hw", [((6, 8), (3, 4)), ((5, 7), (3, 4)), ((3, 4), (6, 9))])
def test_resize_nearest_centre_rule(in_hw, out_hw):
  x = np.arange(2 * in_hw[0] * in_hw[1]).reshape((2,) + in_hw)
  got = np.asarray(losses.resize_nearest(x, out_hw))
  np.testing.assert_array_equal(got, np_resize_nearest(x, *out_hw))


def test_resize_nearest_hand_values():
  x = np.array([[[0, 1, 2, 3, 4]]])  # (1, 1, 5)
  # floor((j + 0.5) * 5 / 3) = 0, 2, 4 (the one nearest-neighbour rule of the library).
  np.testing.assert_array_equal(np.asarray(losses.resize_nearest(x, (1, 3))), [[[0, 2, 4]]])


# ----------------------------------------------------------------------------------------------------------
# Depth losses.
# ----------------------------------------------------------------------------------------------------------


def _depth_case():
  pred = np.array([[[1.0, 2.0], [3.0, 4.0]]], np.float32)
  target = np.array([[[1.5, 0.0], [np.nan, 2.0]]], np.float32)
  mask = np.array([[[True, False], [True, True]]])  # the NaN pixel must drop out by itself.
  return pred, target, mask


def test_l1_hand():
  pred, target, mask = _depth_case()
  # valid pixels: (0,0): |1-1.5| = 0.5 ; (1,1): |4-2| = 2 -> mean 1.25.
  close(losses.l1_loss(pred, target, mask), 1.25)
  close(losses.l1_loss(pred[..., None], target, mask), 1.25)


def test_l2_mean_and_sum_hand():
  pred, target, mask = _depth_case()
  # squared errors 0.25 and 4.
  close(losses.l2_mean_loss(pred, target, mask), 0.5 * (0.25 + 4.0) / 2)
  close(losses.l2_sum_loss(pred, target, mask), 0.0005 * 4.25)
  close(losses.l2_sum_loss(pred, target, mask, scale=1.0), 4.25)
  # Reference code masks nothing: only the NaN pixel is dropped (0 counts as a target).
  close(losses.l2_sum_loss(pred, target, None), 0.0005 * (0.25 + 4.0 + 4.0))


def test_euclidean_divides_by_twice_the_examples():
  pred = np.zeros((3, 1, 2), np.float32)
  target = np.array([[[1.0, 2.0]], [[3.0, 0.0]], [[5.0, 5.0]]], np.float32)
  mask = np.array([[[True, True]], [[True, False]], [[False, False]]])
  # sum of squares over valid = 1 + 4 + 9 = 14.
  close(losses.euclidean_loss(pred, target, mask), 14 / (2 * 3))
  close(
    losses.euclidean_loss(pred, target, mask, example_mask=np.array([True, True, False])), 14 / 4
  )


def np_mvn(x, mask, eps=1e-9):
  out = np.zeros_like(x, np.float64)
  for b in range(x.shape[0]):
    v = x[b][mask[b]].astype(np.float64)
    if v.size:
      mean = v.mean()
      std = np.sqrt(((v - mean) ** 2).mean())  # population std
      out[b][mask[b]] = (v - mean) / (std + eps)
  return out


def test_mvn_hand_population_std():
  x = np.array([[[1.0, 2.0], [3.0, 4.0]]], np.float32)
  std = math.sqrt(1.25)
  expected = np.array([[[-1.5, -0.5], [0.5, 1.5]]]) / (std + 1e-9)
  close(losses.mvn(x), expected)
  # Statistics only over the mask: the 100 must not move mean/std.
  y = np.array([[[1.0, 2.0, 100.0], [3.0, 4.0, 100.0]]], np.float32)
  m = np.array([[[True, True, False], [True, True, False]]])
  got = np.asarray(losses.mvn(y, m))
  close(got[0, :, :2], expected[0])
  np.testing.assert_array_equal(got[0, :, 2], [0.0, 0.0])


def test_mvn_euclidean_against_numpy():
  rng = np.random.default_rng(0)
  pred = rng.normal(size=(2, 3, 4)).astype(np.float32)
  target = rng.uniform(1, 5, size=(2, 3, 4)).astype(np.float32)
  mask = rng.random((2, 3, 4)) > 0.3
  ref = ((np_mvn(pred, mask) - np_mvn(target, mask)) ** 2)[mask].sum() / (2 * 2)
  close(losses.mvn_euclidean_loss(pred, target, mask), ref, rtol=1e-5)


def np_berhu(pred, target, mask, mode):
  e = (pred - target)[mask].astype(np.float64)
  code_c = 0.2 * np.abs(e).max()
  paper_c = max(pred[mask].max(), target[mask].max()) / 5.0  # paper Eq. 2: max of the values
  c = code_c if mode == "code" else paper_c
  ae = np.abs(e)
  per = np.where(ae <= c, ae, (e**2 + c**2) / (2 * c))
  return per.mean(), c


def test_berhu_hand_both_thresholds():
  pred = np.ones((1, 1, 5), np.float32)
  target = np.array([[[1.0, 2.0, 3.0, 10.0, np.nan]]], np.float32)
  # e = 0, -1, -2, -9. code: c = 1.8 -> 0, 1, (4 + 3.24)/3.6, (81 + 3.24)/3.6.
  code = (0 + 1 + (4 + 3.24) / 3.6 + (81 + 3.24) / 3.6) / 4
  close(losses.berhu_loss(pred, target), code)
  # paper: c = max(values)/5 = 10/5 = 2 -> 0, 1, 2, (81 + 4)/4.
  close(losses.berhu_loss(pred, target, threshold="paper"), (0 + 1 + 2 + 85 / 4) / 4)


@pytest.mark.parametrize("mode", ["code", "paper"])
@pytest.mark.parametrize("stop", [False, True])
def test_berhu_gradient_matches_finite_differences(mode, stop):
  rng = np.random.default_rng(1)
  pred = rng.uniform(0.5, 3.0, (1, 2, 3)).astype(np.float64)
  target = rng.uniform(0.5, 5.0, (1, 2, 3)).astype(np.float64)
  mask = np.ones(pred.shape, bool)
  _, c0 = np_berhu(pred, target, mask, mode)

  def ref(p):
    if stop:  # c frozen at its value for the unperturbed prediction.
      e = (p - target)[mask]
      ae = np.abs(e)
      return np.where(ae <= c0, ae, (e**2 + c0**2) / (2 * c0)).mean()
    return np_berhu(p, target, mask, mode)[0]

  num = np.zeros_like(pred)
  h = 1e-6
  for idx in np.ndindex(pred.shape):
    d = np.zeros_like(pred)
    d[idx] = h
    num[idx] = (ref(pred + d) - ref(pred - d)) / (2 * h)
  got = jax.grad(
    lambda p: losses.berhu_loss(
      p, target.astype(np.float32), threshold=mode, stop_gradient_threshold=stop
    )
  )(jnp.asarray(pred, jnp.float32))
  close(got, num, rtol=1e-3, atol=1e-4)


def test_berhu_all_zero_residual_is_zero():
  x = np.full((1, 2, 2), 3.0, np.float32)
  close(losses.berhu_loss(x, x), 0.0)
  g = jax.grad(lambda p: losses.berhu_loss(p, x))(jnp.asarray(x))
  assert np.all(np.isfinite(np.asarray(g)))


def test_scale_invariant_against_numpy():
  rng = np.random.default_rng(2)
  pred = rng.uniform(0.5, 5, (3, 2, 3)).astype(np.float32)
  target = rng.uniform(0.5, 5, (3, 2, 3)).astype(np.float32)
  mask = rng.random((3, 2, 3)) > 0.3
  mask[2] = False  # an image without valid pixels is left out of the average.
  target[0, 0, 0] = 0.0  # zero depth: invalid even if the mask says otherwise.
  mask[0, 0, 0] = True
  per = []
  for b in range(3):
    m = mask[b] & (target[b] > 0)
    if m.any():
      e = np.log(pred[b][m].astype(np.float64)) - np.log(target[b][m])
      per.append((e**2).mean() - 0.5 * e.mean() ** 2)
  close(losses.scale_invariant_loss(pred, target, mask), np.mean(per), rtol=1e-5)
  # lam = 1 on log inputs.
  per1 = []
  for b in range(2):
    m = mask[b] & (target[b] > 0)
    e = np.log(pred[b][m].astype(np.float64)) - np.log(target[b][m])
    per1.append((e**2).mean() - e.mean() ** 2)
  got = losses.scale_invariant_loss(np.log(pred), target, mask, lam=1.0, pred_is_log=True)
  close(got, np.mean(per1), rtol=1e-4, atol=1e-6)


# ----------------------------------------------------------------------------------------------------------
# Segmentation losses.
# ----------------------------------------------------------------------------------------------------------


def test_keras_bce_on_probabilities_hand():
  p = np.array([[[[0.9, 0.2]]]], np.float32)
  labels = np.array([[[0]]])
  expected = -(math.log(0.9) + math.log(0.8)) / 2  # = 0.16425203...
  close(losses.bce_onehot_loss(p, labels, from_logits=False), expected)
  close(expected, 0.164252033, rtol=1e-8)


def test_keras_bce_clipping_float32():
  p = np.array([[[[0.0, 1.0]]]], np.float32)
  labels = np.array([[[0]]])  # target planes (1, 0): both terms hit the clip.
  hi = np.float32(1.0 - 1e-7)  # Keras evaluates the bound in float32: 0.99999988...
  expected = -(np.log(np.float64(np.float32(1e-7))) + np.log(np.float64(np.float32(1.0) - hi))) / 2
  close(losses.bce_onehot_loss(p, labels, from_logits=False), expected, rtol=1e-6)
  assert 16.0 < expected < 16.1


def test_bce_logits_forms_agree_and_ignore_modes():
  rng = np.random.default_rng(3)
  logits = rng.normal(size=(1, 2, 2, 3)).astype(np.float32)
  labels = np.array([[[0, 2], [255, 1]]])
  p = np_sigmoid(logits)

  def ref(targets, sel):
    per = -(targets * np.log(p) + (1 - targets) * np.log(1 - p))
    return per[sel].mean()

  t_zero = np_onehot_zero_rows(labels, 3)
  sel = labels != 255
  close(losses.bce_onehot_loss(logits, labels), ref(t_zero, sel), rtol=1e-5)
  close(losses.bce_onehot_loss(logits, labels, keras_clip=True), ref(t_zero, sel), rtol=1e-5)
  # plane0: the ignore pixel becomes class 0 and is counted.
  t_p0 = np_onehot_zero_rows(np.where(labels == 255, 0, labels), 3)
  close(
    losses.bce_onehot_loss(logits, labels, ignore_mode="plane0"), ref(t_p0, np.ones_like(sel)), 1e-5
  )


def test_softmax_ce_valid_and_all_normalisation():
  rng = np.random.default_rng(4)
  logits = rng.normal(size=(2, 3, 3, 4)).astype(np.float32)
  labels = rng.integers(0, 4, (2, 3, 3))
  labels[0, 0, 0] = 255
  labels[1, 2, 1] = 255
  mask = np.ones(labels.shape, bool)
  mask[1, 0] = False
  close(losses.softmax_cross_entropy(logits, labels, mask), np_ce(logits, labels, mask), rtol=1e-5)
  close(
    losses.softmax_cross_entropy(logits, labels, mask, normalization="all"),
    np_ce(logits, labels, mask, norm="all"),
    rtol=1e-5,
  )


def test_softmax_ce_hand():
  logits = np.array([[[[0.0, math.log(3.0)], [5.0, 5.0]]]], np.float32)  # (1, 1, 2, 2)
  labels = np.array([[[1, 255]]])
  # p(class 1) = 3 / 4 -> -log(0.75) over 1 valid pixel; 'all' divides by 2 pixels.
  close(losses.softmax_cross_entropy(logits, labels), -math.log(0.75))
  close(losses.softmax_cross_entropy(logits, labels, normalization="all"), -math.log(0.75) / 2)


def _dice_case():
  rng = np.random.default_rng(5)
  logits = rng.normal(size=(2, 2, 3, 4)).astype(np.float32)
  labels = rng.integers(0, 4, (2, 2, 3))
  labels[0, 1, 2] = 255
  return logits, labels


def test_dice_global_sums():
  logits, labels = _dice_case()
  p = np_sigmoid(logits)
  t = np_onehot_zero_rows(labels, 4)  # unlabelled -> zero row; its p still enters P.
  eps = 1e-4
  ref = 1 - 2 * ((p * t).sum() + eps) / (p.sum() + t.sum() + eps)
  close(losses.dice_loss(logits, labels), ref, rtol=1e-5)
  # An example mask removes pixels from every sum.
  m = np.array([True, False])
  p0, t0 = p[:1], t[:1]
  ref0 = 1 - 2 * ((p0 * t0).sum() + eps) / (p0.sum() + t0.sum() + eps)
  close(losses.dice_loss(logits, labels, m), ref0, rtol=1e-5)


@pytest.mark.parametrize("alpha", [0.8, 0.7])
def test_focal_tversky_global_sums(alpha):
  logits, labels = _dice_case()
  p = np_sigmoid(logits)
  t = np_onehot_zero_rows(labels, 4)
  eps = 1e-4
  tp, fn, fp = (p * t).sum(), ((1 - p) * t).sum(), (p * (1 - t)).sum()
  ref = (1 - (tp + eps) / (tp + alpha * fn + (1 - alpha) * fp + eps)) ** 1.5
  close(losses.focal_tversky_loss(logits, labels, alpha=alpha), ref, rtol=1e-5)


def test_dice_ce_and_ftl_ce_combinations():
  logits, labels = _dice_case()
  p = np_sigmoid(logits)
  t = np_onehot_zero_rows(labels, 4)
  eps = 1e-4
  ce_all = np_ce(logits, labels, norm="all")
  dice = 1 - 2 * ((p * t).sum() + eps) / (p.sum() + t.sum() + eps)
  tp, fn, fp = (p * t).sum(), ((1 - p) * t).sum(), (p * (1 - t)).sum()
  ftl = (1 - (tp + eps) / (tp + 0.8 * fn + 0.2 * fp + eps)) ** 1.5
  close(losses.dice_ce_loss(logits, labels), 0.5 * ce_all + 0.5 * dice, rtol=1e-5)
  close(losses.ftl_ce_loss(logits, labels), 0.5 * ce_all + 0.5 * ftl, rtol=1e-5)


def test_hybrid_loss_alpha_1000():
  rng = np.random.default_rng(6)
  seg = rng.normal(size=(2, 2, 2, 3)).astype(np.float32)
  labels = rng.integers(0, 3, (2, 2, 2))
  dp = rng.uniform(1, 4, (2, 3, 3)).astype(np.float32)
  dt = rng.uniform(1, 4, (2, 3, 3)).astype(np.float32)
  dm = rng.random((2, 3, 3)) > 0.2
  ls = np_ce(seg, labels)
  labs = ((dp - dt) ** 2)[dm].sum() / 4
  lmvn = ((np_mvn(dp, dm) - np_mvn(dt, dm)) ** 2)[dm].sum() / 4
  total, parts = losses.hybrid_loss(seg, labels, dp, dt, depth_mask=dm)
  close(total, 1000 * ls + labs + lmvn, rtol=1e-5)
  close(parts["depth_abs"], labs, rtol=1e-5)


# ----------------------------------------------------------------------------------------------------------
# Bin losses.
# ----------------------------------------------------------------------------------------------------------


def test_soft_classification_hand():
  logits = np.zeros((1, 1, 3, 3), np.float32)  # uniform over 0..2 -> expected index 1
  b = np.array([[[1, 2, 0]]])
  # smooth-L1 of (0, -1, 1) = 0, |1| - 0.5, |1| - 0.5.
  close(losses.expected_bin_index(logits), [[[1.0, 1.0, 1.0]]])
  close(losses.soft_classification_loss(logits, b), (0 + 0.5 + 0.5) / 3)
  close(losses.soft_classification_loss(logits, b, reduction="sum"), 1.0)
  # Inside |y| < 1 the loss is quadratic: logits favouring class 2 by ln 4 -> p = (1, 1, 4)/6, d = 1.5.
  lg = np.array([[[[0.0, 0.0, math.log(4.0)]]]], np.float32)
  close(losses.soft_classification_loss(lg, np.array([[[1]]])), 0.5 * 0.5**2)
  # Ignored targets drop out.
  close(losses.soft_classification_loss(logits, np.array([[[1, 255, 255]]])), 0.0)


def test_soft_cls_regression_total():
  rng = np.random.default_rng(7)
  logits = rng.normal(size=(1, 2, 2, 5)).astype(np.float32)
  b = np.array([[[0, 4], [2, 3]]])
  dp = rng.uniform(1, 3, (1, 2, 2)).astype(np.float32)
  dt = rng.uniform(1, 3, (1, 2, 2)).astype(np.float32)
  p = np.exp(np_log_softmax(logits))
  d = (p * np.arange(5)).sum(-1)
  y = d - b
  sl1 = np.where(np.abs(y) < 1, 0.5 * y**2, np.abs(y) - 0.5)
  ref = sl1.mean() + np.abs(dp - dt).mean()
  close(losses.soft_cls_regression_loss(logits, dp, b, dt), ref, rtol=1e-5)
  close(
    losses.soft_cls_regression_loss(logits, dp, b, dt, w1=2.0, w2=0.5),
    2 * sl1.mean() + 0.5 * np.abs(dp - dt).mean(),
    1e-5,
  )


def test_sid_cross_entropy_is_masked_ce():
  rng = np.random.default_rng(8)
  logits = rng.normal(size=(1, 2, 3, 4)).astype(np.float32)
  ids = np.array([[[0, 3, 255], [1, 255, 2]]])
  close(losses.sid_cross_entropy(logits, ids), np_ce(logits, ids), rtol=1e-5)


# ----------------------------------------------------------------------------------------------------------
# Contour and Sobel targets.
# ----------------------------------------------------------------------------------------------------------


def test_contour_target_hand():
  lab = np.zeros((1, 4, 4), np.int32)
  lab[0, :, 2:] = 1
  expected = np.zeros((1, 4, 4), np.int32)
  expected[0, :, 1:3] = 1  # the two columns touching the boundary
  np.testing.assert_array_equal(np.asarray(losses.contour_target(lab)), expected)
  single = np.zeros((1, 5, 5), np.int32)
  single[0, 2, 2] = 255
  exp2 = np.zeros((1, 5, 5), np.int32)
  exp2[0, 1:4, 1:4] = 1
  np.testing.assert_array_equal(np.asarray(losses.contour_target(single)), exp2)


def test_contour_target_matches_scipy_morphology():
  rng = np.random.default_rng(9)
  lab = rng.integers(0, 3, (2, 7, 6))
  lab[0, 0, :] = 255
  # cv2.dilate/erode ignore out-of-image pixels == scipy 'nearest' border for max/min filters.
  dil = ndimage.maximum_filter(lab, size=(1, 3, 3), mode="nearest")
  ero = ndimage.minimum_filter(lab, size=(1, 3, 3), mode="nearest")
  np.testing.assert_array_equal(
    np.asarray(losses.contour_target(lab)), (dil - ero > 0).astype(np.int32)
  )


def test_sobel_kernels_are_opencv_ksize5():
  # cv2.getDerivKernels(1, 0, 5): derivative [-1, -2, 0, 2, 1] along x, smoothing [1, 4, 6, 4, 1] along y.
  kx = np.array(
    [
      [-1, -2, 0, 2, 1],
      [-4, -8, 0, 8, 4],
      [-6, -12, 0, 12, 6],
      [-4, -8, 0, 8, 4],
      [-1, -2, 0, 2, 1],
    ],
    np.float32,
  )
  np.testing.assert_array_equal(losses.SOBEL_KERNEL_X5, kx)
  np.testing.assert_array_equal(losses.SOBEL_KERNEL_Y5, kx.T)


def test_sobel_target_hand_step():
  # 7.5 m | 15 m step between columns 3 and 4 -> normalised step 0.5; |gx| = 48 * 0.5 = 24 > 20 at the two
  # adjacent columns, 16 * 0.5 = 8 one column further out.
  d = np.full((1, 6, 8), 7.5, np.float32)
  d[0, :, 4:] = 15.0
  expected = np.zeros((1, 6, 8), np.int32)
  expected[0, :, 3:5] = 1
  np.testing.assert_array_equal(np.asarray(losses.sobel_edge_target(d)), expected)


def np_sobel_target(depth, norm=15.0, thr=20, combine="or", suppress=True):
  smooth = np.array([1, 4, 6, 4, 1], np.float64)
  deriv = np.array([-1, -2, 0, 2, 1], np.float64)
  kx = smooth[:, None] * deriv[None, :]
  valid = np.isfinite(depth) & (depth > 0)
  n = np.where(valid, np.clip(np.nan_to_num(depth), 0, norm) / norm, 0.0)
  out = []
  for b in range(depth.shape[0]):
    # cv2 BORDER_REFLECT_101 == scipy 'mirror'; cv2.Sobel correlates (no kernel flip).
    gx = ndimage.correlate(n[b], kx, mode="mirror")
    gy = ndimage.correlate(n[b], kx.T, mode="mirror")
    ax = np.minimum(np.round(np.abs(gx)), 255).astype(np.uint8)
    ay = np.minimum(np.round(np.abs(gy)), 255).astype(np.uint8)
    e = (ax > thr) | (ay > thr) if combine == "or" else (ax | ay) > thr
    if suppress:
      near = ndimage.maximum_filter((~valid[b]).astype(np.uint8), size=5, mode="mirror") > 0
      e = e & ~near
    out.append(e.astype(np.int32))
  return np.stack(out)


@pytest.mark.parametrize("combine", ["or", "bitwise_or"])
@pytest.mark.parametrize("suppress", [True, False])
def test_sobel_target_matches_scipy(combine, suppress):
  rng = np.random.default_rng(10)
  d = rng.uniform(0.5, 20.0, (2, 9, 11)).astype(np.float32)
  d[0, 4, 5] = 0.0
  d[1, 0, 0] = np.nan
  got = np.asarray(losses.sobel_edge_target(d, combine=combine, suppress_invalid=suppress))
  np.testing.assert_array_equal(got, np_sobel_target(d, combine=combine, suppress=suppress))
  assert 0 < got.sum() < got.size  # non-trivial case


def test_contour_and_sobel_cross_entropy():
  rng = np.random.default_rng(11)
  lab = rng.integers(0, 3, (1, 5, 6))
  logits = rng.normal(size=(1, 5, 6, 2)).astype(np.float32)
  tgt = (
    ndimage.maximum_filter(lab, size=(1, 3, 3), mode="nearest")
    - ndimage.minimum_filter(lab, size=(1, 3, 3), mode="nearest")
    > 0
  ).astype(np.int64)
  close(losses.contour_cross_entropy(logits, lab), np_ce(logits, tgt, ignore=-1), rtol=1e-5)
  d = rng.uniform(0.5, 20.0, (1, 5, 6)).astype(np.float32)
  close(
    losses.sobel_edge_cross_entropy(logits, d),
    np_ce(logits, np_sobel_target(d), ignore=-1),
    rtol=1e-5,
  )


# ----------------------------------------------------------------------------------------------------------
# Depth target transforms.
# ----------------------------------------------------------------------------------------------------------


def test_depth_target_transforms():
  y = np.array([[[0.0, 3.0, 15.0, 30.0]]], np.float32)
  valid = y > 0
  t, v = losses.depth_target_transform(y, valid, "normalised", depth_norm=15.0)
  close(t, [[[0.0, 0.2, 1.0, 1.0]]])
  t, v = losses.depth_target_transform(y, valid, "inverted_normalised", depth_norm=15.0)
  close(t, [[[0.0, 0.8, 0.0, 0.0]]])
  t, v = losses.depth_target_transform(y, np.ones_like(valid), "log")
  np.testing.assert_array_equal(np.asarray(v), [[[False, True, True, True]]])
  close(t, [[[0.0, math.log(3.0), math.log(15.0), math.log(30.0)]]])
  with pytest.raises(ValueError, match="depth_norm"):
    losses.depth_target_transform(y, valid, "normalised")
  with pytest.raises(ValueError, match="metres"):
    losses.depth_target_transform(y, valid, "furlongs")


# ----------------------------------------------------------------------------------------------------------
# Composer.
# ----------------------------------------------------------------------------------------------------------


def _batch(rng, B=2, H=6, W=8, C=4):
  depth = rng.uniform(0.5, 9.0, (B, H, W)).astype(np.float32)
  depth[0, 0, 0] = 0.0
  depth[0, 0, 1] = np.nan
  seg = rng.integers(0, C, (B, H, W)).astype(np.int32)
  seg[1, 2, 3] = 255
  return {
    "depth": depth,
    "segmentation": seg,
    "has_depth": np.ones(B, bool),
    "has_segmentation": np.ones(B, bool),
    "mask": np.ones(B, bool),
  }


def test_build_loss_resizes_targets_and_weights_terms():
  rng = np.random.default_rng(12)
  batch = _batch(rng)
  outputs = {
    "depth": rng.uniform(0.5, 9, (2, 3, 4, 1)).astype(np.float32),
    "seg_logits": rng.normal(size=(2, 3, 4, 4)).astype(np.float32),
  }
  fn = losses.build_loss(
    {"d": {"type": "l1", "weight": 2.0}, "s": {"type": "softmax_ce", "weight": 0.5}}
  )
  total, aux = jax.jit(fn)(outputs, batch)
  y = np_resize_nearest(batch["depth"], 3, 4)  # rows 0, 2, 4; cols 0, 2, 4, 6
  valid = np.isfinite(y) & (y > 1e-3)
  l1 = np.abs(outputs["depth"][..., 0] - y)[valid].mean()
  ce = np_ce(outputs["seg_logits"], np_resize_nearest(batch["segmentation"], 3, 4))
  close(aux["d"], l1, rtol=1e-5)
  close(aux["s"], ce, rtol=1e-5)
  close(total, 2 * l1 + 0.5 * ce, rtol=1e-5)
  close(aux["total"], total)


def test_build_loss_masks_examples():
  rng = np.random.default_rng(13)
  batch = _batch(rng)
  batch["has_depth"] = np.array([True, False])
  batch["has_segmentation"] = np.array([False, True])
  outputs = {
    "depth": rng.uniform(0.5, 9, (2, 6, 8, 1)).astype(np.float32),
    "seg_logits": rng.normal(size=(2, 6, 8, 4)).astype(np.float32),
  }
  fn = losses.build_loss({"d": {"type": "l1"}, "s": {"type": "softmax_ce"}})
  _, aux = fn(outputs, batch)
  y = batch["depth"][:1]
  v = np.isfinite(y) & (y > 1e-3)
  close(aux["d"], np.abs(outputs["depth"][:1, ..., 0] - y)[v].mean(), rtol=1e-5)
  close(aux["s"], np_ce(outputs["seg_logits"][1:], batch["segmentation"][1:]), rtol=1e-5)
  # Padding examples (mask False) drop out too.
  batch["mask"] = np.array([False, True])
  _, aux = fn(outputs, batch)
  close(aux["d"], 0.0)


def test_build_loss_depth_range_and_target_options():
  rng = np.random.default_rng(14)
  batch = _batch(rng)
  pred = rng.uniform(0, 1, (2, 6, 8, 1)).astype(np.float32)
  y = batch["depth"]
  fn = losses.build_loss({"d": {"type": "l2_mean", "max_depth": 5.0, "min_depth": 1.0}})
  v = np.isfinite(y) & (y > 1.0) & (y < 5.0)
  close(fn({"depth": pred}, batch)[0], 0.5 * ((pred[..., 0] - y) ** 2)[v].mean(), rtol=1e-5)
  # Paper 000 preset: inverted normalised target (256 m), no masking except non-finite pixels; depth 0 -> 0.
  total, _ = losses.build_loss("000_depth")({"depth": pred}, batch)
  fin = np.isfinite(y)
  t = np.where(y > 0, 1 - np.minimum(np.nan_to_num(y) / 256.0, 1.0), 0.0)
  close(total, 0.0005 * ((pred[..., 0] - t) ** 2)[fin].sum(), rtol=1e-5)


def test_build_loss_sid_preset_uses_sid_bins():
  rng = np.random.default_rng(15)
  B, H, W = 1, 2, 4
  depth = np.array([[[0.0, 0.5, 3.0, 79.0], [80.5, 10.0, 1.0, np.nan]]], np.float32)
  logits = rng.normal(size=(B, H, W, 71)).astype(np.float32)
  batch = {"depth": depth, "has_depth": np.array([True])}
  total, _ = losses.build_loss("002_sid")({"depth_logits": logits}, batch)
  ids = np.full((B, H, W), 255)
  for idx in np.ndindex(depth.shape):
    y = depth[idx]
    if np.isfinite(y) and 1e-3 < y < 80.0:
      ids[idx] = min(max(math.floor(71 * math.log(y / 1.0) / math.log(80.0)), 0), 70)
  assert (ids != 255).sum() == 5
  close(total, np_ce(logits, ids), rtol=1e-5)
  with pytest.raises(ValueError, match="71 classes"):
    losses.build_loss("002_sid")({"depth_logits": logits[..., :70]}, batch)


def test_build_loss_001_preset():
  rng = np.random.default_rng(16)
  batch = _batch(rng)
  outputs = {
    "depth": rng.uniform(0.5, 9, (2, 6, 8, 1)).astype(np.float32),
    "seg_logits": rng.normal(size=(2, 6, 8, 4)).astype(np.float32),
  }
  total, aux = losses.build_loss("001_hybrid")(outputs, batch)
  y = batch["depth"]
  v = np.isfinite(y) & (y > 1e-3)
  yz = np.where(v, y, 0)
  p = outputs["depth"][..., 0]
  labs = ((p - yz) ** 2)[v].sum() / 4
  lmvn = ((np_mvn(p, v) - np_mvn(yz, v)) ** 2)[v].sum() / 4
  ls = np_ce(outputs["seg_logits"], batch["segmentation"])
  close(total, 1000 * ls + labs + lmvn, rtol=1e-5)
  assert set(aux) == {"seg", "depth_abs", "depth_mvn", "total"}


def test_build_loss_edge_terms_read_aux_outputs():
  rng = np.random.default_rng(17)
  batch = _batch(rng)
  logits = rng.normal(size=(2, 6, 8, 2)).astype(np.float32)
  outputs = {"aux": {"contour_logits": logits, "sobel_logits": logits}}
  fn = losses.build_loss(
    {"c": {"type": "contour_ce"}, "e": {"type": "sobel_ce", "threshold": 10.0}}
  )
  _, aux = fn(outputs, batch)
  lab = batch["segmentation"]
  tgt = (
    ndimage.maximum_filter(lab, size=(1, 3, 3), mode="nearest")
    - ndimage.minimum_filter(lab, size=(1, 3, 3), mode="nearest")
    > 0
  ).astype(np.int64)
  close(aux["c"], np_ce(logits, tgt, ignore=-1), rtol=1e-5)
  close(aux["e"], np_ce(logits, np_sobel_target(batch["depth"], thr=10.0), ignore=-1), rtol=1e-5)


def test_build_loss_errors():
  with pytest.raises(KeyError, match="berhu"):
    losses.build_loss({"d": {"type": "nope"}})
  with pytest.raises(KeyError, match="000_unet"):
    losses.build_loss("nope")
  with pytest.raises(KeyError, match="type"):
    losses.build_loss({"d": {"weight": 1.0}})
  with pytest.raises(ValueError, match="threshold"):
    losses.build_loss({"d": {"type": "l1", "threshold": "code"}})
  with pytest.raises(ValueError, match="depth_norm"):
    losses.build_loss({"d": {"type": "l1", "target": "normalised"}})
  with pytest.raises(ValueError, match="bins"):
    losses.build_loss({"d": {"type": "sid_ce"}})
  fn = losses.build_loss({"d": {"type": "l1"}})
  with pytest.raises(KeyError, match="depth"):
    fn({"seg_logits": np.zeros((1, 2, 2, 3))}, {"depth": np.ones((1, 2, 2))})
  with pytest.raises(KeyError, match="batch"):
    fn({"depth": np.zeros((1, 2, 2, 1))}, {"segmentation": np.ones((1, 2, 2))})


def test_every_registered_type_and_preset_builds():
  for name in losses.PRESETS:
    assert callable(losses.build_loss(name))
  needs = {"sid_ce": {"bins": {"kind": "sid"}}, "soft_cls": {"bins": {"kind": "log10"}}}
  for ltype in losses.LOSS_REGISTRY:
    assert callable(losses.build_loss({"t": {"type": ltype, **needs.get(ltype, {})}}))


def test_config_dict_spec():
  ml_collections = pytest.importorskip("ml_collections")
  cfg = ml_collections.ConfigDict({"d": {"type": "berhu", "threshold": "paper", "weight": 0.5}})
  fn = losses.build_loss(cfg)
  pred = np.ones((1, 1, 5, 1), np.float32)
  target = np.array([[[1.0, 2.0, 3.0, 10.0, 0.0]]], np.float32)
  total, _ = fn({"depth": pred}, {"depth": target})
  close(total, 0.5 * (0 + 1 + 2 + 85 / 4) / 4)
