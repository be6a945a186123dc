"""Tests for paper 000's models (U-Net, SCRX, 3D CNN-S, 3D CNN-UP, SSegDep-Net) and OHESS construction."""

import functools
import math

import flax
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from semdepth_jax.models import get_model, ohess
from semdepth_jax.models.ssegdepnet import SSegDepNet

PAPER_HW = (192, 320)
NC = 14  # paper 000's classes.

TINY = {
  "unet": {"base_width": 2},
  "scrx": {"widths": (4, 4, 3, 2), "refine_widths": (4, 3)},
  "cnn3d_s": {"widths": (2, 2, 3)},
  "cnn3d_up": {"widths": (2, 2, 2), "bottleneck_width": 3, "up_widths": (2, 3)},
  "ssegdepnet": {
    "unet": {"base_width": 2},
    "depth_net": {"widths": (2, 2, 2), "bottleneck_width": 2, "up_widths": (2, 2)},
  },
}
TINY_HW = (32, 48)


def key(seed):
  # XLA's RngBitGenerator compiles ~10x faster than threefry on CPU; the tests do not need threefry's
  # splitting guarantees.
  return jax.random.key(seed, impl="unsafe_rbg")


def n_params(tree):
  return sum(math.prod(a.shape) for a in jax.tree.leaves(tree))


def abstract_init(model, hw=PAPER_HW, batch=1):
  image = jax.ShapeDtypeStruct((batch, *hw, 3), jnp.float32)
  return jax.eval_shape(lambda x: model.init(key(0), x, train=False), image)


def tiny_batch(hw=TINY_HW, batch=2, seed=0):
  rng = np.random.default_rng(seed)
  image = rng.uniform(size=(batch, *hw, 3)).astype(np.float32)
  labels = rng.integers(0, NC, size=(batch, *hw)).astype(np.int32)
  labels[:, :2, :2] = 255
  return jnp.asarray(image), jnp.asarray(labels)


# ----------------------------------------------------------------------------------------------------
# OHESS construction on a hand-made label map.
# ----------------------------------------------------------------------------------------------------
LABELS = np.array([[[0, 1, 255], [2, 3, 1]]], np.int32)  # (1, 2, 3), 4 classes, one ignored pixel.


def test_ohess_from_labels_one_hot_and_ignore_modes():
  p = np.asarray(ohess.ohess_from_labels(jnp.asarray(LABELS), 4))
  assert p.shape == (1, 2, 3, 4) and p.dtype == np.float32
  expected = np.zeros((1, 2, 3, 4), np.float32)
  for (i, j), c in np.ndenumerate(LABELS[0]):
    if c != 255:
      expected[0, i, j, c] = 1
  np.testing.assert_array_equal(p, expected)
  assert p[0, 0, 2].sum() == 0  # Ignored pixel: all-zero.
  p0 = np.asarray(ohess.ohess_from_labels(jnp.asarray(LABELS), 4, ignore_mode="plane0"))
  expected[0, 0, 2, 0] = 1  # Reference code: void -> plane 0 ("Miscellaneous").
  np.testing.assert_array_equal(p0, expected)


def test_ohess_from_labels_subset_zeroes_other_classes():
  p = np.asarray(ohess.ohess_from_labels(jnp.asarray(LABELS), 4, classes=(3, 1)))
  assert p.shape == (1, 2, 3, 2)
  np.testing.assert_array_equal(p[0, ..., 0], [[0, 0, 0], [0, 1, 0]])  # class 3
  np.testing.assert_array_equal(p[0, ..., 1], [[0, 1, 0], [0, 0, 1]])  # class 1
  assert ohess.num_planes(4, (3, 1)) == 2 and ohess.num_planes(4) == 4


@pytest.mark.parametrize(
  "kwargs,match",
  [
    ({"classes": (1, 4)}, r"\[0, 4\)"),
    ({"classes": (1, 1)}, "repeated"),
    ({"classes": ()}, "at least"),
  ],
)
def test_ohess_class_selection_errors(kwargs, match):
  with pytest.raises(ValueError, match=match):
    ohess.ohess_from_labels(jnp.asarray(LABELS), 4, **kwargs)


