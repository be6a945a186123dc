"""Hypothesis property tests of semdepth_jax.losses: finiteness, masking, invariances, jit, resizing."""

import functools
import math

import jax
import jax.numpy as jnp
import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from semdepth_jax import losses

SETTINGS = settings(
  max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow], derandomize=True
)

B, H, W, C, NB = 3, 4, 5, 3, 6  # batch, GT size, classes, depth-bin classes

# One term of every registered type (plus the main switches), all in one spec so one jit covers them.
ALL_TERMS = {
  "l1": {"type": "l1"},
  "l1_log": {"type": "l1", "target": "log"},
  "l1_norm": {"type": "l1", "target": "normalised", "depth_norm": 15.0, "min_depth": 0.0},
  "l2_mean": {"type": "l2_mean", "max_depth": 10.0},
  "l2_sum_raw": {"type": "l2_sum", "mask_invalid": False},
  "l2_sum_inv": {
    "type": "l2_sum",
    "target": "inverted_normalised",
    "depth_norm": 20.0,
    "mask_invalid": False,
  },
  "euclidean": {"type": "euclidean"},
  "mvn_euclidean": {"type": "mvn_euclidean"},
  "berhu": {"type": "berhu"},
  "berhu_paper_sg": {"type": "berhu", "threshold": "paper", "stop_gradient_threshold": True},
  "si": {"type": "scale_invariant"},
  "si_log": {"type": "scale_invariant", "pred_is_log": True, "lam": 1.0},
  "ce": {"type": "softmax_ce"},
  "ce_all": {"type": "softmax_ce", "normalization": "all"},
  "bce": {"type": "bce_onehot"},
  "bce_keras_plane0": {"type": "bce_onehot", "keras_clip": True, "ignore_mode": "plane0"},
  "dice": {"type": "dice"},
  "ftl": {"type": "focal_tversky", "alpha": 0.7},
  "dice_ce": {"type": "dice_ce"},
  "ftl_ce": {"type": "ftl_ce"},
  "sid": {"type": "sid_ce", "bins": {"kind": "sid", "alpha": 1.0, "beta": 10.0, "num_bins": NB}},
  "soft": {
    "type": "soft_cls",
    "bins": {"kind": "log10", "alpha": 1.0, "beta": 10.0, "num_bins": NB - 1},
  },
  "contour": {"type": "contour_ce"},
  "sobel": {"type": "sobel_ce"},
}
DEPTH_SIDE = {"depth", "depth_logits", "sobel_logits"}  # outputs supervised by depth
# Terms that are exactly 0 when no pixel has a valid depth target.
DEPTH_TERMS = [
  k for k, v in ALL_TERMS.items() if losses.LOSS_REGISTRY[v["type"]].kind in ("depth", "bins")
]


def make_outputs(rng, h=H, w=W, zero=False):
  def arr(*shape, lo=-2.0, hi=2.0):
    return np.zeros(shape, np.float32) if zero else rng.uniform(lo, hi, shape).astype(np.float32)

  return {
    "depth": arr(B, h, w, 1, lo=-1.0, hi=12.0),
    "seg_logits": arr(B, h, w, C),
    "depth_logits": arr(B, h, w, NB),
    "aux": {"contour_logits": arr(B, h, w, 2), "sobel_logits": arr(B, h, w, 2)},
  }


def make_batch(rng, mode, h=H, w=W):
  depth = rng.uniform(0.0, 14.0, (B, h, w)).astype(np.float32)
  pick = rng.random((B, h, w))
  depth[pick < 0.2] = 0.0
  depth[(pick >= 0.2) & (pick < 0.3)] = np.nan
  depth[(pick >= 0.3) & (pick < 0.33)] = np.inf
  seg = rng.integers(0, C, (B, h, w)).astype(np.int32)
  seg[rng.random((B, h, w)) < 0.2] = 255
  flags = {
    "has_depth": rng.random(B) < 0.7,
    "has_segmentation": rng.random(B) < 0.7,
    "mask": rng.random(B) < 0.85,
  }
  if mode == "all_invalid":
    depth = np.where(rng.random((B, h, w)) < 0.5, 0.0, np.nan).astype(np.float32)
    seg[:] = 255
  elif mode == "zeros":
    depth[:] = 0.0
  elif mode == "no_examples":
    flags = {k: np.zeros(B, bool) for k in flags}
  return {"depth": depth, "segmentation": seg, **flags}


@functools.cache
def _all_terms_fn():
  fn = losses.build_loss(ALL_TERMS)

  def values_and_grads(outputs, batch):
    _, aux = fn(outputs, batch)
    grads = {name: jax.grad(lambda o, n=name: fn(o, batch)[1][n])(outputs) for name in ALL_TERMS}
    return aux, grads

  def total_and_grad(outputs, batch):
    return jax.value_and_grad(lambda o: fn(o, batch)[0])(outputs)

  return fn, jax.jit(values_and_grads), jax.jit(total_and_grad)


def _finite(tree):
  return all(bool(np.all(np.isfinite(np.asarray(x)))) for x in jax.tree.leaves(tree))


