"""PyTorch-semantics pooling helpers in layers.py: sizes and values worked by hand / brute force in numpy.

Parity with torch.nn.functional itself is in tests/parity/test_torchvision_parity.py.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from semdepth_jax.models import layers

RNG = np.random.default_rng(0)


def np_max_pool_1d_windows(n, k, s, p, out):
  """Input index ranges of each output window, clipped to the input (padding never wins a max)."""
  return [(max(i * s - p, 0), min(i * s - p + k, n)) for i in range(out)]


# (n, window, stride, padding, ceil_mode) -> output length, by hand from the PyTorch docs:
# floor_or_ceil((n + 2p - k) / s) + 1, minus one if the last window would start in the right padding.
SIZES = [
  ((321, 3, 2, 1, True), 161),  # DeepLab-v2 VGG pools, docs/model_spec.md §2.1
  ((161, 3, 2, 1, True), 81),
  ((81, 3, 2, 1, True), 41),
  ((41, 3, 1, 1, True), 41),
  ((18, 3, 2, 1, True), 10),  # ceil: (17 / 2 -> 9) + 1
  ((18, 3, 2, 1, False), 9),
  ((5, 2, 2, 1, True), 3),  # ceil gives 4, but window 4 would start at 6 - 1 = 5 >= n: dropped
  ((7, 2, 2, 0, True), 4),
  ((7, 2, 2, 0, False), 3),
  ((112, 3, 2, 1, False), 56),  # torchvision ResNet stem
]


@pytest.mark.parametrize("args,out", SIZES)
def test_pool_output_size_by_hand(args, out):
  assert layers.pool_output_size(*args) == out


@pytest.mark.parametrize("impl", layers.TORCH_POOL_IMPLS)
@pytest.mark.parametrize("args,out", SIZES[4:])
def test_torch_max_pool_values(args, out, impl):
  n, k, s, p, ceil = args
  x = RNG.normal(size=(2, n, n + 1, 3)).astype(np.float32)
  with layers.torch_max_pool_impl(impl):  # 'slices': the ONNX-friendly form, same values
    y = np.asarray(layers.torch_max_pool(jnp.asarray(x), k, s, p, ceil_mode=ceil))
  out_w = layers.pool_output_size(n + 1, k, s, p, ceil)
  assert y.shape == (2, out, out_w, 3)
  for i, (a, b) in enumerate(np_max_pool_1d_windows(n, k, s, p, out)):
    for j, (c, d) in enumerate(np_max_pool_1d_windows(n + 1, k, s, p, out_w)):
      np.testing.assert_array_equal(y[:, i, j], x[:, a:b, c:d].max(axis=(1, 2)))


def test_max_pools_differentiate_under_jit():
  """reduce_window with a Python-scalar init uses the differentiable max-pool primitive."""
  x = jnp.asarray(RNG.normal(size=(1, 7, 7, 2)).astype(np.float32))
  g = jax.jit(jax.grad(lambda x: jnp.sum(layers.torch_max_pool(x, 3, 2, 1, ceil_mode=True))))(x)
  assert (
    float(jnp.sum(g)) == 32.0
  )  # 4 x 4 windows x 2 channels, each routes its gradient to one input
  g = jax.jit(jax.grad(lambda x: jnp.sum(layers.max_pool(x, (2, 2), (1, 1), "reduce_window"))))(x)
  assert float(jnp.sum(g)) == 72.0  # 6 x 6 windows x 2 channels


# Bins [floor(i n / out), ceil((i + 1) n / out)) worked by hand.
BINS = {
  (5, 3): [(0, 2), (1, 4), (3, 5)],
  (10, 7): [(0, 2), (1, 3), (2, 5), (4, 6), (5, 8), (7, 9), (8, 10)],
  (3, 7): [(0, 1), (0, 1), (0, 2), (1, 2), (1, 3), (2, 3), (2, 3)],
  (7, 7): [(i, i + 1) for i in range(7)],
}


@pytest.mark.parametrize("h,w,out", [(5, 10, (3, 7)), (10, 3, (7, 7)), (7, 7, (7, 7))])
def test_adaptive_avg_pool_bins_by_hand(h, w, out):
  x = RNG.normal(size=(2, h, w, 4)).astype(np.float32)
  y = np.asarray(layers.adaptive_avg_pool(jnp.asarray(x), out))
  assert y.shape == (2, *out, 4)
  for i, (a, b) in enumerate(BINS[(h, out[0])]):
    for j, (c, d) in enumerate(BINS[(w, out[1])]):
      np.testing.assert_allclose(y[:, i, j], x[:, a:b, c:d].mean(axis=(1, 2)), atol=1e-6)


def test_torch_max_pool_impl_is_scoped_and_checked():
  x = jnp.asarray(RNG.normal(size=(1, 9, 9, 2)).astype(np.float32))
  with layers.torch_max_pool_impl("slices"):
    jaxpr = str(jax.make_jaxpr(lambda v: layers.torch_max_pool(v, 3, 2, 1, ceil_mode=True))(x))
  assert "reduce_window" not in jaxpr and "max" in jaxpr
  jaxpr = str(jax.make_jaxpr(lambda v: layers.torch_max_pool(v, 3, 2, 1, ceil_mode=True))(x))
  assert "reduce_window_max" in jaxpr  # the default again outside the context
  with pytest.raises(ValueError, match="impl must be one of"), layers.torch_max_pool_impl("onnx"):
    pass