def test_ohess_from_labels_rejects_float_labels():
  with pytest.raises(ValueError, match="integer"):
    ohess.ohess_from_labels(jnp.zeros((1, 2, 2)), 4)


# Logits of 3 pixels x 3 classes: (a) two classes above 0 (sigmoid > 0.5), (b) none, (c) one.
LOGITS = np.array([[[[2.0, 1.0, -3.0], [-1.0, -0.5, -2.0], [-4.0, 0.3, -0.1]]]], np.float32)


def test_ohess_from_logits_threshold_vs_argmax():
  thr = np.asarray(ohess.ohess_from_logits(jnp.asarray(LOGITS), "threshold"))
  np.testing.assert_array_equal(thr[0, 0], [[1, 1, 0], [0, 0, 0], [0, 1, 0]])  # Multi-hot / empty.
  arg = np.asarray(ohess.ohess_from_logits(jnp.asarray(LOGITS), "argmax"))
  np.testing.assert_array_equal(arg[0, 0], [[1, 0, 0], [0, 1, 0], [0, 1, 0]])  # Exactly one.
  sub = np.asarray(ohess.ohess_from_logits(jnp.asarray(LOGITS), "argmax", classes=(1,)))
  np.testing.assert_array_equal(sub[0, 0, :, 0], [0, 1, 1])
  thr9 = np.asarray(ohess.ohess_from_logits(jnp.asarray(LOGITS), "threshold", threshold=0.9))
  np.testing.assert_array_equal(thr9[0, 0], [[0, 0, 0], [0, 0, 0], [0, 0, 0]])  # sigmoid(2) = 0.88.


def test_ohess_from_logits_soft_modes_match_numpy_and_are_differentiable():
  e = np.exp(LOGITS - LOGITS.max(-1, keepdims=True))
  soft = np.asarray(ohess.ohess_from_logits(jnp.asarray(LOGITS), "softmax", classes=(2, 0)))
  np.testing.assert_allclose(soft, (e / e.sum(-1, keepdims=True))[..., [2, 0]], rtol=1e-6)
  sig = np.asarray(ohess.ohess_from_logits(jnp.asarray(LOGITS), "sigmoid"))
  np.testing.assert_allclose(sig, 1 / (1 + np.exp(-LOGITS)), rtol=1e-6)
  for mode, nonzero in (
    ("softmax", True),
    ("sigmoid", True),
    ("threshold", False),
    ("argmax", False),
  ):
    g = jax.grad(lambda x, mode=mode: jnp.sum(ohess.ohess_from_logits(x, mode)[..., 0]))(
      jnp.asarray(LOGITS)
    )
    assert bool(jnp.any(g != 0)) == nonzero, mode
  with pytest.raises(ValueError, match="mode"):
    ohess.ohess_from_logits(jnp.asarray(LOGITS), "gumbel")


def test_rgb_ohess_volume_plane_order_and_padding():
  image, labels = tiny_batch(hw=(4, 5), batch=1)
  planes = ohess.ohess_from_labels(labels, NC)
  vol = np.asarray(ohess.rgb_ohess_volume(image, planes))
  assert vol.shape == (1, 3 + NC, 4, 5, 1)
  for c in range(3):
    np.testing.assert_array_equal(vol[0, c, :, :, 0], np.asarray(image)[0, :, :, c])
  for j in range(NC):
    np.testing.assert_array_equal(vol[0, 3 + j, :, :, 0], np.asarray(labels)[0] == j)
  small = np.asarray(ohess.rgb_ohess_volume(image, planes[..., :2], min_depth=12))
  assert small.shape == (1, 12, 4, 5, 1) and np.all(small[:, 5:] == 0)
  np.testing.assert_array_equal(small[:, :5], vol[:, :5])


