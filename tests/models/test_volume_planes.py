"""3-D convolutions as sums of 2-D ones (``layers.volume_conv_impl('planes')``, ``config.volume_conv``).

References: a float64 numpy correlation (one shifted product per kernel tap) for values, the default 3-D
``lax.conv_general_dilated`` for values and both gradients; the jaxpr shows which operator each path traced.
"""

import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from semdepth_jax import predict
from semdepth_jax.models import get_model, layers
from semdepth_jax.train import step as step_lib
from tests.models.test_pointwise_dot import one_device, one_step_per_impl
from tests.test_export import TINY

CASES = {
  # name: (input shape, kernel shape, strides, padding, kernel dilation)
  "same": ((2, 5, 7, 6, 3), (3, 3, 3, 3, 4), (1, 1, 1), [(1, 1)] * 3, (1, 1, 1)),
  "valid": ((1, 6, 7, 8, 2), (3, 3, 3, 2, 5), (1, 1, 1), [(0, 0)] * 3, (1, 1, 1)),
  "hw_strided": ((1, 4, 9, 8, 3), (3, 3, 3, 3, 2), (1, 2, 2), [(1, 1)] * 3, (1, 1, 1)),
  "hw_dilated": ((1, 4, 9, 9, 2), (3, 3, 3, 2, 3), (1, 1, 1), [(1, 1), (2, 2), (2, 2)], (1, 2, 2)),
  "asymmetric_depth_pad": (
    (1, 4, 5, 5, 2),
    (2, 3, 1, 2, 3),
    (1, 1, 1),
    [(1, 0), (1, 1), (0, 0)],
    (1, 1, 1),
  ),
}


def _conv(x, w, case):
  _, _, strides, pads, dil = case
  return layers.conv_nd(x, w, strides=strides, padding=pads, rhs_dilation=dil)


