"""Tests for semdepth_jax.models.layers against NumPy references written here and jax.lax.conv_transpose."""

import itertools

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax import lax

from semdepth_jax import resize
from semdepth_jax.models import layers

RNG = np.random.default_rng(1234)


def key(seed):
  # XLA's RngBitGenerator compiles ~10x faster than threefry on CPU; the tests do not need threefry's
  # splitting guarantees.
  return jax.random.key(seed, impl="unsafe_rbg")


# ----------------------------------------------------------------------------------------------------
# Independent NumPy references.
# ----------------------------------------------------------------------------------------------------
def np_correlate(x, w, pads, strides=None):
  """Channels-last N-d cross-correlation: x (B, *S, I), w (*K, I, O), explicit (before, after) pads."""
  nd = w.ndim - 2
  strides = strides or (1,) * nd
  xp = np.pad(x, [(0, 0), *pads, (0, 0)])
  ksize = w.shape[:nd]
  out_shape = [(xp.shape[1 + a] - ksize[a]) // strides[a] + 1 for a in range(nd)]
  out = np.zeros((x.shape[0], *out_shape, w.shape[-1]), np.float64)
  for taps in itertools.product(*(range(k) for k in ksize)):
    sl = tuple(
      slice(t, t + (o - 1) * s + 1, s) for t, o, s in zip(taps, out_shape, strides, strict=True)
    )
    out += np.einsum("...i,io->...o", xp[(slice(None), *sl, slice(None))], w[taps])
  return out


def tf_same_pads(n, k, s):
  """TensorFlow 'SAME': out = ceil(n/s), total = max((out-1)*s + k - n, 0), extra at the end."""
  out = -(-n // s)
  total = max((out - 1) * s + k - n, 0)
  return (total // 2, total - total // 2)


def np_keras_conv_transpose(x, w, strides, padding):
  """Keras Conv*DTranspose as the gradient of a convolution: scatter x[i] * K[t] to i*s + t - pad.

  ``w`` is in this library's layout (*K, I, O), related to the Keras kernel by a flip of every spatial axis.
  """
  nd = w.ndim - 2
  ksize = w.shape[:nd]
  kk = w[
    tuple(slice(None, None, -1) for _ in range(nd))
  ]  # Keras kernel (flipped), channels (I, O).
  n = x.shape[1 : 1 + nd]
  full = [(n[a] - 1) * strides[a] + ksize[a] for a in range(nd)]
  out = np.zeros((x.shape[0], *full, w.shape[-1]), np.float64)
  for taps in itertools.product(*(range(k) for k in ksize)):
    sl = tuple(slice(t, t + (m - 1) * s + 1, s) for t, m, s in zip(taps, n, strides, strict=True))
    out[(slice(None), *sl, slice(None))] += np.einsum("...i,io->...o", x, kk[taps])
  if padding == "valid":
    return out
  crop = []
  for a in range(nd):
    top = (
      max(ksize[a] - strides[a], 0) // 2
    )  # TF: forward SAME conv from n*s to n pads (k-s) total.
    crop.append(slice(top, top + n[a] * strides[a]))
  return out[(slice(None), *crop, slice(None))]


def rand(*shape):
  return RNG.normal(size=shape).astype(np.float32)


# ----------------------------------------------------------------------------------------------------
# Padding arithmetic.
# ----------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
  "n,k,s,expected",
  [(5, 3, 1, (1, 1)), (4, 2, 1, (0, 1)), (6, 3, 2, (0, 1)), (5, 3, 2, (1, 1)), (7, 1, 2, (0, 0))],
)
def test_keras_same_padding_hand_values(n, k, s, expected):
  assert layers.keras_same_padding(n, k, s) == expected


@pytest.mark.parametrize(
  "k,s,padding,expected",
  [(3, 2, "same", (2, 1)), (3, 1, "same", (1, 1)), (2, 2, "same", (1, 1)), (3, 2, "valid", (2, 2))],
)
def test_transpose_padding_hand_values(k, s, padding, expected):
  # (3, 2, same): dilated 2n-1, +3 pad, -2 = 2n outputs; (3, 2, valid): 2n-1+4-2 = 2n+1 = (n-1)*2+3.
  assert layers.transpose_padding(k, s, padding) == expected


def test_padding_errors():
  with pytest.raises(ValueError, match="same"):
    layers.transpose_padding(3, 2, "full")
  with pytest.raises(ValueError, match="padding"):
    layers.conv_padding("circular", (4,), (3,), (1,), (1,))


# ----------------------------------------------------------------------------------------------------
# Conv.
# ----------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
  "shape,ksize,strides,padding",
  [
    ((2, 7, 6, 3), (3, 3), (1, 1), "same"),
    ((1, 7, 6, 3), (3, 3), (2, 2), "same"),
    ((1, 8, 5, 2), (2, 3), (2, 1), "same"),
    ((2, 7, 6, 3), (3, 3), (1, 1), "valid"),
    ((1, 5, 6, 7, 2), (3, 3, 3), (1, 1, 1), "same"),
    ((1, 1, 6, 7, 2), (3, 3, 3), (1, 1, 1), "same"),  # depth 1: the singleton-axis tap trimming.
    ((1, 5, 6, 7, 2), (3, 3, 3), (1, 1, 1), "valid"),
  ],
)
def test_conv_matches_numpy_with_keras_padding(shape, ksize, strides, padding):
  x = rand(*shape)
  conv = layers.Conv(4, ksize, strides=strides, padding=padding)
  variables = conv.init(key(0), jnp.asarray(x))
  w = np.asarray(variables["params"]["kernel"])
  b = RNG.normal(size=(4,)).astype(np.float32)
  variables = {"params": {"kernel": w, "bias": b}}
  y = np.asarray(conv.apply(variables, jnp.asarray(x)))
  if padding == "same":
    pads = [tf_same_pads(n, k, s) for n, k, s in zip(shape[1:-1], ksize, strides, strict=True)]
  else:
    pads = [(0, 0)] * len(ksize)
  ref = np_correlate(x, w, pads, strides) + b
  np.testing.assert_allclose(y, ref, rtol=1e-5, atol=1e-5)


def test_conv_rejects_wrong_rank():
  with pytest.raises(ValueError, match="3-D kernel"):
    layers.Conv(2, (3, 3, 3)).init(key(0), jnp.zeros((1, 4, 4, 1)))


def test_conv_initialisers_are_keras_defaults():
  v = layers.Conv(64, (3, 3, 3)).init(key(0), jnp.zeros((1, 4, 4, 4, 32)))
  k = np.asarray(v["params"]["kernel"])
  limit = np.sqrt(6.0 / (27 * 32 + 27 * 64))  # glorot_uniform, receptive field x channels.
  assert np.abs(k).max() <= limit and np.abs(k).max() > 0.9 * limit
  assert np.all(np.asarray(v["params"]["bias"]) == 0)


# ----------------------------------------------------------------------------------------------------
# Transposed convolution.
# ----------------------------------------------------------------------------------------------------
TRANSPOSE_CASES = [
  ((2, 3, 5, 4), (3, 3), (2, 2), "same"),  # U-Net's ConvTranspose 3x3 s2.
  ((1, 4, 3, 2), (2, 2), (2, 2), "same"),
  ((1, 3, 4, 2), (4, 3), (2, 3), "same"),
  ((1, 3, 4, 2), (3, 3), (2, 2), "valid"),
  ((1, 1, 3, 4, 3), (3, 3, 3), (1, 2, 2), "same"),  # 3D CNN-UP's deconvolutions (depth 1).
  ((2, 2, 3, 2, 2), (3, 3, 3), (1, 2, 2), "same"),
  ((1, 2, 3, 2, 2), (3, 2, 3), (2, 2, 2), "same"),
]


@pytest.mark.parametrize("shape,ksize,strides,padding", TRANSPOSE_CASES)
@pytest.mark.parametrize("impl", layers.EXACT_CONV_TRANSPOSE_IMPLS)
def test_conv_transpose_matches_lax_and_keras_scatter(shape, ksize, strides, padding, impl):
  x = rand(*shape)
  w = rand(*ksize, shape[-1], 3)
  nd = len(ksize)
  y = np.asarray(
    layers.conv_transpose_nd(
      jnp.asarray(x), jnp.asarray(w), strides=strides, padding=padding, impl=impl
    )
  )
  dn = ("NHWC", "HWIO", "NHWC") if nd == 2 else ("NDHWC", "DHWIO", "NDHWC")
  ref_lax = lax.conv_transpose(
    jnp.asarray(x), jnp.asarray(w), strides, padding.upper(), dimension_numbers=dn
  )
  ref_np = np_keras_conv_transpose(x, w, strides, padding)
  if padding == "same":
    assert y.shape[1:-1] == tuple(n * s for n, s in zip(shape[1:-1], strides, strict=True))
  np.testing.assert_allclose(y, np.asarray(ref_lax), rtol=1e-5, atol=1e-5)
  np.testing.assert_allclose(y, ref_np, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize(
  "shape,ksize,strides", [((1, 3, 4, 2), (3, 3), (2, 2)), ((1, 1, 3, 2, 2), (3, 3, 3), (1, 2, 2))]
)
def test_conv_transpose_gradients_agree_between_exact_impls(shape, ksize, strides):
  x = jnp.asarray(rand(*shape))
  w = jnp.asarray(rand(*ksize, shape[-1], 3))
  g = jnp.asarray(rand(*shape[:1], *(n * s for n, s in zip(shape[1:-1], strides, strict=True)), 3))

  def loss(x, w, impl):
    return jnp.sum(layers.conv_transpose_nd(x, w, strides=strides, impl=impl) * g)

  grads = {
    impl: jax.grad(loss, argnums=(0, 1))(x, w, impl) for impl in layers.EXACT_CONV_TRANSPOSE_IMPLS
  }
  ref = grads["input_dilation"]
  for impl, (gx, gw) in grads.items():
    np.testing.assert_allclose(gx, ref[0], rtol=1e-4, atol=1e-4, err_msg=impl)
    np.testing.assert_allclose(gw, ref[1], rtol=1e-4, atol=1e-4, err_msg=impl)


def test_resize_conv_is_nearest_upsample_then_same_conv_and_differs_from_transpose():
  x = rand(1, 3, 4, 2)
  w = rand(3, 3, 2, 3)
  y = np.asarray(
    layers.conv_transpose_nd(jnp.asarray(x), jnp.asarray(w), strides=(2, 2), impl="resize_conv")
  )
  up = np.repeat(np.repeat(x, 2, axis=1), 2, axis=2)
  ref = np_correlate(up, w, [(1, 1), (1, 1)])
  np.testing.assert_allclose(y, ref, rtol=1e-5, atol=1e-5)
  exact = np.asarray(layers.conv_transpose_nd(jnp.asarray(x), jnp.asarray(w), strides=(2, 2)))
  assert y.shape == exact.shape
  assert np.abs(y - exact).max() > 1e-2


def test_conv_transpose_module_params_shapes_and_errors():
  m = layers.ConvTranspose(5, (3, 3, 3), strides=(1, 2, 2), impl="pad_conv")
  v = m.init(key(0), jnp.zeros((1, 1, 3, 4, 2)))
  assert v["params"]["kernel"].shape == (3, 3, 3, 2, 5)
  assert v["params"]["bias"].shape == (5,)
  assert m.apply(v, jnp.zeros((1, 1, 3, 4, 2))).shape == (1, 1, 6, 8, 5)
  with pytest.raises(ValueError, match="impl"):
    layers.ConvTranspose(2, (3, 3), impl="fft").init(key(0), jnp.zeros((1, 2, 2, 1)))
  with pytest.raises(ValueError, match="resize_conv"):
    layers.conv_transpose_nd(
      jnp.zeros((1, 2, 2, 1)),
      jnp.zeros((3, 3, 1, 1)),
      strides=2,
      padding="valid",
      impl="resize_conv",
    )


# ----------------------------------------------------------------------------------------------------
# Pooling, resize, blocks.
# ----------------------------------------------------------------------------------------------------
def np_max_pool(x, window):
  nd = x.ndim - 2
  outs = [x.shape[1 + a] // window[a] for a in range(nd)]
  out = np.full((x.shape[0], *outs, x.shape[-1]), -np.inf, np.float32)
  for taps in itertools.product(*(range(w) for w in window)):
    sl = tuple(slice(t, t + o * w, w) for t, o, w in zip(taps, outs, window, strict=True))
    out = np.maximum(out, x[(slice(None), *sl, slice(None))])
  return out


@pytest.mark.parametrize(
  "shape,window",
  [((2, 7, 9, 3), (2, 2)), ((1, 17, 7, 5, 2), (2, 2, 2)), ((1, 3, 6, 5, 2), (3, 2, 2))],
)
@pytest.mark.parametrize("impl", ["reshape", "reduce_window"])
def test_max_pool_matches_numpy_floor_mode(shape, window, impl):
  x = rand(*shape)
  y = np.asarray(layers.max_pool(jnp.asarray(x), window, impl=impl))
  np.testing.assert_array_equal(y, np_max_pool(x, window))


def test_max_pool_gradients_agree_without_ties():
  x = jnp.asarray(rand(1, 4, 6, 2))
  g = {
    impl: jax.grad(lambda x, impl=impl: jnp.sum(layers.max_pool(x, (2, 2), impl=impl) ** 2))(x)
    for impl in ("reshape", "reduce_window")
  }
  np.testing.assert_allclose(g["reshape"], g["reduce_window"], rtol=1e-6)


def test_resize_bilinear_half_pixel_no_antialias():
  x = np.arange(4, dtype=np.float32).reshape(1, 1, 4, 1)
  y = np.asarray(layers.resize_bilinear(jnp.asarray(x), (1, 8)))[0, 0, :, 0]
  # Half-pixel centres: output j samples input (j + 0.5) / 2 - 0.5, clamped at the borders.
  src = np.clip((np.arange(8) + 0.5) / 2 - 0.5, 0, 3)
  np.testing.assert_allclose(y, np.interp(src, np.arange(4), x[0, 0, :, 0]), rtol=1e-6)
  x2 = rand(1, 8, 8, 1)
  down = np.asarray(layers.resize_bilinear(jnp.asarray(x2), (4, 4)))
  # 2x downsampling without antialiasing = average of the 2x2 neighbours at the centre.
  ref = 0.25 * (x2[:, 0::2, 0::2] + x2[:, 1::2, 0::2] + x2[:, 0::2, 1::2] + x2[:, 1::2, 1::2])
  np.testing.assert_allclose(down, ref, rtol=1e-5, atol=1e-6)


def test_align_corners_resize_hand_values():
  """Caffe Interp zoom 2 (model_spec §2.2): 3 -> 5 inserts midpoints; the corners stay put."""
  x = np.array([1.0, 3.0, 7.0], np.float32).reshape(1, 1, 3, 1)
  y = np.asarray(resize.bilinear_align_corners(jnp.asarray(x), (1, 5)))[0, 0, :, 0]
  np.testing.assert_allclose(y, [1.0, 2.0, 3.0, 5.0, 7.0], rtol=1e-6)
  # 41 -> 81 (= 2 * 41 - 1): even outputs are the inputs, odd ones the means of their neighbours.
  x2 = rand(2, 41, 41, 3)
  y2 = np.asarray(resize.bilinear_align_corners(jnp.asarray(x2), (81, 81)))
  np.testing.assert_allclose(y2[:, ::2, ::2], x2, rtol=1e-5, atol=1e-6)
  np.testing.assert_allclose(y2[:, 1::2, ::2], 0.5 * (x2[:, :-1] + x2[:, 1:]), rtol=1e-5, atol=1e-6)
  # A general size: output i samples i * (n_in - 1) / (n_out - 1) (np.interp on each row).
  x3 = rand(1, 1, 4, 1)
  y3 = np.asarray(resize.bilinear_align_corners(jnp.asarray(x3), (1, 7)))[0, 0, :, 0]
  np.testing.assert_allclose(y3, np.interp(np.arange(7) * 3 / 6, np.arange(4), x3[0, 0, :, 0]))
  # Downsampling picks the aligned samples (no antialiasing), and one output row is input row 0.
  y4 = np.asarray(resize.bilinear_align_corners(jnp.asarray(x2), (1, 21)))
  np.testing.assert_allclose(y4[:, 0], x2[:, 0, ::2], rtol=1e-5, atol=1e-6)
  with pytest.raises(ValueError, match="sizes must be >= 1"):
    resize.align_corners_matrix(0, 3)


def np_lrn(x, size, alpha, beta, k):
  """Caffe ACROSS_CHANNELS LRN by its definition, one channel at a time."""
  c = x.shape[-1]
  out = np.empty_like(x)
  for i in range(c):
    lo, hi = max(0, i - (size - 1) // 2), min(c, i + size // 2 + 1)
    s = np.sum(x[..., lo:hi] ** 2, axis=-1)
    out[..., i] = x[..., i] / (k + alpha / size * s) ** beta
  return out


@pytest.mark.parametrize(
  "size,alpha,beta,k", [(5, 1e-4, 0.75, 1.0), (3, 0.5, 0.5, 2.0), (4, 1.0, 1, 1)]
)
def test_local_response_norm_matches_definition(size, alpha, beta, k):
  x = 10.0 * rand(2, 3, 4, 7)
  m = layers.LocalResponseNorm(size, alpha, beta, k)
  y = np.asarray(m.apply({}, jnp.asarray(x)))
  np.testing.assert_allclose(y, np_lrn(x, size, alpha, beta, k), rtol=1e-5, atol=1e-6)
  # One channel alone: b = a / (k + alpha / n * a^2) ** beta.
  one = np.asarray(m.apply({}, jnp.full((1, 1, 1, 1), 3.0)))
  np.testing.assert_allclose(one, 3.0 / (k + alpha / size * 9.0) ** beta, rtol=1e-6)
  with pytest.raises(ValueError, match="size must be >= 1"):
    layers.LocalResponseNorm(0).apply({}, jnp.asarray(x))


def _bn_eval(x, p, s, eps=1e-3):
  return (x - s["mean"]) / np.sqrt(s["var"] + eps) * p["scale"] + p["bias"]


def _randomise(tree):
  return jax.tree.map(lambda a: RNG.uniform(0.5, 1.5, size=a.shape).astype(np.float32), tree)


@pytest.mark.parametrize("order", ["conv_bn_act", "conv_act_bn"])
def test_conv_bn_act_order(order):
  x = rand(1, 5, 6, 2)
  m = layers.ConvBNAct(3, (3, 3), order=order)
  v = m.init(key(0), jnp.asarray(x))
  params = jax.tree.map(np.asarray, v["params"])
  params["bn"]["bias"] = RNG.normal(size=3).astype(np.float32)  # Makes the two orders differ.
  stats = _randomise(v["batch_stats"])
  y = np.asarray(m.apply({"params": params, "batch_stats": stats}, jnp.asarray(x), train=False))
  c = np_correlate(x, params["conv"]["kernel"], [(1, 1), (1, 1)]) + params["conv"]["bias"]
  if order == "conv_bn_act":
    ref = np.maximum(_bn_eval(c, params["bn"], stats["bn"]), 0)
  else:
    ref = _bn_eval(np.maximum(c, 0), params["bn"], stats["bn"])
  np.testing.assert_allclose(y, ref, rtol=1e-4, atol=1e-5)


def test_residual_block_pre_activation_and_projection():
  x = rand(2, 5, 4, 3)  # Negative inputs: the pre-ReLU zeroes them in the main path only.
  m = layers.ResidualBlock(4)
  v = m.init(key(0), jnp.asarray(x))
  params = jax.tree.map(np.asarray, v["params"])
  stats = _randomise(v["batch_stats"])
  y = np.asarray(m.apply({"params": params, "batch_stats": stats}, jnp.asarray(x)))
  same = [(1, 1), (1, 1)]
  h = np_correlate(np.maximum(x, 0), params["conv1"]["kernel"], same) + params["conv1"]["bias"]
  h = np.maximum(_bn_eval(h, params["bn1"], stats["bn1"]), 0)
  h = np_correlate(h, params["conv2"]["kernel"], same) + params["conv2"]["bias"]
  h = _bn_eval(h, params["bn2"], stats["bn2"])
  s = (
    np_correlate(x, params["shortcut_conv"]["kernel"], [(0, 0), (0, 0)])
    + params["shortcut_conv"]["bias"]
  )
  s = _bn_eval(s, params["shortcut_bn"], stats["shortcut_bn"])
  np.testing.assert_allclose(y, np.maximum(s + h, 0), rtol=1e-4, atol=1e-5)
  # Identity shortcut when asked and the width does not change.
  v2 = layers.ResidualBlock(3, project_shortcut=False).init(key(0), jnp.asarray(x))
  assert "shortcut_conv" not in v2["params"]


def test_keras_batch_norm_constants_and_train_flag():
  bn = layers.keras_batch_norm(True)
  assert (bn.momentum, bn.epsilon, bn.use_running_average) == (0.99, 1e-3, False)
  assert layers.keras_batch_norm(False).use_running_average


def test_depth_head_output():
  x = jnp.full((1, 2, 3, 1), 0.0)
  common = {"depth_output": "metres", "out_size": None, "where": "t"}
  with pytest.raises(ValueError, match="max_depth"):
    layers.depth_head_output(x, final_activation="sigmoid", max_depth=None, **common)
  y = layers.depth_head_output(x, final_activation="sigmoid", max_depth=80.0, **common)
  np.testing.assert_allclose(y, 40.0)
  y = layers.depth_head_output(
    x - 1,
    final_activation="relu",
    depth_output="inverted_normalised",
    max_depth=None,
    out_size=(4, 6),
    where="t",
  )
  assert y.shape == (1, 4, 6, 1) and y.dtype == jnp.float32 and float(jnp.abs(y).max()) == 0.0
  with pytest.raises(ValueError, match="depth_output"):
    layers.depth_head_output(
      x, final_activation="relu", depth_output="mm", max_depth=None, out_size=None, where="t"
    )
  with pytest.raises(ValueError, match="activation"):
    layers.depth_head_output(x, final_activation="tanh", max_depth=None, **common)


def test_bf16_compute_dtype():
  m = layers.Conv(3, (3, 3), dtype=jnp.bfloat16)
  v = m.init(key(0), jnp.zeros((1, 4, 4, 2)))
  assert v["params"]["kernel"].dtype == jnp.float32
  assert m.apply(v, jnp.ones((1, 4, 4, 2))).dtype == jnp.bfloat16
  assert isinstance(m, nn.Module)


# ----------------------------------------------------------------------------------------------------
# Grouped / depthwise convolution and configurable / frozen BatchNorm.
# ----------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
  "groups,cin,cout,strides,dilation",
  [(1, 4, 6, 1, 1), (2, 4, 6, 1, 1), (4, 4, 4, 2, 1), (6, 6, 6, 1, 2), (3, 6, 9, 2, 1)],
)
def test_grouped_conv_matches_per_group_numpy(groups, cin, cout, strides, dilation):
  x = rand(2, 9, 7, cin)
  conv = layers.Conv(
    cout, (3, 3), strides=strides, kernel_dilation=dilation, feature_group_count=groups
  )
  variables = conv.init(key(0), jnp.asarray(x))
  w = np.asarray(variables["params"]["kernel"])
  assert w.shape == (3, 3, cin // groups, cout)
  y = np.asarray(conv.apply(variables, jnp.asarray(x)))
  # Reference: each group is an ordinary convolution of its input slice with its output slice.
  k_eff = 2 * dilation + 1
  w_dil = np.zeros((k_eff, k_eff, cin // groups, cout), np.float32)
  w_dil[::dilation, ::dilation] = w
  pads = [tf_same_pads(n, k_eff, strides) for n in x.shape[1:3]]
  gi, go = cin // groups, cout // groups
  ref = np.concatenate(
    [
      np_correlate(
        x[..., g * gi : (g + 1) * gi], w_dil[..., g * go : (g + 1) * go], pads, (strides,) * 2
      )
      for g in range(groups)
    ],
    axis=-1,
  )
  np.testing.assert_allclose(y, ref, rtol=1e-5, atol=1e-5)


def test_depthwise_conv_is_one_filter_per_channel():
  x = rand(1, 6, 5, 3)
  conv = layers.depthwise_conv(3, (3, 3), use_bias=False)
  variables = conv.init(key(1), jnp.asarray(x))
  w = np.asarray(variables["params"]["kernel"])
  assert w.shape == (3, 3, 1, 3)
  y = np.asarray(conv.apply(variables, jnp.asarray(x)))
  for c in range(3):
    ref = np_correlate(x[..., c : c + 1], w[..., :, c : c + 1], [(1, 1), (1, 1)])
    np.testing.assert_allclose(y[..., c : c + 1], ref, rtol=1e-5, atol=1e-5)
  with pytest.raises(ValueError, match="divisible by feature_group_count"):
    layers.Conv(4, (3, 3), feature_group_count=3).init(key(0), jnp.zeros((1, 4, 4, 3)))


def test_batch_norm_spec_constants():
  bn = layers.batch_norm(True, layers.TORCH_BN)
  assert (bn.momentum, bn.epsilon, bn.use_running_average) == (0.9, 1e-5, False)
  assert isinstance(layers.batch_norm(True, layers.FROZEN_BN), layers.FrozenBatchNorm)


def test_frozen_batch_norm_uses_stored_statistics_and_never_changes():
  import optax

  from semdepth_jax.train import step as step_lib
  from semdepth_jax.train.state import create_state

  class Net(nn.Module):
    @nn.compact
    def __call__(self, image, *, train=False):
      x = layers.Conv(4, (3, 3), name="conv")(image)
      x = layers.batch_norm(train, layers.FROZEN_BN, name="bn")(x)
      return {"depth": layers.Conv(1, (1, 1), name="out")(x)}

  x = rand(2, 6, 5, 3)
  net = Net()
  variables = net.init(key(0), jnp.asarray(x))
  assert set(variables["batch_stats"]["bn"]) == {"mean", "var", "scale", "bias"}
  assert "bn" not in variables["params"]
  stats = {
    k: jnp.asarray(RNG.uniform(0.5, 2.0, size=(4,)).astype(np.float32))
    for k in ("mean", "var", "scale", "bias")
  }
  variables = {"params": variables["params"], "batch_stats": {"bn": stats}}
  # Same (stored-statistics) output in train and eval mode, equal to the hand formula.
  h = np.asarray(layers.Conv(4, (3, 3)).apply({"params": variables["params"]["conv"]}, x))
  s = {k: np.asarray(v) for k, v in stats.items()}
  ref = (h - s["mean"]) / np.sqrt(s["var"] + 1e-5) * s["scale"] + s["bias"]
  bn_out = layers.FrozenBatchNorm().apply({"batch_stats": stats}, jnp.asarray(h))
  np.testing.assert_allclose(np.asarray(bn_out), ref, rtol=1e-5, atol=1e-5)

  # A train step with SGD + decoupled weight decay moves the convolutions, not the frozen layer.
  def loss_fn(outputs, batch):
    return jnp.mean((outputs["depth"][..., 0] - batch["depth"]) ** 2), {}

  tx = optax.chain(optax.add_decayed_weights(0.1), optax.sgd(0.1))
  state = create_state(
    variables["params"], variables["batch_stats"], tx.init(variables["params"]), key(1), 0
  )
  step_fn = jax.jit(step_lib.make_train_step(net, loss_fn, tx))
  batch = {"image": jnp.asarray(x), "depth": jnp.ones((2, 6, 5))}
  new_state, metrics = step_fn(state, batch)
  assert bool(metrics["finite"])
  for k in stats:
    np.testing.assert_array_equal(np.asarray(new_state.batch_stats["bn"][k]), s[k])
  assert not np.allclose(
    np.asarray(new_state.params["conv"]["kernel"]), np.asarray(state.params["conv"]["kernel"])
  )