# ----------------------------------------------------------------------------------------------------
# Shapes and parameter counts at the paper's configuration (abstract evaluation only).
# ----------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
  "name,overrides,expected",
  [
    ("unet", {}, {"seg_logits": (1, 192, 320, NC)}),
    ("scrx", {}, {"depth": (1, 46, 78, 1)}),
    ("scrx", {"paper_output_size": True, "use_ohess": False}, {"depth": (1, 192, 320, 1)}),
    ("cnn3d_s", {}, {"depth": (1, 46, 78, 1)}),
    ("cnn3d_s", {"paper_output_size": True}, {"depth": (1, 192, 320, 1)}),
    ("cnn3d_up", {}, {"depth": (1, 184, 312, 1)}),
    ("cnn3d_up", {"paper_output_size": True}, {"depth": (1, 192, 320, 1)}),
    ("ssegdepnet", {}, {"depth": (1, 184, 312, 1), "seg_logits": (1, 192, 320, NC)}),
  ],
)
def test_output_shapes_at_paper_size(name, overrides, expected):
  model = get_model(name, **overrides)
  variables = abstract_init(model)
  image = jax.ShapeDtypeStruct((1, *PAPER_HW, 3), jnp.float32)
  labels = jax.ShapeDtypeStruct((1, *PAPER_HW), jnp.int32)
  out = jax.eval_shape(lambda v, x, y: model.apply(v, x, y, train=False), variables, image, labels)
  for key, shape in expected.items():
    assert out[key].shape == shape and out[key].dtype == jnp.float32, (key, out[key])
  assert isinstance(out["aux"], dict)


# Layer-table arithmetic (model_spec §1.1-§1.4): conv = prod(k) * cin * cout + cout (every Keras conv has a
# bias), BN = 2c trainable (scale, bias) + 2c batch statistics (mean, var).
def conv(k, cin, cout):
  return math.prod(k) * cin * cout + cout


K2, K1, K3 = (3, 3), (1, 1), (3, 3, 3)


def unet_counts(w=64, c=NC):
  def block(cin, cout):  # conv-BN-ReLU x 2.
    return conv(K2, cin, cout) + 2 * cout + conv(K2, cout, cout) + 2 * cout, 4 * cout

  p = s = 0
  cin = 3
  for i in range(5):  # c1 .. c5.
    dp, ds = block(cin, w * 2**i)
    p, s, cin = p + dp, s + ds, w * 2**i
  for i in (3, 2, 1, 0):  # u6..u9 ConvTranspose 3x3 (bias), concat skip, c6..c9.
    dp, ds = block(2 * w * 2**i, w * 2**i)
    p += conv(K2, cin, w * 2**i) + dp
    s += ds
    cin = w * 2**i
  return p + conv(K1, w, c), s


def scrx_counts(cin):
  def rb(ci, co):  # conv3x3+BN, conv3x3+BN, shortcut conv1x1+BN.
    return conv(K2, ci, co) + conv(K2, co, co) + conv(K1, ci, co) + 3 * 2 * co, 3 * 2 * co

  p = s = 0
  for ci, co in ((cin, 128), (128, 64), (64, 32), (32, 16)):
    dp, ds = rb(ci, co)
    p, s = p + dp, s + ds
  p += conv(K2, 16, 1)  # global depth.
  p += conv(K2, cin, 128) + 2 * 128 + conv(K2, 128, 63) + 2 * 63  # refinement.
  s += 2 * 128 + 2 * 63
  return p + conv(K2, 64, 1), s  # head ('valid').


def cnn3d_s_counts():
  p = conv(K3, 1, 64) + conv(K3, 64, 64) + 2 * 64  # stage 1 + BN
  p += conv(K3, 64, 64) + conv(K3, 64, 64) + 2 * 64  # stage 2 + BN
  p += conv(K3, 64, 128) + conv(K3, 128, 128) + conv(K3, 128, 1)
  return p, 2 * 64 + 2 * 64