def _max_abs(tree):
  return max(float(np.max(np.abs(np.asarray(x)))) for x in jax.tree.leaves(tree))


@SETTINGS
@given(
  seed=st.integers(0, 2**31 - 1),
  mode=st.sampled_from(["random", "all_invalid", "zeros", "no_examples"]),
  zero_pred=st.booleans(),
)
def test_every_term_finite_with_degenerate_inputs(seed, mode, zero_pred):
  rng = np.random.default_rng(seed)
  _, vg, _ = _all_terms_fn()
  aux, grads = vg(make_outputs(rng, zero=zero_pred), make_batch(rng, mode))
  for name in ALL_TERMS:
    assert _finite(aux[name]), (name, aux[name])
    assert _finite(grads[name]), name
  if mode == "no_examples":  # nothing supervises anything: every term is 0 with a zero gradient.
    for name in ALL_TERMS:
      assert float(aux[name]) == 0.0, name
      assert _max_abs(grads[name]) == 0.0, name
  if mode in ("all_invalid", "zeros"):  # no valid depth target anywhere.
    for name in DEPTH_TERMS:
      if ALL_TERMS[name].get("mask_invalid", True):
        assert float(aux[name]) == 0.0, name
        assert _max_abs(grads[name]) == 0.0, name


DIRECT_DEPTH_FNS = {
  "l1": losses.l1_loss,
  "l2_mean": losses.l2_mean_loss,
  "l2_sum": losses.l2_sum_loss,
  "euclidean": losses.euclidean_loss,
  "mvn_euclidean": losses.mvn_euclidean_loss,
  "berhu_code": losses.berhu_loss,
  "berhu_paper": functools.partial(losses.berhu_loss, threshold="paper"),
  "si": losses.scale_invariant_loss,
}


@functools.cache
def _direct_value_and_grad(name):
  fn = DIRECT_DEPTH_FNS[name]
  return jax.jit(jax.value_and_grad(lambda p, t, m: fn(p, t, m)))


@SETTINGS
@given(
  seed=st.integers(0, 2**31 - 1),
  mask_mode=st.sampled_from(["random", "none_valid", "all"]),
  zero_pred=st.booleans(),
)
def test_direct_depth_losses_finite_with_bad_targets(seed, mask_mode, zero_pred):
  # Called directly (no composer sanitising first): NaN / inf / 0 targets under the mask must not leak.
  rng = np.random.default_rng(seed)
  pred = (
    np.zeros((2, 3, 4), np.float32)
    if zero_pred
    else rng.uniform(-1, 5, (2, 3, 4)).astype(np.float32)
  )
  target = rng.uniform(0, 5, (2, 3, 4)).astype(np.float32)
  pick = rng.random(target.shape)
  target[pick < 0.2] = np.nan
  target[(pick >= 0.2) & (pick < 0.3)] = np.inf
  target[(pick >= 0.3) & (pick < 0.4)] = 0.0
  mask = {"random": rng.random(target.shape) < 0.6, "none_valid": np.zeros(target.shape, bool)}.get(
    mask_mode, np.ones(target.shape, bool)
  )
  for name in DIRECT_DEPTH_FNS:
    value, grad = _direct_value_and_grad(name)(pred, target, mask)
    assert np.isfinite(float(value)), name
    assert np.all(np.isfinite(np.asarray(grad))), name
    if mask_mode == "none_valid":
      assert float(value) == 0.0, name
      assert np.all(np.asarray(grad) == 0.0), name


def _replace_examples(tree, rows, rng):
  def rep(x):
    x = np.array(x, copy=True)
    noise = rng.uniform(-50, 50, x[rows].shape).astype(x.dtype)
    x[rows] = noise
    return x

  return jax.tree.map(rep, tree)


@SETTINGS
@given(seed=st.integers(0, 2**31 - 1))
def test_unsupervised_examples_do_not_change_loss_or_gradient(seed):
  rng = np.random.default_rng(seed)
  _, _, jitted = _all_terms_fn()
  outputs = make_outputs(rng)
  batch = make_batch(rng, "random")
  batch["mask"][0] = True
  batch["has_depth"][0] = True
  batch["has_segmentation"][0] = True
  no_depth = ~(batch["has_depth"] & batch["mask"])
  no_seg = ~(batch["has_segmentation"] & batch["mask"])

  # Change everything that belongs to an unsupervised (example, task): targets and predictions.
  batch2 = dict(batch)
  depth2 = batch["depth"].copy()
  depth2[no_depth] = np.where(rng.random(depth2[no_depth].shape) < 0.5, np.nan, 3.0)
  seg2 = batch["segmentation"].copy()
  seg2[no_seg] = rng.integers(0, C, seg2[no_seg].shape)
  batch2["depth"], batch2["segmentation"] = depth2, seg2
  outputs2 = {
    "depth": _replace_examples(outputs["depth"], no_depth, rng),
    "depth_logits": _replace_examples(outputs["depth_logits"], no_depth, rng),
    "seg_logits": _replace_examples(outputs["seg_logits"], no_seg, rng),
    "aux": {
      "sobel_logits": _replace_examples(outputs["aux"]["sobel_logits"], no_depth, rng),
      "contour_logits": _replace_examples(outputs["aux"]["contour_logits"], no_seg, rng),
    },
  }

  t1, g1 = jitted(outputs, batch)
  t2, g2 = jitted(outputs2, batch2)
  np.testing.assert_allclose(float(t1), float(t2), rtol=1e-6)
  flat1 = jax.tree_util.tree_flatten_with_path(g1)[0]
  flat2 = jax.tree.leaves(g2)
  for (path, a), b in zip(flat1, flat2, strict=True):
    key = jax.tree_util.keystr(path)
    rows = no_depth if any(k in key for k in DEPTH_SIDE) else no_seg
    np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-5, atol=1e-7, err_msg=key)
    assert np.all(np.asarray(a)[rows] == 0.0), key


