"""``layers.conv_weight_grad_impl('taps')``: same convolution, kernel gradient as per-tap GEMMs.

Reference: JAX's own transpose rule of ``lax.conv_general_dilated`` (the ``'xla'`` path) in float32, and for
one case a float64 NumPy sum over output positions written from the definition of cross-correlation.
"""

import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from semdepth_jax.models import get_model, layers

CASES = [
  # (input shape, kernel shape, strides, padding, rhs_dilation)
  ((2, 9, 11, 3), (3, 3, 3, 5), (1, 1), ((1, 1), (1, 1)), (1, 1)),  # 'same' 3x3
  ((2, 9, 11, 3), (3, 3, 3, 4), (2, 2), ((0, 1), (1, 1)), (1, 1)),  # strided, asymmetric (TF rule)
  ((1, 12, 10, 2), (3, 3, 2, 3), (1, 1), ((2, 2), (2, 2)), (2, 2)),  # atrous
  (
    (2, 8, 8, 3),
    (4, 2, 3, 2),
    (1, 2),
    ((-1, 2), (0, 0)),
    (1, 1),
  ),  # cropping, even kernel, mixed stride
  ((2, 3, 6, 5, 2), (3, 3, 3, 2, 4), (1, 1, 1), ((1, 1),) * 3, (1, 1, 1)),  # 3-D (NDHWC)
  ((2, 7, 7, 4), (1, 1, 4, 6), (1, 1), ((0, 0), (0, 0)), (1, 1)),  # 1x1
]


def _loss(impl, x, k, strides, padding, dil):
  def f(x, k):
    with layers.conv_weight_grad_impl(impl):
      y = layers.conv_nd(x, k, strides=strides, padding=padding, rhs_dilation=dil)
    return jnp.sum(jnp.sin(y) * jnp.arange(y.size, dtype=y.dtype).reshape(y.shape) / y.size)

  return f


@pytest.mark.parametrize("case", CASES, ids=[f"case{i}" for i in range(len(CASES))])
def test_taps_gradient_equals_xla_transpose_rule(case):
  xs, ks, strides, padding, dil = case
  rng = np.random.default_rng(0)
  x = jnp.asarray(rng.standard_normal(xs), jnp.float32)
  k = jnp.asarray(rng.standard_normal(ks) / np.sqrt(np.prod(ks[:-1])), jnp.float32)
  want = jax.jit(jax.value_and_grad(_loss("xla", x, k, strides, padding, dil), (0, 1)))(x, k)
  got = jax.jit(jax.value_and_grad(_loss("taps", x, k, strides, padding, dil), (0, 1)))(x, k)
  np.testing.assert_allclose(got[0], want[0], rtol=1e-6)  # forward unchanged
  np.testing.assert_allclose(got[1][0], want[1][0], atol=1e-6)  # input gradient: same rule
  np.testing.assert_allclose(got[1][1], want[1][1], rtol=1e-5, atol=1e-5)  # kernel gradient


def test_taps_kernel_gradient_equals_numpy_definition():
  """dK[t, i, o] = sum_{b, p} x_pad[b, p * s + t * d, i] * g[b, p, o] for loss = sum(y * g)."""
  rng = np.random.default_rng(1)
  x = rng.standard_normal((2, 7, 9, 3))
  k = rng.standard_normal((3, 2, 3, 4))
  strides, padding, dil = (2, 1), ((1, 1), (0, 1)), (1, 2)
  y_shape = jax.eval_shape(
    lambda: layers.conv_nd(
      jnp.zeros(x.shape), jnp.zeros(k.shape), strides=strides, padding=padding, rhs_dilation=dil
    )
  ).shape
  g = rng.standard_normal(y_shape)

  def loss(k):
    with layers.conv_weight_grad_impl("taps"):
      y = layers.conv_nd(
        jnp.asarray(x, jnp.float32), k, strides=strides, padding=padding, rhs_dilation=dil
      )
    return jnp.sum(y * jnp.asarray(g, jnp.float32))

  got = np.asarray(jax.grad(loss)(jnp.asarray(k, jnp.float32)))
  xp = np.pad(x, ((0, 0), *padding, (0, 0)))
  want = np.zeros(k.shape)
  for ty, tx in itertools.product(range(k.shape[0]), range(k.shape[1])):
    for py, px in itertools.product(range(y_shape[1]), range(y_shape[2])):
      iy, ix = py * strides[0] + ty * dil[0], px * strides[1] + tx * dil[1]
      want[ty, tx] += xp[:, iy, ix, :].T @ g[:, py, px, :]
  np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)


def test_transposed_and_depthwise_convolutions_keep_the_xla_rule():
  """Input-dilated and grouped convolutions are not routed to the tap path (same jaxpr as 'xla')."""
  x = jnp.ones((1, 5, 5, 4))
  for kw in ({"lhs_dilation": (2, 2)}, {"feature_group_count": 4}):
    k = jnp.ones((3, 3, 1 if "feature_group_count" in kw else 4, 4))

    def f(k, impl, kw=kw):
      with layers.conv_weight_grad_impl(impl):
        return jnp.sum(layers.conv_nd(x, k, strides=(1, 1), padding=((1, 1), (1, 1)), **kw))

    assert str(jax.make_jaxpr(jax.grad(f), static_argnums=1)(k, "taps")) == str(
      jax.make_jaxpr(jax.grad(f), static_argnums=1)(k, "xla")
    )


def test_unknown_impl_is_one_clear_error():
  with (
    pytest.raises(ValueError, match=r"impl must be one of \('xla', 'taps'\), got 'fast'"),
    layers.conv_weight_grad_impl("fast"),
  ):
    pass


def test_unet_gradients_match_xla_in_float32_and_bfloat16():
  model = get_model("unet", num_classes=3, base_width=4, depth=2)
  x = jnp.asarray(np.random.default_rng(2).uniform(size=(2, 16, 16, 3)), jnp.float32)
  variables = model.init(jax.random.key(0), x, train=False)

  def grads(impl, dtype):
    def loss(p):
      with layers.conv_weight_grad_impl(impl):
        out = model.clone(dtype=dtype).apply(
          {**variables, "params": p}, x.astype(dtype), train=False
        )
      return jnp.mean(jnp.square(out["seg_logits"].astype(jnp.float32)))

    return jax.jit(jax.grad(loss))(variables["params"])

  want, got = grads("xla", jnp.float32), grads("taps", jnp.float32)
  for a, b in zip(jax.tree.leaves(want), jax.tree.leaves(got), strict=True):
    np.testing.assert_allclose(b, a, rtol=1e-4, atol=1e-6)

  # bf16 compute: the tap GEMMs accumulate in float32, so they are no less accurate than XLA's own bf16
  # kernel gradient (relative L2 error of all gradients against the float32 ones).
  def rel_err(g):
    num = sum(
      float(jnp.sum(jnp.square(a - b)))
      for a, b in zip(jax.tree.leaves(g), jax.tree.leaves(want), strict=True)
    )
    return np.sqrt(num / sum(float(jnp.sum(jnp.square(b))) for b in jax.tree.leaves(want)))

  taps16, xla16 = grads("taps", jnp.bfloat16), grads("xla", jnp.bfloat16)
  assert all(leaf.dtype == jnp.float32 for leaf in jax.tree.leaves(taps16))  # f32 master params
  assert 0 < rel_err(taps16) <= 1.5 * rel_err(xla16) + 1e-3, (rel_err(taps16), rel_err(xla16))
