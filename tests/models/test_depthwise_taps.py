"""``layers.depthwise_conv_impl('taps')``: depthwise convolution as slices x per-channel weights.

Reference: the grouped ``lax.conv_general_dilated`` (``'conv'``), values and gradients; the EfficientNet and
DS-SIDENet parity tests against timm / smp / the PyTorch references run with the default (``'auto'`` =
taps on CPU), which checks the taps path against PyTorch as well.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from semdepth_jax.models import get_model, layers

CASES = [
  # (input shape, kernel size, strides, padding, dilation)
  ((2, 9, 11, 6), (3, 3), (1, 1), ((1, 1), (1, 1)), (1, 1)),  # 'same' 3x3
  (
    (2, 9, 12, 4),
    (3, 3),
    (2, 2),
    ((0, 1), (1, 1)),
    (1, 1),
  ),  # stride 2, TF 'same' (larger half after)
  ((1, 13, 10, 5), (5, 5), (1, 1), ((4, 4), (4, 4)), (2, 2)),  # 5x5 atrous
  ((2, 8, 8, 3), (3, 2), (1, 2), ((-1, 2), (0, 0)), (1, 1)),  # cropping, even kernel, mixed stride
  ((2, 3, 6, 5, 4), (3, 3, 3), (1, 2, 1), ((1, 1),) * 3, (1, 1, 1)),  # 3-D (NDHWC)
]


def _fn(impl, strides, padding, dil, groups):
  def f(x, k):
    with layers.depthwise_conv_impl(impl):
      y = layers.conv_nd(
        x, k, strides=strides, padding=padding, rhs_dilation=dil, feature_group_count=groups
      )
    w = jnp.cos(jnp.arange(y.size, dtype=jnp.float32)).reshape(y.shape)
    return jnp.sum(y.astype(jnp.float32) * w), y

  return f


@pytest.mark.parametrize("case", CASES, ids=[f"case{i}" for i in range(len(CASES))])
def test_taps_equal_grouped_convolution_values_and_gradients(case):
  shape, ksize, strides, padding, dil = case
  rng = np.random.default_rng(0)
  c = shape[-1]
  x = jnp.asarray(rng.standard_normal(shape), jnp.float32)
  k = jnp.asarray(rng.standard_normal((*ksize, 1, c)) / np.sqrt(np.prod(ksize)), jnp.float32)
  grads = {}
  for impl in ("conv", "taps"):
    f = _fn(impl, strides, padding, dil, c)
    (_, y), g = jax.jit(jax.value_and_grad(f, argnums=(0, 1), has_aux=True))(x, k)
    grads[impl] = (y, *g)
  for name, a, b in zip(
    ("output", "input grad", "kernel grad"), grads["conv"], grads["taps"], strict=True
  ):
    assert a.shape == b.shape, name
    np.testing.assert_allclose(b, a, rtol=1e-5, atol=1e-5, err_msg=name)


def test_taps_in_bfloat16_accumulate_in_float32():
  rng = np.random.default_rng(1)
  x = rng.standard_normal((1, 12, 12, 8)).astype(np.float32)
  k = (rng.standard_normal((5, 5, 1, 8)) / 5).astype(np.float32)
  conv = _fn("conv", (1, 1), ((2, 2), (2, 2)), (1, 1), 8)
  taps = _fn("taps", (1, 1), ((2, 2), (2, 2)), (1, 1), 8)
  want = np.asarray(conv(jnp.asarray(x, jnp.float32), jnp.asarray(k, jnp.float32))[1])
  got = taps(jnp.asarray(x, jnp.bfloat16), jnp.asarray(k, jnp.bfloat16))[1]
  assert got.dtype == jnp.bfloat16
  # bf16 inputs (8-bit mantissa) and one bf16 rounding of the float32 sum: relative error ~ 2^-8 per term.
  np.testing.assert_allclose(np.asarray(got, np.float32), want, atol=0.03 * np.abs(want).max())


def _ops(impl, x, k, groups):
  f = _fn(impl, (1, 1), ((1, 1), (1, 1)), (1, 1), groups)
  return str(jax.make_jaxpr(lambda x, k: f(x, k)[1])(x, k))


def test_auto_is_taps_on_cpu_and_other_convolutions_are_untouched():
  x = jnp.ones((1, 6, 6, 4))
  dw = jnp.ones((3, 3, 1, 4))
  auto = _ops("auto", x, dw, 4)
  if jax.default_backend() == "cpu":
    assert "conv_general_dilated" not in auto and auto == _ops("taps", x, dw, 4)
  else:
    assert auto == _ops("conv", x, dw, 4)
  # channel multiplier 2 (kernel (3, 3, 1, 8)) and ordinary grouped convolutions keep the convolution
  for k, groups in ((jnp.ones((3, 3, 1, 8)), 4), (jnp.ones((3, 3, 2, 4)), 2)):
    assert "conv_general_dilated" in _ops("taps", x, k, groups)


def test_unknown_impl_is_one_clear_error():
  with (
    pytest.raises(ValueError, match=r"impl must be one of \('auto', 'conv', 'taps'\), got 'fast'"),
    layers.depthwise_conv_impl("fast"),
  ):
    pass


@pytest.mark.parametrize("name", ["semantic_md", "ds_sidenet"])
def test_models_with_depthwise_layers_agree_between_implementations(name):
  kw = {"encoder": {"name": "efficientnet_b0"}} if name == "semantic_md" else {}
  model = get_model(name, **kw)
  x = jnp.asarray(np.random.default_rng(2).uniform(size=(1, 64, 64, 3)), jnp.float32)
  variables = jax.jit(lambda a: model.init(jax.random.key(0), a, train=False))(x)
  outs = {}
  for impl in ("conv", "taps"):
    with layers.depthwise_conv_impl(impl):
      outs[impl] = jax.jit(lambda v, a: model.apply(v, a, train=False))(variables, x)
  key = "depth" if "depth" in outs["conv"] else "depth_logits"
  a, b = np.asarray(outs["conv"][key]), np.asarray(outs["taps"][key])
  np.testing.assert_allclose(b, a, rtol=1e-4, atol=1e-4 * max(1.0, np.abs(a).max()))