def cnn3d_up_counts():
  p = conv(K3, 1, 64) + 2 * 64 + 5 * (conv(K3, 64, 64) + 2 * 64)  # conv1-6, each + BN.
  p += conv(K3, 64, 64) + 2 * 64  # conv7 'valid' (no BN) + BN after the pooling.
  p += 2 * (conv(K3, 64, 64) + 2 * 64) + conv(K3, 64, 1)  # deconv1-2 + BN, deconv3.
  return p, 9 * 2 * 64


def test_parameter_counts_at_paper_widths():
  expected = {
    "unet": unet_counts(),
    "scrx": scrx_counts(3 + NC),
    "cnn3d_s": cnn3d_s_counts(),
    "cnn3d_up": cnn3d_up_counts(),
  }
  expected["ssegdepnet"] = tuple(
    a + b for a, b in zip(expected["unet"], expected["cnn3d_up"], strict=True)
  )
  for name, (params, stats) in expected.items():
    v = abstract_init(get_model(name))
    assert (n_params(v["params"]), n_params(v["batch_stats"])) == (params, stats), name
  v = abstract_init(get_model("scrx", use_ohess=False))
  assert (n_params(v["params"]), n_params(v["batch_stats"])) == scrx_counts(3)
  # Top-N OHESS: 8 planes -> SCRX input 11 channels.
  v = abstract_init(get_model("scrx", ohess_classes=tuple(range(8))))
  assert n_params(v["params"]) == scrx_counts(11)[0]


def test_unet_kernel_shapes_follow_table():
  p = abstract_init(get_model("unet"))["params"]
  assert p["c1"]["conv1"]["conv"]["kernel"].shape == (3, 3, 3, 64)
  assert p["c5"]["conv2"]["conv"]["kernel"].shape == (3, 3, 1024, 1024)
  assert p["u6"]["kernel"].shape == (3, 3, 1024, 512) and p["u6"]["bias"].shape == (512,)
  assert p["c6"]["conv1"]["conv"]["kernel"].shape == (3, 3, 1024, 512)
  assert p["out"]["kernel"].shape == (1, 1, 64, NC)


# ----------------------------------------------------------------------------------------------------
# Tiny widths: forward/backward, jit, BatchNorm and dropout behaviour.
# ----------------------------------------------------------------------------------------------------
def _loss(out):
  total = 0.0
  if "depth" in out:
    total = total + jnp.mean(out["depth"] ** 2)
  if "seg_logits" in out:
    total = total + jnp.mean(jax.nn.sigmoid(out["seg_logits"]))
  return total


@pytest.mark.parametrize("name", ["unet", "scrx", "cnn3d_s", "cnn3d_up", "ssegdepnet"])
def test_tiny_forward_backward_finite_and_batch_stats_update_only_in_training(name):
  model = get_model(name, **TINY[name])
  image, labels = tiny_batch()
  variables = jax.jit(lambda x: model.init(key(0), x, train=False))(image)
  params, stats = variables["params"], variables["batch_stats"]

  @jax.jit
  def train_step(params, stats, image, labels):
    def f(p):
      out, upd = model.apply(
        {"params": p, "batch_stats": stats},
        image,
        labels,
        train=True,
        mutable=["batch_stats"],
        rngs={"dropout": key(1)},
      )
      return _loss(out), (out, upd["batch_stats"])

    return jax.value_and_grad(f, has_aux=True)(params)

  (loss, (out, new_stats)), grads = train_step(params, stats, image, labels)
  assert np.isfinite(float(loss))
  assert all(bool(jnp.all(jnp.isfinite(g))) for g in jax.tree.leaves(grads))
  assert any(float(jnp.abs(g).max()) > 0 for g in jax.tree.leaves(grads))
  assert jax.tree.structure(new_stats) == jax.tree.structure(stats)
  assert any(
    bool(jnp.any(a != b))
    for a, b in zip(jax.tree.leaves(new_stats), jax.tree.leaves(stats), strict=True)
  )

  # Evaluation: running averages used (the collection comes back unchanged), deterministic.
  evaluate = jax.jit(lambda v, x, y: model.apply(v, x, y, train=False, mutable=["batch_stats"]))
  o1, upd = evaluate({"params": params, "batch_stats": stats}, image, labels)
  o2, _ = evaluate({"params": params, "batch_stats": stats}, image, labels)
  for a in jax.tree.leaves(o1):
    assert bool(jnp.all(jnp.isfinite(a)))
  jax.tree.map(np.testing.assert_array_equal, o1, o2)
  jax.tree.map(np.testing.assert_array_equal, upd["batch_stats"], stats)


