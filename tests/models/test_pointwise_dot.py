"""1x1 convolutions as matrix products (``layers.pointwise_conv_impl('dot')``, ``config.pointwise_conv``).

References: numpy's einsum over the channel axis for values, ``lax.conv_general_dilated`` (the default path)
for values and both gradients; the jaxpr shows which operator each path traced.
"""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from semdepth_jax.models import get_model, layers
from semdepth_jax.train import mesh as mesh_lib
from semdepth_jax.train import step as step_lib
from semdepth_jax.train.state import create_state, split_variables
from tests.test_export import TINY

CASES = [
  # (input shape, kernel shape, strides)
  ((2, 9, 11, 5), (1, 1, 5, 7), (1, 1)),
  ((2, 9, 11, 5), (1, 1, 5, 7), (2, 3)),  # strided shortcut (ResNet downsampling)
  ((1, 3, 9, 11, 4), (1, 1, 1, 4, 6), (1, 2, 2)),  # 3-D
]


def _conv(x, w, strides, pads=None):
  nd = w.ndim - 2
  return layers.conv_nd(x, w, strides=strides, padding=pads or [(0, 0)] * nd)


def _primitives(fn, *args):
  return {str(e.primitive) for e in jax.make_jaxpr(fn)(*args).jaxpr.eqns}


@pytest.mark.parametrize("case", CASES, ids=["2d", "2d_strided", "3d"])
def test_dot_equals_numpy_and_the_convolution_with_gradients(case):
  shape, kshape, strides = case
  rng = np.random.default_rng(0)
  x = rng.standard_normal(shape).astype(np.float32)
  w = rng.standard_normal(kshape).astype(np.float32)
  sub = x[(slice(None), *(slice(None, None, s) for s in strides), slice(None))]
  want = np.einsum(
    "...c,cd->...d", sub.astype(np.float64), w.reshape(kshape[-2:]).astype(np.float64)
  )

  def loss(a, b):
    return jnp.sum(jnp.sin(_conv(a, b, strides)))

  ref = _conv(jnp.asarray(x), jnp.asarray(w), strides)
  ref_grads = jax.grad(loss, (0, 1))(x, w)
  with layers.pointwise_conv_impl("dot"):
    got = _conv(jnp.asarray(x), jnp.asarray(w), strides)
    grads = jax.grad(loss, (0, 1))(x, w)
    prims = _primitives(lambda a, b: _conv(a, b, strides), x, w)
  assert "dot_general" in prims and "conv_general_dilated" not in prims
  assert got.shape == ref.shape == want.shape
  np.testing.assert_allclose(np.asarray(got), want, rtol=1e-5, atol=1e-5)
  np.testing.assert_allclose(np.asarray(got), np.asarray(ref), rtol=1e-5, atol=1e-5)
  for g, r in zip(grads, ref_grads, strict=True):
    np.testing.assert_allclose(np.asarray(g), np.asarray(r), rtol=1e-5, atol=1e-5)


def test_dot_keeps_bfloat16():
  x = jnp.asarray(np.random.default_rng(1).standard_normal((1, 4, 4, 8)), jnp.bfloat16)
  w = jnp.asarray(np.random.default_rng(2).standard_normal((1, 1, 8, 3)), jnp.bfloat16)
  ref = _conv(x, w, (1, 1))
  with layers.pointwise_conv_impl("dot"):
    got = _conv(x, w, (1, 1))
  assert got.dtype == ref.dtype == jnp.bfloat16
  np.testing.assert_allclose(
    np.asarray(got, np.float32), np.asarray(ref, np.float32), rtol=2e-2, atol=2e-2
  )


def test_other_convolutions_are_untouched():
  rng = np.random.default_rng(3)
  x = jnp.asarray(rng.standard_normal((1, 6, 6, 4)), jnp.float32)
  others = {
    "3x3": (jnp.ones((3, 3, 4, 2)), [(1, 1), (1, 1)], 1),
    "padded 1x1": (jnp.ones((1, 1, 4, 2)), [(1, 0), (0, 1)], 1),
    "grouped 1x1": (jnp.ones((1, 1, 2, 4)), [(0, 0), (0, 0)], 2),
  }
  with layers.pointwise_conv_impl("dot"):
    for name, (w, pads, groups) in others.items():
      prims = _primitives(
        lambda a, w=w, pads=pads, groups=groups: layers.conv_nd(
          a, w, strides=(1, 1), padding=pads, feature_group_count=groups
        ),
        x,
      )
      assert "conv_general_dilated" in prims and "dot_general" not in prims, name
  # The default is the convolution.
  assert "conv_general_dilated" in _primitives(
    lambda a: _conv(a, jnp.ones((1, 1, 4, 2)), (1, 1)), x
  )


