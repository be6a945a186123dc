"""Mixed precision and rematerialisation switches of the train step (semdepth_jax.train.step).

Remat is the same function: one SGD step (learning rate 1, so the parameter change is minus the gradient)
from the same state must give the same parameters, BatchNorm statistics and loss with every policy.
bfloat16 compute must really run the convolutions in bfloat16 (checked on the jaxpr), stay close to float32
and keep float32 parameters, gradients and optimiser state.
"""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from semdepth_jax.models import MODELS, get_model
from semdepth_jax.train import step as step_lib
from semdepth_jax.train.state import create_state, split_variables


def _batch(b=2, h=8, w=8, classes=3, seed=0):
  rng = np.random.default_rng(seed)
  return {
    "image": jnp.asarray(rng.random((b, h, w, 3)), jnp.float32),
    "segmentation": jnp.asarray(rng.integers(0, classes, (b, h, w)), jnp.int32),
  }


def _loss(outputs, batch):
  """Per-pixel BCE of the sigmoid U-Net outputs against one-hot labels (any smooth loss would do)."""
  logits = outputs["seg_logits"]
  target = jax.nn.one_hot(batch["segmentation"], logits.shape[-1])
  return jnp.mean(optax.sigmoid_binary_cross_entropy(logits, target)), {}


def _unet(dropout=0.2):
  return get_model("unet", num_classes=3, base_width=4, depth=1, dropout_rate=dropout)


def _init(model, batch):
  return jax.jit(lambda x: model.init(jax.random.key(0), x, train=False))(batch["image"])


def _state(model, batch, tx):
  variables = _init(model, batch)
  params, stats = split_variables(variables)
  return create_state(params, stats, tx.init(params), jax.random.key(1))


def test_remat_policies_give_the_same_step():
  model, batch, tx = _unet(), _batch(), optax.sgd(1.0)
  state = _state(model, batch, tx)
  results = {}
  for policy in step_lib.REMAT_POLICIES:
    fn = jax.jit(step_lib.make_train_step(model, _loss, tx, remat=policy))
    new, metrics = fn(state, batch)
    results[policy] = (new, metrics)
  ref_state, ref_metrics = results["none"]
  moved = jax.tree.leaves(
    jax.tree.map(lambda a, b: float(jnp.abs(a - b).max()), ref_state.params, state.params)
  )
  assert max(moved) > 1e-3  # the step really changed the parameters (gradients are not all zero)
  for policy in ("dots", "full"):
    new, metrics = results[policy]
    np.testing.assert_allclose(metrics["loss"], ref_metrics["loss"], rtol=1e-6)
    np.testing.assert_allclose(metrics["grad_norm"], ref_metrics["grad_norm"], rtol=1e-5)
    for a, b in zip(jax.tree.leaves(new.params), jax.tree.leaves(ref_state.params), strict=True):
      np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-5, atol=1e-6)
    for a, b in zip(
      jax.tree.leaves(new.batch_stats), jax.tree.leaves(ref_state.batch_stats), strict=True
    ):
      np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-5, atol=1e-6)


def test_cpu_conv_eigen_gives_the_same_step():
  """config.cpu_conv='eigen' (XLA's Eigen convolutions on CPU): the default step to float rounding."""
  model, batch, tx = _unet(), _batch(), optax.sgd(1.0)
  state = _state(model, batch, tx)
  fn = step_lib.make_train_step(model, _loss, tx)
  opts = step_lib.compiler_options("eigen")
  if jax.default_backend() == "cpu":
    assert opts == {"xla_cpu_experimental_ynn_fusion_type": "LIBRARY_FUSION_TYPE_INDIVIDUAL_DOT"}
  assert step_lib.compiler_options("ynn") is None
  ref_state, ref_metrics = jax.jit(fn)(state, batch)
  new, metrics = jax.jit(fn, compiler_options=opts)(state, batch)
  np.testing.assert_allclose(metrics["loss"], ref_metrics["loss"], rtol=1e-6)
  for a, b in zip(jax.tree.leaves(new.params), jax.tree.leaves(ref_state.params), strict=True):
    np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-5, atol=1e-6)
  with pytest.raises(
    ValueError, match=r"config.cpu_conv must be one of \('ynn', 'eigen'\), got 'mkl'"
  ):
    step_lib.compiler_options("mkl")


def test_unknown_remat_policy_is_one_clear_error():
  with pytest.raises(ValueError, match=r"config.remat must be one of .*'dots'.*got 'some'"):
    step_lib.make_train_step(_unet(), _loss, optax.sgd(1.0), remat="some")


def test_every_registered_model_takes_a_compute_dtype():
  """apply_model hands bfloat16 to the model through its ``dtype`` attribute; every family needs one."""
  for name, cls in MODELS.items():
    assert "dtype" in {f.name for f in dataclasses.fields(cls)}, name


def test_bfloat16_forward_is_close_to_float32_and_runs_in_bfloat16():
  model, batch, key = _unet(), _batch(h=16, w=16), "seg_logits"
  variables = _init(model, batch)

  def run(dtype):
    out, _ = step_lib.apply_model(model, variables, batch, train=False, compute_dtype=dtype)
    return out[key]

  f32, bf16 = (
    jax.jit(run, static_argnums=0)(jnp.float32),
    jax.jit(run, static_argnums=0)(jnp.bfloat16),
  )
  assert bf16.dtype == jnp.float32  # outputs are cast back for the loss
  scale = float(jnp.abs(f32).max())
  err = float(jnp.abs(bf16 - f32).max())
  assert 0 < err < 0.05 * scale, (err, scale)  # differs (really bf16) but only by bf16 rounding
  jaxpr = str(jax.make_jaxpr(lambda: run(jnp.bfloat16))())
  convs = [line for line in jaxpr.splitlines() if "conv_general_dilated" in line]
  assert convs and all("bf16" in line for line in convs), convs[:3]


def test_bfloat16_training_keeps_float32_state_and_learns():
  model, batch, tx = _unet(dropout=0.0), _batch(seed=3), optax.adam(1e-2)
  state = _state(model, batch, tx)
  fn = jax.jit(step_lib.make_train_step(model, _loss, tx, compute_dtype="bfloat16"))
  losses = []
  for _ in range(6):
    state, metrics = fn(state, batch)
    losses.append(float(metrics["loss"]))
  assert all(bool(np.isfinite(v)) for v in losses)
  for leaf in jax.tree.leaves((state.params, state.opt_state, state.batch_stats)):
    if jnp.issubdtype(leaf.dtype, jnp.floating):
      assert leaf.dtype == jnp.float32
  assert losses[-1] < 0.9 * losses[0], losses