def test_cnn3d_up_dropout_only_in_training():
  image, labels = tiny_batch(batch=1)
  for placement in ("after_pool", "after_conv"):
    model = get_model("cnn3d_up", **TINY["cnn3d_up"], dropout_rate=0.5, dropout_placement=placement)
    v = model.init(key(0), image, labels)

    @functools.partial(jax.jit, static_argnums=0)
    def run(train, rng, v=v, model=model):
      out, _ = model.apply(
        v, image, labels, train=train, mutable=["batch_stats"], rngs={"dropout": rng}
      )
      return out["depth"]

    np.testing.assert_array_equal(run(False, key(0)), run(False, key(1)))
    np.testing.assert_array_equal(run(True, key(3)), run(True, key(3)))
    assert float(jnp.abs(run(True, key(3)) - run(True, key(4))).max()) > 0, placement
  with pytest.raises(ValueError, match="dropout_placement"):
    get_model("cnn3d_up", **TINY["cnn3d_up"], dropout_placement="before_pool").init(key(0), image)


def test_unet_dropout_needs_rng_only_in_training():
  model = get_model("unet", **TINY["unet"])
  image, _ = tiny_batch(batch=1)
  v = model.init(key(0), image)
  model.apply(v, image, train=False)  # No rng needed at evaluation.
  with pytest.raises(flax.errors.InvalidRngError, match="dropout"):
    model.apply(v, image, train=True, mutable=["batch_stats"])


def test_depth_models_need_labels_outside_init():
  image, labels = tiny_batch(batch=1)
  model = get_model("scrx", **TINY["scrx"])
  v = model.init(key(0), image)
  with pytest.raises(ValueError, match="labels"):
    model.apply(v, image)
  rgb_only = get_model("scrx", **TINY["scrx"], use_ohess=False)
  v = rgb_only.init(key(0), image)
  assert rgb_only.apply(v, image)["depth"].shape == (1, 6, 10, 1)


def test_unet_rejects_sizes_not_divisible_by_16():
  model = get_model("unet", **TINY["unet"])
  with pytest.raises(ValueError, match="divisible"):
    model.init(key(0), jnp.zeros((1, 40, 48, 3)))


def test_cnn3d_up_few_planes_are_zero_padded_and_subset_planes_follow_labels():
  image, labels = tiny_batch(batch=1)
  model = get_model("cnn3d_up", **TINY["cnn3d_up"], ohess_classes=(3, 5))  # D = 5 -> padded to 12.
  v = model.init(key(0), image, labels)
  out = model.apply(v, image, labels)
  assert out["depth"].shape == (1, 24, 40, 1)  # 32x48 -> 8x12 -> 6x10 -> 3x5 -> x8.
  # Equivalent to passing the planes explicitly.
  planes = ohess.ohess_from_labels(labels, NC, (3, 5))
  np.testing.assert_allclose(model.apply(v, image, ohess=planes)["depth"], out["depth"], rtol=1e-6)


def test_sigmoid_heads_in_metres_need_max_depth():
  image, labels = tiny_batch(batch=1)
  with pytest.raises(ValueError, match="max_depth"):
    get_model("cnn3d_s", **TINY["cnn3d_s"], depth_output="metres").init(key(0), image)
  model = get_model("cnn3d_s", **TINY["cnn3d_s"], depth_output="metres", max_depth=80.0)
  v = model.init(key(0), image)
  d = model.apply(v, image, labels)["depth"]
  assert float(d.min()) > 0 and float(d.max()) < 80.0


# ----------------------------------------------------------------------------------------------------
# SSegDep-Net staging.
# ----------------------------------------------------------------------------------------------------
def _sseg(**kw):
  return get_model("ssegdepnet", **TINY["ssegdepnet"], **kw)


