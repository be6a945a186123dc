"""Property tests (hypothesis) of semdepth_jax.metrics.

Shapes are fixed so every example reuses one compiled function; values, masks and batchings vary.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from semdepth_jax import metrics as mt

SHAPE = (3, 5, 6)
SETTINGS = settings(max_examples=25, deadline=None)

ACC = mt.DepthAccumulator(min_depth=1e-3)
STEP = jax.jit(ACC.update)
PAD = 4  # every streamed batch is padded to 4 examples.

depth_values = st.floats(0.0625, 64.0, width=32)
depths = hnp.arrays(np.float32, SHAPE, elements=depth_values)
masks = hnp.arrays(np.bool_, SHAPE, elements=st.booleans())


def _gt(values, mask):
  g = np.where(mask, values, 0.0).astype(np.float32)
  g[0, 0, 0] = max(float(values[0, 0, 0]), 0.0625)  # at least one valid pixel in the set.
  return g


@SETTINGS
@given(pred=depths, gt=depths, mask=masks)
def test_deltas_in_unit_interval_and_ordered(pred, gt, mask):
  for per_image in (True, False):
    m = mt.depth_metrics(pred, _gt(gt, mask), per_image=per_image)
    assert 0.0 <= m["delta1"] <= m["delta2"] <= m["delta3"] <= 1.0
    for k in mt.DEPTH_METRIC_KEYS:
      assert np.isfinite(m[k]) and m[k] >= 0.0, k


@SETTINGS
@given(pred=depths, gt=depths, mask=masks, scale=st.floats(0.05, 20.0))
def test_sie_and_silog_invariant_to_global_scale(pred, gt, mask, scale):
  g = _gt(gt, mask)
  scaled = (pred * np.float32(scale)).astype(np.float32)
  for per_image in (True, False):
    a = mt.depth_metrics(pred, g, per_image=per_image)
    b = mt.depth_metrics(scaled, g, per_image=per_image)
    assert b["sie"] == pytest.approx(a["sie"], rel=1e-3, abs=2e-5)
    assert b["silog"] == pytest.approx(a["silog"], rel=1e-3, abs=0.05)


@SETTINGS
@given(
  labels=hnp.arrays(np.int32, SHAPE, elements=st.integers(0, 4)),
  ignore=masks,
)
def test_miou_is_one_for_identical_maps(labels, ignore):
  gt = np.where(ignore, 255, labels).astype(np.int32)
  gt[0, 0, 0] = labels[0, 0, 0]
  m = mt.segmentation_metrics(gt, gt, num_classes=5, ignore_index=255)
  assert m["miou"] == 1.0 and m["pixel_acc"] == 1.0 and m["mean_class_acc"] == 1.0
  assert m["fw_iou"] == pytest.approx(1.0)


@SETTINGS
@given(pred=depths, gt=depths, mask=masks, perm=st.permutations(range(SHAPE[0])))
def test_per_image_metrics_independent_of_batch_order(pred, gt, mask, perm):
  g = _gt(gt, mask)
  perm = np.asarray(perm)
  a = mt.depth_metrics(pred, g)
  b = mt.depth_metrics(pred[perm], g[perm])
  for k in mt.DEPTH_METRIC_KEYS:
    assert b[k] == pytest.approx(a[k], rel=1e-5, abs=1e-6), k


_jit_per_image = jax.jit(mt.per_image_depth_metrics)


@SETTINGS
@given(pred=depths, gt=depths, mask=masks)
def test_jit_equals_eager(pred, gt, mask):
  g = _gt(gt, mask)
  valid = g > 1e-3
  jitted, n_j = _jit_per_image(pred, g, valid)
  with jax.disable_jit():
    eager, n_e = mt.per_image_depth_metrics(pred, g, valid)
  np.testing.assert_array_equal(n_j, n_e)
  for k in mt.ALL_DEPTH_KEYS:
    np.testing.assert_allclose(jitted[k], eager[k], rtol=2e-5, atol=1e-6, err_msg=k)


@SETTINGS
@given(
  pred=hnp.arrays(np.float32, (7, 4, 5), elements=depth_values),
  gt=hnp.arrays(np.float32, (7, 4, 5), elements=depth_values),
  mask=hnp.arrays(np.bool_, (7, 4, 5), elements=st.booleans()),
  cuts=st.lists(st.integers(1, PAD), min_size=1, max_size=7),
)
def test_streaming_uneven_padded_batches_equal_one_shot(pred, gt, mask, cuts):
  g = np.where(mask, gt, 0.0).astype(np.float32)
  sizes, total = [], 0
  for c in cuts:
    c = min(c, 7 - total)
    if c:
      sizes.append(c)
      total += c
  while total < 7:
    sizes.append(min(PAD, 7 - total))
    total += sizes[-1]
  state = ACC.init()
  start = 0
  for s in sizes:
    p_b = np.concatenate([pred[start : start + s], np.full((PAD - s, 4, 5), 3.0, np.float32)])
    g_b = np.concatenate([g[start : start + s], np.full((PAD - s, 4, 5), 7.0, np.float32)])
    state = STEP(state, p_b, g_b, np.arange(PAD) < s)
    start += s
  for per_image in (True, False):
    got = ACC.finish(state, per_image=per_image)
    want = mt.depth_metrics(pred, g, per_image=per_image)
    for k in mt.DEPTH_METRIC_KEYS:
      # silog = 100 sqrt(sie): near sie = 0 a float32 rounding of ~1e-14 in sie (different summation
      # order over batches) is ~1e-5 in silog, so its absolute tolerance is 100 * sqrt(1e-10).
      tol = 1e-3 if k == "silog" else 1e-5
      assert got[k] == pytest.approx(want[k], rel=2e-5, abs=tol, nan_ok=True), k


def _loss(pred, gt, valid):
  m, _ = mt.per_image_depth_metrics(mt.clip_prediction(pred, 1e-3, 80.0), gt, valid)
  keys = ("abs_rel", "sq_rel", "rmse", "rmse_log", "log10", "silog", "sie", "mae", "irmse")
  return sum(jnp.sum(m[k]) for k in keys)


_grad = jax.jit(jax.grad(_loss))
special = st.sampled_from([0.0, np.nan, np.inf, -1.0, 1e-8, 5.0])


@SETTINGS
@given(
  pred=hnp.arrays(np.float32, SHAPE, elements=st.one_of(depth_values, special)),
  gt=hnp.arrays(np.float32, SHAPE, elements=st.one_of(depth_values, special)),
  all_invalid=st.booleans(),
)
def test_gradients_finite_on_degenerate_inputs(pred, gt, all_invalid):
  valid = mt.depth_valid_mask(gt, max_depth=80.0)
  if all_invalid:
    valid = jnp.zeros_like(valid)
  g = _grad(pred, gt, valid)
  assert np.all(np.isfinite(g))