def _numpy_correlation(x, w, strides, pads, dil):
  x = np.pad(x.astype(np.float64), [(0, 0), *pads, (0, 0)])
  k = w.shape[:3]
  out_shape = [(x.shape[1 + a] - (k[a] - 1) * dil[a] - 1) // strides[a] + 1 for a in range(3)]
  out = np.zeros((x.shape[0], *out_shape, w.shape[-1]))
  for taps in itertools.product(*(range(n) for n in k)):
    window = tuple(
      slice(t * d, t * d + (n - 1) * s + 1, s)
      for t, d, n, s in zip(taps, dil, out_shape, strides, strict=True)
    )
    out += x[(slice(None), *window, slice(None))] @ w[taps].astype(np.float64)
  return out


def _primitives(fn, *args):
  """(primitive, operand rank) of every convolution in the jaxpr."""
  return {
    (str(e.primitive), e.invars[0].aval.ndim)
    for e in jax.make_jaxpr(fn)(*args).jaxpr.eqns
    if "conv" in str(e.primitive)
  }


@pytest.mark.parametrize("name", CASES)
def test_planes_equal_numpy_and_the_3d_convolution_with_gradients(name):
  case = CASES[name]
  rng = np.random.default_rng(0)
  x = rng.standard_normal(case[0]).astype(np.float32)
  w = rng.standard_normal(case[1]).astype(np.float32)
  want = _numpy_correlation(x, w, *case[2:])

  def loss(a, b):
    return jnp.sum(jnp.sin(_conv(a, b, case)))

  ref = _conv(jnp.asarray(x), jnp.asarray(w), case)
  ref_grads = jax.grad(loss, argnums=(0, 1))(x, w)
  with layers.volume_conv_impl("planes"):
    got = _conv(jnp.asarray(x), jnp.asarray(w), case)
    grads = jax.grad(loss, argnums=(0, 1))(x, w)
    assert _primitives(lambda a, b: _conv(a, b, case), x, w) == {("conv_general_dilated", 4)}
  assert _primitives(lambda a, b: _conv(a, b, case), x, w) == {("conv_general_dilated", 5)}
  np.testing.assert_allclose(np.asarray(got), want, rtol=1e-5, atol=1e-4)
  np.testing.assert_allclose(np.asarray(ref), want, rtol=1e-5, atol=1e-4)
  for g, r in zip(grads, ref_grads, strict=True):
    np.testing.assert_allclose(np.asarray(g), np.asarray(r), rtol=1e-4, atol=1e-4)


def test_transposed_depth_strided_and_2d_convolutions_keep_their_operator():
  x3 = jnp.ones((1, 4, 6, 6, 2))
  w3 = jnp.ones((3, 3, 3, 2, 2))
  x2 = jnp.ones((1, 6, 6, 2))
  w2 = jnp.ones((3, 3, 2, 2))
  pads = [(1, 1)] * 3
  with layers.volume_conv_impl("planes"):
    transposed = _primitives(
      lambda a, b: layers.conv_nd(a, b, strides=(1, 1, 1), padding=pads, lhs_dilation=(1, 2, 2)),
      x3,
      w3,
    )
    depth_strided = _primitives(
      lambda a, b: layers.conv_nd(a, b, strides=(2, 1, 1), padding=pads), x3, w3
    )
    plain_2d = _primitives(
      lambda a, b: layers.conv_nd(a, b, strides=(1, 1), padding=[(1, 1)] * 2), x2, w2
    )
  assert transposed == depth_strided == {("conv_general_dilated", 5)}
  assert plain_2d == {("conv_general_dilated", 4)}
  with (
    pytest.raises(ValueError, match=r"layers.volume_conv_impl: impl must be one of"),
    layers.volume_conv_impl("im2col"),
  ):
    pass


@pytest.mark.parametrize("name", ["cnn3d_s", "cnn3d_up"])
def test_3d_nets_agree_between_paths(name):
  model = get_model(name, **TINY[name])
  rng = np.random.default_rng(1)
  image = jnp.asarray(rng.random((1, 16, 24, 3)), jnp.float32)
  labels = jnp.asarray(rng.integers(0, TINY[name]["num_classes"], (1, 16, 24)), jnp.int32)
  variables = model.init(jax.random.key(0), image, labels, train=False)
  ref = model.apply(variables, image, labels, train=False)["depth"]
  with layers.volume_conv_impl("planes"):
    got = jax.jit(lambda v, a, b: model.apply(v, a, b, train=False)["depth"])(
      variables, image, labels
    )
  np.testing.assert_allclose(np.asarray(got), np.asarray(ref), rtol=1e-5, atol=1e-6)


def test_inference_traces_the_configs_switch():
  """``InferenceModel`` (prediction, evaluation, quickstart) traces the config's ``volume_conv``."""
  from semdepth_jax.train import schema

  model = get_model("cnn3d_s", **TINY["cnn3d_s"])
  rng = np.random.default_rng(3)
  image = jnp.asarray(rng.random((1, 20, 30, 3)), jnp.float32)  # not the input size: resized inside
  labels = jnp.asarray(rng.integers(0, TINY["cnn3d_s"]["num_classes"], (1, 20, 30)), jnp.int32)
  variables = model.init(jax.random.key(0), image[:, :16, :24], labels[:, :16, :24], train=False)
  config = schema.base_config()
  assert predict.conv_switches(config) == {"pointwise_conv": "conv", "volume_conv": "conv"}
  config.volume_conv = "planes"
  default = predict.InferenceModel(model, input_size=(16, 24))
  planes = predict.InferenceModel(model, input_size=(16, 24), **predict.conv_switches(config))
  assert _primitives(default.dense, variables, image, labels) >= {("conv_general_dilated", 5)}
  assert ("conv_general_dilated", 5) not in _primitives(planes.dense, variables, image, labels)
  ref = jax.jit(default.dense)(variables, image, labels)
  got = jax.jit(planes.dense)(variables, image, labels)
  assert set(got) == set(ref) == {"depth"} and ref["depth"].shape == (1, 20, 30)  # a depth-only net
  np.testing.assert_allclose(
    np.asarray(got["depth"]), np.asarray(ref["depth"]), rtol=1e-5, atol=1e-6
  )
  with pytest.raises(ValueError, match=r"volume_conv must be one of \('conv', 'planes'\), got 'x'"):
    predict.InferenceModel(model, input_size=(16, 24), volume_conv="x")


def test_train_step_switch_gives_the_same_step():
  """``jit_train_step(volume_conv='planes')``: one SGD step of 3D CNN-UP equal to the default."""
  model = get_model("cnn3d_up", **TINY["cnn3d_up"])
  rng = np.random.default_rng(5)
  batch = {
    "image": jnp.asarray(rng.random((2, 16, 24, 3)), jnp.float32),
    "segmentation": jnp.asarray(
      rng.integers(0, TINY["cnn3d_up"]["num_classes"], (2, 16, 24)), jnp.int32
    ),
  }

  def loss(outputs, b):
    return jnp.mean(jnp.square(outputs["depth"] - 0.5)), {}

  variables = jax.jit(lambda a, b: model.init(jax.random.key(0), a, b, train=False))(
    batch["image"][:1], batch["segmentation"][:1]
  )
  state, results = one_step_per_impl(
    model, loss, batch, variables, "volume_conv", layers.VOLUME_IMPLS
  )
  (ref, ref_m), (new, new_m) = results["conv"], results["planes"]
  np.testing.assert_allclose(new_m["loss"], ref_m["loss"], rtol=1e-5)
  moved = max(
    float(np.abs(np.asarray(a) - np.asarray(b)).max())
    for a, b in zip(jax.tree.leaves(ref.params), jax.tree.leaves(state.params), strict=True)
  )
  assert moved > 1e-4  # the step changed the parameters
  # The two updates agree to 1e-4 of the largest update (sums in another order; the step's BatchNorm and
  # lr 1.0 carry the rounding into the update; biases before a BatchNorm get rounding-noise updates only).
  leaves = zip(
    jax.tree.leaves(new.params),
    jax.tree.leaves(ref.params),
    jax.tree.leaves(state.params),
    strict=True,
  )
  updates = [(np.asarray(a) - np.asarray(s), np.asarray(b) - np.asarray(s)) for a, b, s in leaves]
  tol = 1e-4 * max(float(np.abs(r).max()) for _, r in updates)
  for upd_new, upd_ref in updates:
    np.testing.assert_allclose(upd_new, upd_ref, rtol=0, atol=tol)
  with pytest.raises(ValueError, match=r"config.volume_conv must be one of .*got 'im2col'"):
    step_lib.jit_train_step(lambda s, b: (s, {}), *one_device(state), volume_conv="im2col")