def test_ssegdepnet_same_tree_in_every_stage_and_unet_tree_matches_registered_unet():
  image, _ = tiny_batch(batch=1)
  trees = []
  for kw in ({}, {"stage": "seg"}, {"ohess_source": "gt"}, {"ohess_mode": "softmax"}):
    v = jax.eval_shape(lambda x, kw=kw: _sseg(**kw).init(key(0), x), image)
    assert set(v["params"]) == {"unet", "depth_net"} and set(v["batch_stats"]) == {
      "unet",
      "depth_net",
    }
    trees.append(jax.tree.map(lambda a: (a.shape, a.dtype), v))
  for t in trees[1:]:
    assert t == trees[0]
  u = jax.eval_shape(lambda x: get_model("unet", base_width=2).init(key(0), x), image)
  u_tree = jax.tree.map(lambda a: (a.shape, a.dtype), u)
  assert u_tree == {k: trees[0][k]["unet"] for k in ("params", "batch_stats")}


def test_ssegdepnet_inference_equals_manual_composition():
  image, labels = tiny_batch(batch=1)
  model = _sseg()
  v = model.init(key(0), image)
  out = model.apply(v, image)
  assert set(out) == {"depth", "seg_logits", "aux"} and set(out["aux"]) == {"seg_probs", "ohess"}
  unet = get_model("unet", base_width=2)
  seg = unet.apply({k: v[k]["unet"] for k in v}, image)
  np.testing.assert_allclose(out["seg_logits"], seg["seg_logits"], rtol=1e-6, atol=1e-6)
  planes = (np.asarray(seg["aux"]["seg_probs"]) > 0.5).astype(np.float32)
  np.testing.assert_array_equal(out["aux"]["ohess"], planes)
  depth_net = get_model("cnn3d_up", widths=(2, 2, 2), bottleneck_width=2, up_widths=(2, 2))
  d = depth_net.apply({k: v[k]["depth_net"] for k in v}, image, ohess=jnp.asarray(planes))
  np.testing.assert_allclose(out["depth"], d["depth"], rtol=1e-5, atol=1e-6)
  # Labels are ignored by the U-Net path; ground-truth OHESS is used with ohess_source='gt'.
  gt = _sseg(ohess_source="gt").apply(v, image, labels)
  assert set(gt) == {"depth", "aux"}
  np.testing.assert_array_equal(gt["aux"]["ohess"], ohess.ohess_from_labels(labels, NC))
  d_gt = depth_net.apply({k: v[k]["depth_net"] for k in v}, image, labels)
  np.testing.assert_allclose(gt["depth"], d_gt["depth"], rtol=1e-5, atol=1e-6)
  with pytest.raises(ValueError, match="labels"):
    _sseg(ohess_source="gt").apply(v, image)


@pytest.mark.parametrize(
  "kw,unet_grad,depth_grad",
  [
    ({"stage": "seg"}, True, False),
    ({"ohess_source": "gt"}, False, True),
    (
      {"ohess_mode": "threshold"},
      False,
      True,
    ),  # Depth loss only: thresholded planes block gradients.
    ({"ohess_mode": "softmax"}, True, True),  # End-to-end fine-tuning.
  ],
)
def test_ssegdepnet_stage_gradients_and_untouched_stats(kw, unet_grad, depth_grad):
  image, labels = tiny_batch(batch=1)
  model = _sseg(**kw)
  v = model.init(key(0), image)

  def loss(params):
    out, upd = model.apply(
      {"params": params, "batch_stats": v["batch_stats"]},
      image,
      labels,
      train=True,
      mutable=["batch_stats"],
      rngs={"dropout": key(2)},
    )
    value = jnp.mean(out["depth"] ** 2) if "depth" in out else jnp.mean(out["seg_logits"] ** 2)
    return value, upd["batch_stats"]

  grads, stats = jax.jit(jax.grad(loss, has_aux=True))(v["params"])

  def nonzero(tree):
    return any(float(jnp.abs(g).max()) > 0 for g in jax.tree.leaves(tree))

  assert nonzero(grads["unet"]) == unet_grad
  assert nonzero(grads["depth_net"]) == depth_grad
  for part, used in (
    ("unet", kw.get("ohess_source") != "gt"),
    ("depth_net", kw.get("stage") != "seg"),
  ):
    same = all(
      bool(jnp.all(a == b))
      for a, b in zip(
        jax.tree.leaves(stats[part]), jax.tree.leaves(v["batch_stats"][part]), strict=True
      )
    )
    assert same != used, part