def test_unknown_impl_is_one_clear_error():
  with (
    pytest.raises(ValueError, match=r"impl must be one of \('conv', 'dot'\), got 'gemm'"),
    layers.pointwise_conv_impl("gemm"),
  ):
    pass


@pytest.mark.parametrize("name", ["deeplab_sid", "ds_sidenet"])
def test_models_agree_between_implementations(name):
  model = get_model(name, **TINY[name])
  x = jnp.asarray(np.random.default_rng(4).uniform(size=(1, 40, 56, 3)), jnp.float32)
  variables = jax.jit(lambda a: model.init(jax.random.key(0), a, train=False))(x)
  outs = {}
  for impl in layers.POINTWISE_IMPLS:
    with layers.pointwise_conv_impl(impl):
      outs[impl] = jax.jit(lambda v, a: model.apply(v, a, train=False))(variables, x)
  key = "depth" if "depth" in outs["conv"] else "depth_logits"
  a, b = np.asarray(outs["conv"][key]), np.asarray(outs["dot"][key])
  np.testing.assert_allclose(b, a, rtol=1e-5, atol=1e-5 * max(1.0, np.abs(a).max()))


def one_device(state):
  """A 1x1 mesh and replicated shardings for ``state``."""
  mesh = mesh_lib.make_mesh((1, 1))
  return mesh, jax.tree.map(lambda _: mesh_lib.replicated(mesh), state)


def one_step_per_impl(model, loss, batch, variables, switch, impls):
  """One SGD step (lr 1.0) from the same state through ``jit_train_step(**{switch: impl})`` per impl.

  Returns the initial state and ``{impl: (state, metrics)}`` on the host.
  """
  tx = optax.sgd(1.0)
  params, stats = split_variables(variables)
  state = create_state(params, stats, tx.init(params), jax.random.key(1))
  mesh, shardings = one_device(state)
  step = step_lib.make_train_step(model, loss, tx)
  results = {}
  for impl in impls:
    fn = step_lib.jit_train_step(step, mesh, shardings, donate=False, **{switch: impl})
    results[impl] = jax.device_get(fn(state, batch))
  return state, results


def test_train_step_switch_gives_the_same_step():
  """``jit_train_step(pointwise_conv='dot')``: one SGD step equal to the default to float rounding."""
  model = get_model("unet", num_classes=3, base_width=4, depth=1, dropout_rate=0.0)
  rng = np.random.default_rng(5)
  batch = {
    "image": jnp.asarray(rng.random((2, 8, 8, 3)), jnp.float32),
    "segmentation": jnp.asarray(rng.integers(0, 3, (2, 8, 8)), jnp.int32),
  }

  def loss(outputs, b):
    logits = outputs["seg_logits"]
    return jnp.mean(optax.softmax_cross_entropy_with_integer_labels(logits, b["segmentation"])), {}

  variables = jax.jit(lambda a: model.init(jax.random.key(0), a, train=False))(batch["image"])
  state, results = one_step_per_impl(
    model, loss, batch, variables, "pointwise_conv", layers.POINTWISE_IMPLS
  )
  (ref, ref_m), (new, new_m) = results["conv"], results["dot"]
  np.testing.assert_allclose(new_m["loss"], ref_m["loss"], rtol=1e-6)
  moved = max(
    float(np.abs(np.asarray(a) - np.asarray(b)).max())
    for a, b in zip(jax.tree.leaves(ref.params), jax.tree.leaves(state.params), strict=True)
  )
  assert moved > 1e-3  # the step changed the parameters
  for a, b in zip(jax.tree.leaves(new.params), jax.tree.leaves(ref.params), strict=True):
    np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-5, atol=1e-6)
  with pytest.raises(ValueError, match=r"config.pointwise_conv must be one of .*got 'gemm'"):
    step_lib.jit_train_step(lambda s, b: (s, {}), *one_device(state), pointwise_conv="gemm")
