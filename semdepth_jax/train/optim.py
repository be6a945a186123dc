"""Optax optimisers and learning-rate schedules built from config.

Covers what the five papers use (model_spec §10): SGD with or without momentum (paper 000: plain SGD 1e-3;
papers 001/002: momentum 0.9 with Caffe weight decay), Adam (paper 000 U-Net with Keras defaults, eps 1e-7;
paper 003), AdamW; constant, polynomial (DeepLab "poly", power 0.9), cosine, step and linear-warmup
schedules; weight decay either decoupled or as an L2 term added to the gradient before momentum (Caffe);
per-parameter learning-rate multipliers (DeepLab's 10x head) and freezing by regex on the parameter path;
gradient clipping and accumulation (``optax.MultiSteps``).

Parameter paths are the ``'/'``-joined keys of the *params* tree (no ``'params/'`` prefix), e.g.
``'unet/Conv_0/kernel'``; patterns are matched with ``re.search``.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import optax

from semdepth_jax.train.mesh import path_to_str

OPTIMIZERS = ("sgd", "adam", "adamw")
SCHEDULES = ("constant", "poly", "cosine", "step")
WEIGHT_DECAY_MODES = ("decoupled", "l2")


def _get(cfg: Any, key: str, default: Any = None) -> Any:
  if isinstance(cfg, Mapping):
    return cfg.get(key, default)
  return getattr(cfg, key, default) if hasattr(cfg, key) else default


def make_schedule(cfg: Any, base_lr: float, total_steps: int) -> optax.Schedule:
  """Builds the learning-rate schedule ``count -> lr``.

  ``count`` is the number of optimiser updates already applied (0 for the first update). With
  ``warmup_steps = w > 0`` the rate rises linearly from ``warmup_init * base_lr`` at count 0 to ``base_lr``
  at count ``w``, and the main schedule then runs over ``count - w`` with ``total_steps - w`` steps.

  Main schedules (``T`` = ``decay_steps`` if > 0 else ``total_steps - w``; ``t = count - w``):

  * ``constant``: ``base_lr``.
  * ``poly``: ``(base_lr - end_value) * (1 - min(t, T)/T) ** power + end_value`` (DeepLab "poly", KZ
    ``PolynomialLR``; docs/model_spec.md §10; power 0.9 there).
  * ``cosine``: ``end + (base_lr - end) * (1 + cos(pi * min(t, T)/T)) / 2`` (paper 003: 1e-3 -> 1e-6).
  * ``step``: ``base_lr * decay_factor ** floor(t / decay_every)`` (sparse-to-dense convention).

  ``poly`` and ``cosine`` with ``decay_every = k > 0`` hold the rate constant over blocks of ``k`` updates,
  evaluating the curve at ``t' = k * floor(t / k)``: a PyTorch scheduler stepped once per epoch of ``k``
  batches (paper 003's ``CosineAnnealingLR(T_max=15)`` with ``decay_every`` = batches per epoch and
  ``decay_steps`` = 15 epochs of them; docs/model_spec.md §4.6).

  Args:
    cfg: mapping/ConfigDict with ``name`` (one of :data:`SCHEDULES`) and optionally ``warmup_steps``,
      ``warmup_fraction`` (warm-up as a fraction of ``total_steps`` when ``warmup_steps`` is 0, so it
      follows ``steps=N``), ``warmup_init`` (fraction of ``base_lr``, default 0), ``power`` (0.9), ``end_value`` (0.0),
      ``decay_steps`` (0 = to the end), ``decay_every``, ``decay_factor`` (0.1).
    base_lr: peak learning rate.
    total_steps: number of optimiser updates of the run (or stage).

  Returns:
    An optax schedule (callable on an int/array count, returns float32).

  Raises:
    ValueError: unknown name, warmup longer than the run, non-positive step counts.
  """
  name = _get(cfg, "name", "constant")
  warmup = int(_get(cfg, "warmup_steps", 0) or 0)
  fraction = float(_get(cfg, "warmup_fraction", 0.0) or 0.0)
  if not 0.0 <= fraction < 1.0:
    raise ValueError(f"schedule.warmup_fraction must be in [0, 1), got {fraction}")
  if fraction and not warmup:
    warmup = max(1, round(fraction * total_steps))
  if name not in SCHEDULES:
    raise ValueError(f"schedule.name must be one of {SCHEDULES}, got {name!r}")
  if total_steps <= 0:
    raise ValueError(f"schedule needs total_steps > 0, got {total_steps}")
  if warmup < 0 or warmup > total_steps:
    raise ValueError(f"schedule.warmup_steps={warmup} must be in [0, total_steps={total_steps}]")
  decay_steps = int(_get(cfg, "decay_steps", 0) or 0) or max(total_steps - warmup, 1)
  end_value = float(_get(cfg, "end_value", 0.0) or 0.0)
  if name == "constant":
    main = optax.constant_schedule(base_lr)
  elif name == "poly":
    main = optax.polynomial_schedule(
      init_value=base_lr,
      end_value=end_value,
      power=float(_get(cfg, "power", 0.9)),
      transition_steps=decay_steps,
    )
  elif name == "cosine":
    main = optax.cosine_decay_schedule(
      init_value=base_lr,
      decay_steps=decay_steps,
      alpha=end_value / base_lr if base_lr else 0.0,
    )
  else:
    every = int(_get(cfg, "decay_every", 0) or 0)
    if every <= 0:
      raise ValueError(f"schedule 'step' needs decay_every > 0, got {every}")
    main = optax.exponential_decay(
      init_value=base_lr,
      transition_steps=every,
      decay_rate=float(_get(cfg, "decay_factor", 0.1)),
      staircase=True,
    )
  if name in ("poly", "cosine"):
    every = int(_get(cfg, "decay_every", 0) or 0)
    if every < 0:
      raise ValueError(f"schedule.decay_every must be >= 0, got {every}")
    if every > 0:
      smooth = main

      def main(count, smooth=smooth, every=every):
        return smooth((jnp.asarray(count) // every) * every)

  if warmup == 0:
    return main
  warm = optax.linear_schedule(
    init_value=float(_get(cfg, "warmup_init", 0.0) or 0.0) * base_lr,
    end_value=base_lr,
    transition_steps=warmup,
  )
  return optax.join_schedules([warm, main], [warmup])


def _compile_rules(
  rules: Sequence[Sequence[Any]] | None, what: str
) -> list[tuple[re.Pattern, Any]]:
  out = []
  for rule in rules or ():
    if len(rule) != 2:
      raise ValueError(f"{what}: each rule must be (regex, value), got {rule!r}")
    out.append((re.compile(str(rule[0])), rule[1]))
  return out


def leaf_multipliers(params: Any, rules: Sequence[Sequence[Any]] | None) -> Any:
  """Returns the learning-rate multiplier of each parameter (first matching rule, else 1.0).

  Args:
    params: the params pytree.
    rules: ``(regex, multiplier)`` pairs matched against the parameter path.

  Returns:
    A pytree of Python floats with the structure of ``params``.
  """
  compiled = _compile_rules(rules, "optimizer.lr_multipliers")

  def one(path, _):
    name = path_to_str(path)
    for pattern, mult in compiled:
      if pattern.search(name):
        return float(mult)
    return 1.0

  return jax.tree_util.tree_map_with_path(one, params)


def scale_by_path_multipliers(rules: Sequence[Sequence[Any]]) -> optax.GradientTransformation:
  """Multiplies each update by the multiplier of its parameter path (see :func:`leaf_multipliers`).

  Placed after the learning-rate scaling, this is DeepLab's ``lr_mult`` (e.g. 10x on the classifier head,
  model_spec §3.1/§10). Stateless; works inside ``optax.multi_transform`` (masked leaves simply absent).
  """

  def init_fn(params):
    del params
    return optax.EmptyState()

  def update_fn(updates, state, params=None):
    del params
    mults = leaf_multipliers(updates, rules)
    updates = jax.tree.map(
      lambda u, m: u if m == 1.0 else u * jnp.asarray(m, u.dtype), updates, mults
    )
    return updates, state

  return optax.GradientTransformation(init_fn, update_fn)


def path_mask(params: Any, pattern: str | None, *, default: bool = True) -> Any:
  """Boolean pytree: True where the parameter path matches ``pattern`` (``re.search``).

  Args:
    params: pytree (params or batch statistics).
    pattern: regex; ``None``/``''`` gives ``default`` for every leaf.
    default: value for all leaves when ``pattern`` is empty.
  """
  if not pattern:
    return jax.tree.map(lambda _: default, params)
  compiled = re.compile(pattern)
  return jax.tree_util.tree_map_with_path(
    lambda p, _: bool(compiled.search(path_to_str(p))), params
  )


def _decay_mask_fn(exclude: str | None) -> Callable[[Any], Any] | None:
  if not exclude:
    return None
  compiled = re.compile(exclude)

  def mask(params):
    return jax.tree_util.tree_map_with_path(
      lambda p, _: not compiled.search(path_to_str(p)), params
    )

  return mask


def make_optimizer(
  cfg: Any,
  schedule: optax.Schedule,
  trainable: Any | None = None,
) -> optax.GradientTransformation:
  """Builds the optax optimiser.

  Chain (per optimiser update): clip by global norm -> [L2: add ``wd * param`` to the gradient] ->
  SGD momentum trace / Adam moments -> [decoupled: add ``wd * param``] -> scale by ``-schedule(count)`` ->
  per-path multipliers. Frozen parameters (``trainable`` False) get zero updates and no optimiser state
  (``optax.multi_transform`` with ``set_to_zero``). ``grad_accum_steps = k > 1`` wraps everything in
  ``optax.MultiSteps``: gradients of ``k`` consecutive batches are averaged and the inner optimiser (and
  the schedule's count) advances once per ``k`` batches.

  Weight decay semantics:
    * ``l2`` (Caffe, papers 001/002): ``g <- g + wd * w`` before momentum/Adam.
    * ``decoupled`` (AdamW / SGDW): ``u <- u + wd * w`` after the moment estimates, then scaled by the
      learning rate (optax ``adamw`` convention: the step is ``-lr * (adam_update + wd * w)``).
  Parameters whose path matches ``weight_decay_exclude`` are not decayed.

  Args:
    cfg: mapping/ConfigDict with ``name`` (:data:`OPTIMIZERS`), ``momentum`` (SGD, 0 = none), ``nesterov``,
      ``b1``, ``b2``, ``eps`` (Adam; Keras uses 1e-7), ``weight_decay``, ``weight_decay_mode``
      (:data:`WEIGHT_DECAY_MODES`), ``weight_decay_exclude`` (regex), ``lr_multipliers`` (``(regex,
      mult)`` pairs), ``grad_clip_norm`` (0 = off), ``grad_accum_steps`` (1 = off).
    schedule: learning-rate schedule from :func:`make_schedule` (already includes the base rate).
    trainable: optional boolean pytree (structure of the params); False leaves are frozen.

  Returns:
    An ``optax.GradientTransformation``.

  Raises:
    ValueError: unknown optimiser or weight-decay mode, negative hyper-parameters.
  """
  name = _get(cfg, "name", "sgd")
  if name not in OPTIMIZERS:
    raise ValueError(f"optimizer.name must be one of {OPTIMIZERS}, got {name!r}")
  wd = float(_get(cfg, "weight_decay", 0.0) or 0.0)
  mode = _get(cfg, "weight_decay_mode", "decoupled")
  if mode not in WEIGHT_DECAY_MODES:
    raise ValueError(
      f"optimizer.weight_decay_mode must be one of {WEIGHT_DECAY_MODES}, got {mode!r}"
    )
  if wd < 0:
    raise ValueError(f"optimizer.weight_decay must be >= 0, got {wd}")
  if name == "adamw" and wd and mode != "decoupled":
    raise ValueError(
      "optimizer 'adamw' is decoupled weight decay; use 'adam' with weight_decay_mode=l2"
    )
  decay_mask = _decay_mask_fn(_get(cfg, "weight_decay_exclude", ""))
  clip = float(_get(cfg, "grad_clip_norm", 0.0) or 0.0)

  parts: list[optax.GradientTransformation] = []
  if clip > 0:
    parts.append(optax.clip_by_global_norm(clip))
  if wd and mode == "l2":
    parts.append(optax.add_decayed_weights(wd, mask=decay_mask))
  if name == "sgd":
    momentum = float(_get(cfg, "momentum", 0.0) or 0.0)
    if momentum < 0:
      raise ValueError(f"optimizer.momentum must be >= 0, got {momentum}")
    if momentum:
      parts.append(optax.trace(decay=momentum, nesterov=bool(_get(cfg, "nesterov", False))))
  else:
    parts.append(
      optax.scale_by_adam(
        b1=float(_get(cfg, "b1", 0.9)),
        b2=float(_get(cfg, "b2", 0.999)),
        eps=float(_get(cfg, "eps", 1e-8)),
      )
    )
  if wd and mode == "decoupled":
    parts.append(optax.add_decayed_weights(wd, mask=decay_mask))
  parts.append(optax.scale_by_learning_rate(schedule))
  rules = _get(cfg, "lr_multipliers", ()) or ()
  if rules:
    _compile_rules(rules, "optimizer.lr_multipliers")  # validate early
    parts.append(scale_by_path_multipliers(rules))
  tx = optax.chain(*parts)

  if trainable is not None:
    flags = jax.tree.leaves(trainable)
    if not any(flags):
      raise ValueError(
        "no parameter is trainable (the stage's `trainable` pattern matches nothing)"
      )
    if not all(flags):
      labels = jax.tree.map(lambda t: "train" if t else "frozen", trainable)
      tx = optax.multi_transform({"train": tx, "frozen": optax.set_to_zero()}, labels)

  accum = int(_get(cfg, "grad_accum_steps", 1))
  if accum < 1:
    raise ValueError(f"optimizer.grad_accum_steps must be >= 1, got {accum}")
  if accum > 1:
    tx = optax.MultiSteps(tx, every_k_schedule=accum)
  return tx


def current_learning_rate(schedule: optax.Schedule, step: Any, grad_accum_steps: int = 1) -> Any:
  """The rate used for the update made at training ``step`` (counting batches from 0)."""
  return schedule(step // max(int(grad_accum_steps), 1))