def test_ssegdepnet_option_errors():
  image, _ = tiny_batch(batch=1)
  for kw, match in (
    ({"stage": "depth"}, "stage"),
    ({"ohess_source": "pred"}, "ohess_source"),
    ({"ohess_mode": "max"}, "ohess_mode"),
    ({"ohess_classes": (0, 14)}, "ohess_classes"),
  ):
    with pytest.raises(ValueError, match=match):
      SSegDepNet(**TINY["ssegdepnet"], **kw).init(key(0), image)


@pytest.mark.parametrize("name", ["unet", "cnn3d_up"])
def test_exact_conv_transpose_impls_give_the_same_model(name):
  image, labels = tiny_batch(batch=1)
  model = get_model(name, **TINY[name], conv_transpose_impl="input_dilation")
  v = model.init(key(0), image)
  ref = jax.jit(lambda v: model.apply(v, image, labels))(v)
  other = get_model(name, **TINY[name], conv_transpose_impl="depth_to_space")
  out = jax.jit(lambda v: other.apply(v, image, labels))(v)
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5), ref, out)


def test_ssegdepnet_sub_configs_reach_the_submodules_and_reject_unknown_keys():
  image, labels = tiny_batch(batch=1)
  model = get_model(
    "ssegdepnet",
    unet={"base_width": 2},
    depth_net={"widths": [2, 3, 2], "bottleneck_width": 5, "up_widths": (2, 2)},
  )
  params = model.init(key(0), image, labels)["params"]
  # U-Net widths base_width * (1, 2, 4, 8, 16); 3D CNN-UP's conv7 has bottleneck_width filters.
  unet = {leaf.shape[-1] for leaf in jax.tree.leaves(params["unet"]["c1"]) if leaf.ndim == 4}
  assert unet == {2}
  assert max(leaf.shape[-1] for leaf in jax.tree.leaves(params["unet"]) if leaf.ndim == 4) in (
    32,
    NC,
  )
  widths = {leaf.shape[-1] for leaf in jax.tree.leaves(params["depth_net"]) if leaf.ndim == 5}
  assert 5 in widths and 3 in widths
  with pytest.raises(TypeError, match=r"ssegdepnet\.depth_net: unknown attribute\(s\) \['width'\]"):
    get_model("ssegdepnet", depth_net={"width": 2}).init(key(0), image, labels)
  with pytest.raises(
    TypeError, match=r"ssegdepnet\.unet: unknown attribute\(s\) \['num_classes'\]"
  ):
    get_model("ssegdepnet", unet={"num_classes": 3}).init(key(0), image, labels)


def test_ssegdepnet_flat_attributes_of_earlier_configs_still_load():
  image, labels = tiny_batch(batch=1)
  legacy = get_model(
    "ssegdepnet",
    unet_base_width=2,
    depth_widths=(2, 2, 2),
    depth_bottleneck_width=2,
    depth_up_widths=(2, 2),
    depth_conv_transpose_impl="resize_conv",
  )
  nested = get_model(
    "ssegdepnet",
    **TINY["ssegdepnet"]
    | {"depth_net": {**TINY["ssegdepnet"]["depth_net"], "conv_transpose_impl": "resize_conv"}},
  )
  a = legacy.init(key(0), image, labels)
  b = nested.init(key(0), image, labels)
  jax.tree.map(np.testing.assert_array_equal, a, b)
  np.testing.assert_array_equal(legacy.apply(a, image)["depth"], nested.apply(b, image)["depth"])
