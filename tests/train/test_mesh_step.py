"""Mesh construction, sharding rules and the sharded train step (8 fake CPU devices)."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.sharding import AxisType, PartitionSpec

from semdepth_jax.train import mesh as mesh_lib
from semdepth_jax.train import optim
from semdepth_jax.train import step as step_lib
from semdepth_jax.train.state import create_state, split_variables
from tests.train import _toy


@pytest.mark.parametrize(
  "shape,n,expected",
  [((-1, 1), 8, (8, 1)), ((4, -1), 8, (4, 2)), ((2, 4), 8, (2, 4)), ((-1, 2), 2, (1, 2))],
)
def test_resolve_mesh_shape(shape, n, expected):
  assert mesh_lib.resolve_mesh_shape(shape, n) == expected


@pytest.mark.parametrize("shape", [(-1, -1), (3, -1), (0, 1), (4, 4), (8,)])
def test_resolve_mesh_shape_errors(shape):
  with pytest.raises(ValueError):
    mesh_lib.resolve_mesh_shape(shape, 8)


@pytest.mark.multidevice
def test_make_mesh_axes_are_auto():
  mesh = mesh_lib.make_mesh((-1, 2))
  assert mesh.axis_names == ("data", "model")
  assert dict(mesh.shape) == {"data": 4, "model": 2}
  assert tuple(mesh.axis_types) == (AxisType.Auto, AxisType.Auto)
  single = mesh_lib.make_mesh((1, 1))
  assert single.devices.size == 1


def test_param_partition_specs_rules():
  tree = {
    "params": {"enc": {"kernel": jnp.zeros((3, 3, 3, 4)), "bias": jnp.zeros((4,))}},
    "step": jnp.zeros((), jnp.int32),
  }
  specs = mesh_lib.param_partition_specs(tree, [(r"enc/kernel$", (None, None, None, "model"))])
  assert specs["params"]["enc"]["kernel"] == PartitionSpec(None, None, None, "model")
  assert specs["params"]["enc"]["bias"] == PartitionSpec()
  assert specs["step"] == PartitionSpec()
  with pytest.raises(ValueError, match="params/enc/bias"):
    mesh_lib.param_partition_specs(tree, [(r"bias", (None, "model"))])


@pytest.mark.multidevice
def test_param_partition_specs_checks_divisibility():
  mesh = mesh_lib.make_mesh((2, 4))
  tree = {"w": jax.ShapeDtypeStruct((3, 6), jnp.float32)}
  with pytest.raises(ValueError, match="'w'.*does not divide"):
    mesh_lib.param_partition_specs(tree, [("w", (None, "model"))], mesh)
  specs = mesh_lib.param_partition_specs(tree, [("w", (None, "data"))], mesh)
  assert specs["w"] == PartitionSpec(None, "data")


def test_check_batch_divisible_names_the_key():
  mesh = mesh_lib.make_mesh((-1, 1))
  n = mesh.shape["data"]
  mesh_lib.check_batch_divisible(2 * n, mesh)
  if n > 1:
    with pytest.raises(ValueError, match="stages.x.batch_size"):
      mesh_lib.check_batch_divisible(n + 1, mesh, what="stages.x.batch_size")


def _init_state(model, tx, batch):
  variables = model.init(
    {"params": jax.random.PRNGKey(0), "dropout": jax.random.PRNGKey(1)}, batch["image"][:1]
  )
  params, stats = split_variables(variables)
  return create_state(params, stats, tx.init(params), jax.random.PRNGKey(2))


def _batch(seed=0, b=8):
  rng = np.random.default_rng(seed)
  return {
    "image": rng.random((b, _toy.H, _toy.W, 3), dtype=np.float32),
    "depth": (1 + 2 * rng.random((b, _toy.H, _toy.W))).astype(np.float32),
    "segmentation": rng.integers(0, 3, (b, _toy.H, _toy.W)).astype(np.int32),
    "has_depth": np.ones(b, bool),
    "has_segmentation": np.array([True] * (b - 1) + [False]),
    "mask": np.ones(b, bool),
  }


def _run_steps(mesh_shape, rules=(), n_steps=2, compute_dtype="float32"):
  mesh = mesh_lib.make_mesh(mesh_shape)
  model = _toy.ToyNet(dropout_rate=0.5)
  sched = optim.make_schedule({"name": "constant"}, 0.05, 10)
  tx = optim.make_optimizer({"name": "sgd", "momentum": 0.9}, sched)
  batch = _batch()
  state = _init_state(model, tx, batch)
  specs = mesh_lib.param_partition_specs(state, rules, mesh)
  shardings = mesh_lib.tree_shardings(mesh, specs)
  state = jax.device_put(state, shardings)
  fn = step_lib.jit_train_step(
    step_lib.make_train_step(model, _toy.toy_loss, tx, compute_dtype=compute_dtype),
    mesh,
    shardings,
  )
  metrics = None
  for i in range(n_steps):
    state, metrics = fn(state, step_lib.shard_batch(_batch(seed=i), mesh))
  return jax.device_get(state), jax.device_get(metrics)


@pytest.mark.multidevice
@pytest.mark.parametrize(
  "mesh_shape,rules",
  [((8, 1), ()), ((4, 2), ((r"enc/kernel$", (None, None, None, "model")),))],
)
def test_sharded_step_equals_single_device(mesh_shape, rules):
  ref_state, ref_metrics = _run_steps((1, 1))
  state, metrics = _run_steps(mesh_shape, rules)
  assert int(state.step) == int(ref_state.step) == 2
  for a, b in zip(jax.tree.leaves(state), jax.tree.leaves(ref_state), strict=True):
    np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=2e-5, atol=2e-6)
  np.testing.assert_allclose(metrics["loss"], ref_metrics["loss"], rtol=1e-5)
  # The step changed the parameters (a test that cannot fail otherwise would be useless).
  model = _toy.ToyNet()
  init = _init_state(model, optax_sgd(), _batch())
  assert not np.allclose(np.asarray(init.params["enc"]["kernel"]), state.params["enc"]["kernel"])


def optax_sgd():
  return optim.make_optimizer({"name": "sgd"}, optim.make_schedule({"name": "constant"}, 0.1, 1))


def test_step_dropout_rng_is_folded_with_step():
  # Same state and batch at two different step numbers must use different dropout masks.
  model = _toy.ToyNet(dropout_rate=0.5)
  tx = optax_sgd()
  batch = {k: jnp.asarray(v) for k, v in _batch().items()}
  state = _init_state(model, tx, batch)
  fn = jax.jit(step_lib.make_train_step(model, _toy.toy_loss, tx))
  _, m0 = fn(state, batch)
  _, m1 = fn(state.replace(step=jnp.asarray(5, jnp.int32)), batch)
  _, m0b = fn(state, batch)
  assert float(m0["loss"]) == float(m0b["loss"])
  assert float(m0["loss"]) != float(m1["loss"])


def test_bfloat16_compute_keeps_float32_params():
  state, metrics = _run_steps((1, 1), compute_dtype="bfloat16", n_steps=1)
  assert state.params["enc"]["kernel"].dtype == np.float32
  assert np.isfinite(metrics["loss"])
  ref, ref_metrics = _run_steps((1, 1), n_steps=1)
  # bf16 has ~3 significant digits: close to, but not bit-equal with, the float32 step.
  np.testing.assert_allclose(metrics["loss"], ref_metrics["loss"], rtol=5e-2)


def test_nonfinite_step_keeps_state_and_flags():
  model = _toy.ToyNet(dropout_rate=0.0)
  tx = optax_sgd()
  batch = {k: jnp.asarray(v) for k, v in _batch().items()}
  state = _init_state(model, tx, batch)
  poisoned = dict(batch, image=batch["image"].at[0, 0, 0, 0].set(jnp.nan))
  new, metrics = jax.jit(step_lib.make_train_step(model, _toy.toy_loss, tx))(state, poisoned)
  assert not bool(metrics["finite"])
  for a, b in zip(jax.tree.leaves(new.params), jax.tree.leaves(state.params), strict=True):
    np.testing.assert_array_equal(a, b)
  assert int(new.step) == 1


def test_frozen_batch_stats_are_kept():
  model = _toy.ToyNet(dropout_rate=0.0)
  batch = {k: jnp.asarray(v) for k, v in _batch().items()}
  params_tmpl = split_variables(model.init(jax.random.PRNGKey(0), batch["image"][:1]))
  trainable = optim.path_mask(params_tmpl[0], "head")
  tx = optim.make_optimizer(
    {"name": "sgd"}, optim.make_schedule({"name": "constant"}, 0.1, 1), trainable
  )
  state = _init_state(model, tx, batch)
  frozen_stats = optim.path_mask(state.batch_stats, "head")  # 'bn' does not match -> frozen
  fn = jax.jit(
    step_lib.make_train_step(
      model, _toy.toy_loss, tx, trainable=trainable, trainable_stats=frozen_stats
    )
  )
  new, _ = fn(state, batch)
  np.testing.assert_array_equal(new.batch_stats["bn"]["mean"], state.batch_stats["bn"]["mean"])
  np.testing.assert_array_equal(new.params["enc"]["kernel"], state.params["enc"]["kernel"])
  assert not np.allclose(new.params["depth_head"]["kernel"], state.params["depth_head"]["kernel"])
  # Without the stats mask the statistics move.
  fn2 = jax.jit(step_lib.make_train_step(model, _toy.toy_loss, tx, trainable=trainable))
  new2, _ = fn2(state, batch)
  assert not np.allclose(new2.batch_stats["bn"]["mean"], state.batch_stats["bn"]["mean"])


def test_streaming_evaluator_counts_masked_examples_once():
  ev = step_lib.StreamingEvaluator(num_classes=3, min_depth=1e-3, max_depth=10.0)
  rng = np.random.default_rng(0)
  gt = (1 + rng.random((4, 6, 8))).astype(np.float32)
  pred = gt * 1.1  # abs_rel 0.1 everywhere, delta1 = 1
  labels = rng.integers(0, 3, (4, 6, 8)).astype(np.int32)
  logits = np.eye(3, dtype=np.float32)[labels] * 5.0
  outputs = {"depth": jnp.asarray(pred[..., None]), "seg_logits": jnp.asarray(logits)}
  batch = {
    "image": jnp.zeros((4, 6, 8, 3)),
    "depth": jnp.asarray(gt),
    "segmentation": jnp.asarray(labels),
    "mask": jnp.array([True, True, True, False]),
    "has_depth": jnp.ones(4, bool),
    "has_segmentation": jnp.ones(4, bool),
  }
  # Corrupt the padding example: it must not count.
  outputs["depth"] = outputs["depth"].at[3].set(100.0)
  acc = jax.jit(ev.update)(ev.init(), outputs, batch)
  out = ev.finish(acc)
  assert out["abs_rel"] == pytest.approx(0.1, rel=1e-5)
  assert out["delta1"] == pytest.approx(1.0)
  assert out["miou"] == pytest.approx(1.0)
  assert int(acc["depth"].num_examples) == 3


def test_streaming_evaluator_inverted_depth_and_resize():
  ev = step_lib.StreamingEvaluator(
    num_classes=2, depth_output="inverted_normalised", depth_norm=10.0, max_depth=10.0
  )
  gt = np.full((1, 4, 4), 2.0, np.float32)
  inv = np.full((1, 2, 2, 1), 1 - 2.0 / 10.0, np.float32)  # 2 m, at half resolution
  batch = {
    "image": jnp.zeros((1, 4, 4, 3)),
    "depth": jnp.asarray(gt),
    "segmentation": jnp.zeros((1, 4, 4), jnp.int32),
  }
  out = ev.finish(ev.update(ev.init(), {"depth": jnp.asarray(inv)}, batch))
  assert out["abs_rel"] == pytest.approx(0.0, abs=1e-6)
  assert "miou" not in out
  with pytest.raises(ValueError, match="depth_norm"):
    step_lib.StreamingEvaluator(num_classes=2, depth_output="inverted_normalised")


class _TwoBN(nn.Module):
  """BN (momentum 0.99) on the input, then a BN (momentum 0.5) on 2x the input; 'idle' never runs."""

  use_idle: bool = False

  @nn.compact
  def __call__(self, image, *, train=False):
    a = nn.BatchNorm(use_running_average=not train, momentum=0.99, name="a")(image)
    b = nn.BatchNorm(use_running_average=not train, momentum=0.5, name="b")(2.0 * image)
    if self.use_idle or self.is_initializing():
      nn.BatchNorm(use_running_average=not train, name="idle")(image)
    return {"depth": (a + b)[..., :1]}


def test_batch_stats_probe_recovers_batch_statistics():
  model = _TwoBN()
  rng = np.random.default_rng(0)
  image = (3.0 + 2.0 * rng.standard_normal((4, 5, 6, 3))).astype(np.float32)
  variables = model.init(jax.random.PRNGKey(0), jnp.asarray(image))
  variables = jax.tree.map(lambda x: x + 0.25, dict(variables))  # non-trivial current statistics
  probe = jax.jit(step_lib.make_batch_stats_probe(model, pass_labels=False))
  stats = probe(variables, {"image": jnp.asarray(image)}, jax.random.PRNGKey(1))
  mean = image.reshape(-1, 3).mean(0)
  var = image.reshape(-1, 3).var(0)
  np.testing.assert_allclose(stats["a"]["mean"], mean, rtol=1e-4)
  np.testing.assert_allclose(stats["a"]["var"], var, rtol=1e-4)
  np.testing.assert_allclose(stats["b"]["mean"], 2 * mean, rtol=1e-4)
  np.testing.assert_allclose(stats["b"]["var"], 4 * var, rtol=1e-4)
  # A layer that did not run keeps its current statistics.
  np.testing.assert_array_equal(stats["idle"]["mean"], variables["batch_stats"]["idle"]["mean"])
