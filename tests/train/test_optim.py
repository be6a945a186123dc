"""Schedules and optimiser semantics against hand-computed references (docs/model_spec.md §10)."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from semdepth_jax.train import optim


def _values(schedule, steps):
  return np.array([float(schedule(t)) for t in steps])


# ------------------------------------------------------------------------------------------ schedules


def test_constant_schedule():
  s = optim.make_schedule({"name": "constant"}, 0.01, 100)
  np.testing.assert_allclose(_values(s, [0, 50, 99, 500]), [0.01] * 4, rtol=1e-6)


def test_poly_schedule_matches_deeplab_formula():
  base, T, power = 2.5e-4, 10, 0.9
  s = optim.make_schedule({"name": "poly", "power": power}, base, T)
  steps = list(range(0, 13))
  # DeepLab / KZ PolynomialLR: base * (1 - t / T) ** 0.9, 0 after T.
  expected = [base * (1 - min(t, T) / T) ** power for t in steps]
  np.testing.assert_allclose(_values(s, steps), expected, rtol=1e-5, atol=1e-12)


def test_cosine_schedule_to_end_value():
  base, end, T = 1e-3, 1e-6, 15
  s = optim.make_schedule({"name": "cosine", "end_value": end}, base, T)
  steps = [0, 1, 7, 14, 15, 20]
  expected = [end + (base - end) * (1 + math.cos(math.pi * min(t, T) / T)) / 2 for t in steps]
  np.testing.assert_allclose(_values(s, steps), expected, rtol=1e-5)


def test_cosine_stepped_per_epoch_is_pytorch_cosine_annealing():
  # Paper 003 (model_spec §4.6): CosineAnnealingLR(T_max=15, eta_min=1e-6) stepped once per epoch; with 4
  # batches per epoch every batch of epoch e uses 1e-6 + (1e-3 - 1e-6) (1 + cos(pi e / 15)) / 2.
  base, end, per_epoch, epochs = 1e-3, 1e-6, 4, 15
  cfg = {"name": "cosine", "end_value": end, "decay_every": per_epoch, "decay_steps": 60}
  s = optim.make_schedule(cfg, base, per_epoch * epochs)
  steps = list(range(per_epoch * epochs))
  expected = [
    end + (base - end) * (1 + math.cos(math.pi * (t // per_epoch) / epochs)) / 2 for t in steps
  ]
  np.testing.assert_allclose(_values(s, steps), expected, rtol=1e-5)
  with pytest.raises(ValueError, match="decay_every"):
    optim.make_schedule({"name": "cosine", "decay_every": -1}, base, 10)


def test_linear_warmup_then_poly():
  base, total, w = 0.1, 14, 4
  s = optim.make_schedule({"name": "poly", "power": 1.0, "warmup_steps": w}, base, total)
  steps = list(range(0, 16))
  expected = []
  for t in steps:
    if t < w:
      expected.append(base * t / w)
    else:
      expected.append(base * (1 - min(t - w, total - w) / (total - w)))
  np.testing.assert_allclose(_values(s, steps), expected, rtol=1e-5, atol=1e-9)


def test_step_schedule():
  s = optim.make_schedule({"name": "step", "decay_every": 5, "decay_factor": 0.1}, 1e-2, 30)
  np.testing.assert_allclose(
    _values(s, [0, 4, 5, 9, 10, 14]), [1e-2, 1e-2, 1e-3, 1e-3, 1e-4, 1e-4], rtol=1e-5
  )


@pytest.mark.parametrize(
  "cfg,total",
  [
    ({"name": "linear"}, 10),
    ({"name": "constant", "warmup_steps": 11}, 10),
    ({"name": "step"}, 10),
    ({"name": "constant"}, 0),
  ],
)
def test_bad_schedules_raise(cfg, total):
  with pytest.raises(ValueError):
    optim.make_schedule(cfg, 0.1, total)


def test_current_learning_rate_with_accumulation():
  s = optim.make_schedule({"name": "poly", "power": 1.0}, 1.0, 10)
  # With 4 accumulated batches per update, batch 9 belongs to update 2.
  assert float(optim.current_learning_rate(s, 9, 4)) == pytest.approx(0.8)


# ------------------------------------------------------------------------------------------ optimisers


def _params():
  return {
    "body": {"kernel": jnp.array([1.0, -2.0]), "bias": jnp.array([0.5])},
    "head": {"kernel": jnp.array([3.0])},
  }


def _grads():
  return {
    "body": {"kernel": jnp.array([0.1, 0.2]), "bias": jnp.array([-0.3])},
    "head": {"kernel": jnp.array([0.4])},
  }


def _step(tx, params, grads, state=None):
  state = tx.init(params) if state is None else state
  updates, state = tx.update(grads, state, params)
  return optax.apply_updates(params, updates), updates, state


def _const(lr):
  return optim.make_schedule({"name": "constant"}, lr, 1)


def test_plain_sgd_with_lr_multiplier_on_head():
  cfg = {"name": "sgd", "lr_multipliers": (("^head/", 10.0),)}
  _, updates, _ = _step(optim.make_optimizer(cfg, _const(0.1)), _params(), _grads())
  np.testing.assert_allclose(updates["body"]["kernel"], [-0.01, -0.02], rtol=1e-6)
  np.testing.assert_allclose(updates["body"]["bias"], [0.03], rtol=1e-6)
  np.testing.assert_allclose(updates["head"]["kernel"], [-0.4], rtol=1e-6)


def test_leaf_multipliers_first_match_wins():
  mults = optim.leaf_multipliers(_params(), (("kernel$", 2.0), ("^head/", 10.0)))
  assert mults == {"body": {"kernel": 2.0, "bias": 1.0}, "head": {"kernel": 2.0}}


def test_caffe_l2_weight_decay_is_added_before_momentum():
  lr, wd, mom = 0.1, 0.01, 0.9
  cfg = {"name": "sgd", "momentum": mom, "weight_decay": wd, "weight_decay_mode": "l2"}
  tx = optim.make_optimizer(cfg, _const(lr))
  p0, g = _params(), _grads()
  p1, _, state = _step(tx, p0, g)
  p2, _, _ = _step(tx, p1, g, state)
  for path in (("body", "kernel"), ("body", "bias"), ("head", "kernel")):
    w0 = np.asarray(p0[path[0]][path[1]])
    gg = np.asarray(g[path[0]][path[1]])
    v1 = gg + wd * w0
    w1 = w0 - lr * v1
    v2 = mom * v1 + gg + wd * w1
    w2 = w1 - lr * v2
    np.testing.assert_allclose(p2[path[0]][path[1]], w2, rtol=1e-6)


def _adam_np(g, w, lr, wd, decoupled, b1=0.9, b2=0.999, eps=1e-8):
  gg = g + (0.0 if decoupled else wd * w)
  m = (1 - b1) * gg
  v = (1 - b2) * gg**2
  u = (m / (1 - b1)) / (np.sqrt(v / (1 - b2)) + eps)
  if decoupled:
    u = u + wd * w
  return w - lr * u


@pytest.mark.parametrize("mode", ["decoupled", "l2"])
def test_adam_weight_decay_modes(mode):
  lr, wd = 0.01, 0.1
  cfg = {"name": "adam", "weight_decay": wd, "weight_decay_mode": mode}
  p1, _, _ = _step(optim.make_optimizer(cfg, _const(lr)), _params(), _grads())
  w = np.asarray(_params()["body"]["kernel"])
  g = np.asarray(_grads()["body"]["kernel"])
  np.testing.assert_allclose(
    p1["body"]["kernel"], _adam_np(g, w, lr, wd, mode == "decoupled"), rtol=1e-5
  )


def test_adamw_equals_decoupled_adam():
  lr, wd = 0.01, 0.1
  a, _, _ = _step(
    optim.make_optimizer({"name": "adamw", "weight_decay": wd}, _const(lr)), _params(), _grads()
  )
  b, _, _ = _step(optax.adamw(lr, weight_decay=wd), _params(), _grads())
  for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True):
    np.testing.assert_allclose(x, y, rtol=1e-6)


def test_weight_decay_exclude_skips_matching_leaves():
  lr, wd = 0.1, 0.5
  cfg = {"name": "sgd", "weight_decay": wd, "weight_decay_exclude": "bias$"}
  zero = jax.tree.map(jnp.zeros_like, _grads())
  p1, _, _ = _step(optim.make_optimizer(cfg, _const(lr)), _params(), zero)
  p0 = _params()
  # With zero gradients only the decay moves weights: w * (1 - lr * wd); the bias is excluded.
  np.testing.assert_allclose(p1["body"]["kernel"], np.asarray(p0["body"]["kernel"]) * 0.95)
  np.testing.assert_allclose(p1["head"]["kernel"], np.asarray(p0["head"]["kernel"]) * 0.95)
  np.testing.assert_allclose(p1["body"]["bias"], p0["body"]["bias"])


def test_frozen_leaves_get_no_update_and_no_state():
  trainable = optim.path_mask(_params(), "^head/")
  assert trainable == {"body": {"kernel": False, "bias": False}, "head": {"kernel": True}}
  cfg = {"name": "adam", "weight_decay": 0.1}
  tx = optim.make_optimizer(cfg, _const(0.1), trainable)
  p1, updates, state = _step(tx, _params(), _grads())
  np.testing.assert_array_equal(p1["body"]["kernel"], _params()["body"]["kernel"])
  np.testing.assert_array_equal(p1["body"]["bias"], _params()["body"]["bias"])
  assert float(jnp.abs(updates["head"]["kernel"]).sum()) > 0
  # Adam moments exist only for the trainable leaf (2 moments x 1 leaf of size 1, plus counts).
  sizes = sorted(int(np.size(x)) for x in jax.tree.leaves(state) if np.ndim(x) > 0)
  assert sizes == [1, 1]


def test_nothing_trainable_raises():
  with pytest.raises(ValueError, match="trainable"):
    optim.make_optimizer({"name": "sgd"}, _const(0.1), optim.path_mask(_params(), "^nothing/"))


def test_gradient_accumulation_averages_k_batches():
  lr = 0.1
  tx = optim.make_optimizer({"name": "sgd", "grad_accum_steps": 2}, _const(lr))
  p0 = _params()
  g1 = _grads()
  g2 = jax.tree.map(lambda x: 3.0 * x, _grads())
  p1, u1, state = _step(tx, p0, g1)
  for x in jax.tree.leaves(u1):
    np.testing.assert_array_equal(x, np.zeros_like(x))
  p2, _, _ = _step(tx, p1, g2, state)
  expected = jax.tree.map(lambda w, a, b: w - lr * (a + b) / 2, p0, g1, g2)
  for x, y in zip(jax.tree.leaves(p2), jax.tree.leaves(expected), strict=True):
    np.testing.assert_allclose(x, y, rtol=1e-6)


def test_gradient_clipping_by_global_norm():
  lr = 1.0
  grads = {"a": jnp.array([3.0, 4.0])}  # norm 5
  tx = optim.make_optimizer({"name": "sgd", "grad_clip_norm": 1.0}, _const(lr))
  _, updates, _ = _step(tx, {"a": jnp.zeros(2)}, grads)
  np.testing.assert_allclose(updates["a"], [-0.6, -0.8], rtol=1e-6)


@pytest.mark.parametrize(
  "cfg",
  [
    {"name": "rmsprop"},
    {"name": "sgd", "weight_decay_mode": "caffe"},
    {"name": "sgd", "weight_decay": -1.0},
    {"name": "adamw", "weight_decay": 0.1, "weight_decay_mode": "l2"},
    {"name": "sgd", "grad_accum_steps": 0},
    {"name": "sgd", "lr_multipliers": (("a", 1.0, 2.0),)},
  ],
)
def test_bad_optimizer_configs_raise(cfg):
  with pytest.raises(ValueError):
    optim.make_optimizer(cfg, _const(0.1))


def test_warmup_fraction_follows_the_stage_length():
  from semdepth_jax.train import optim

  sched = optim.make_schedule({"name": "cosine", "warmup_fraction": 0.1}, 1.0, 200)
  # 20 warm-up updates: linear 0 -> 1, then cosine over the remaining 180 down to 0.
  assert float(sched(0)) == 0.0
  assert float(sched(10)) == pytest.approx(0.5)
  assert float(sched(20)) == pytest.approx(1.0)
  assert float(sched(20 + 90)) == pytest.approx(0.5, abs=1e-6)
  assert float(sched(200)) == pytest.approx(0.0, abs=1e-6)
  with pytest.raises(ValueError, match="warmup_fraction"):
    optim.make_schedule({"name": "cosine", "warmup_fraction": 1.5}, 1.0, 10)