@SETTINGS
@given(
  seed=st.integers(0, 2**31 - 1),
  scale=st.floats(0.1, 10.0, allow_nan=False, allow_infinity=False),
)
def test_scale_invariant_loss_with_lambda_one_ignores_global_scale(seed, scale):
  rng = np.random.default_rng(seed)
  pred = rng.uniform(0.5, 8.0, (2, 3, 4)).astype(np.float32)
  target = rng.uniform(0.5, 8.0, (2, 3, 4)).astype(np.float32)
  mask = rng.random((2, 3, 4)) < 0.8
  base = float(losses.scale_invariant_loss(pred, target, mask, lam=1.0))
  scaled = float(losses.scale_invariant_loss(pred * np.float32(scale), target, mask, lam=1.0))
  np.testing.assert_allclose(scaled, base, rtol=1e-3, atol=1e-5)


@settings(max_examples=6, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(0, 2**31 - 1), mode=st.sampled_from(["random", "all_invalid"]))
def test_jit_equals_eager(seed, mode):
  rng = np.random.default_rng(seed)
  fn, _, _ = _all_terms_fn()
  outputs, batch = make_outputs(rng), make_batch(rng, mode)
  _, eager = fn(outputs, batch)
  _, jitted = jax.jit(fn)(outputs, batch)
  for name in eager:
    np.testing.assert_allclose(float(jitted[name]), float(eager[name]), rtol=2e-5, err_msg=name)


def _np_resize(x, h, w):
  Hh, Ww = x.shape[1:3]
  # Aligned pixel centres: floor((i + 0.5) * in / out) (semdepth_jax.resize.nearest).
  return x[:, [min(math.floor((i + 0.5) * Hh / h), Hh - 1) for i in range(h)]][
    :, :, [min(math.floor((j + 0.5) * Ww / w), Ww - 1) for j in range(w)]
  ]


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
  seed=st.integers(0, 2**31 - 1),
  gt_hw=st.tuples(st.integers(2, 9), st.integers(2, 9)),
  pred_hw=st.tuples(st.integers(1, 6), st.integers(1, 6)),
)
def test_composer_resizes_targets_to_prediction(seed, gt_hw, pred_hw):
  rng = np.random.default_rng(seed)
  batch = make_batch(rng, "random", *gt_hw)
  batch["has_depth"][:] = True
  batch["has_segmentation"][:] = True
  batch["mask"][:] = True
  outputs = make_outputs(rng, *pred_hw)
  fn = losses.build_loss({"d": {"type": "l1"}, "s": {"type": "softmax_ce"}})
  _, aux = fn(outputs, batch)
  y = _np_resize(batch["depth"], *pred_hw)
  valid = np.isfinite(y) & (y > 1e-3)
  err = np.abs(outputs["depth"][..., 0].astype(np.float64) - y)
  ref_d = err[valid].mean() if valid.any() else 0.0
  np.testing.assert_allclose(float(aux["d"]), ref_d, rtol=1e-5, atol=1e-6)

  lab = _np_resize(batch["segmentation"], *pred_hw)
  lg = outputs["seg_logits"].astype(np.float64)
  lsm = lg - lg.max(-1, keepdims=True)
  lsm = lsm - np.log(np.exp(lsm).sum(-1, keepdims=True))
  ok = lab != 255
  nll = -np.take_along_axis(lsm, np.where(ok, lab, 0)[..., None], -1)[..., 0]
  ref_s = nll[ok].mean() if ok.any() else 0.0
  np.testing.assert_allclose(float(aux["s"]), ref_s, rtol=1e-5, atol=1e-6)


def test_depth_bins_round_trip_through_composer_is_jittable():
  # The composer's bin encoding runs inside jit (depth_bins.encode is traced, not evaluated on host).
  rng = np.random.default_rng(0)
  fn = losses.build_loss({"sid": ALL_TERMS["sid"]})
  out = make_outputs(rng)
  batch = make_batch(rng, "random")
  v1 = jax.jit(fn)(out, batch)[0]
  v2 = fn(out, batch)[0]
  np.testing.assert_allclose(float(v1), float(v2), rtol=1e-6)
  assert jnp.isfinite(v1)
