"""The train state: one pytree with everything a step reads and writes.

``TrainState`` is a ``flax.struct`` dataclass (a pytree), so the train step can be a pure jitted function
of ``(state, batch)`` and Orbax can save it as one tree. The model and optimiser (static, not data) live
outside it, in the step closure.
"""

from __future__ import annotations

from typing import Any

import flax
import jax
import jax.numpy as jnp


@flax.struct.dataclass
class TrainState:
  """Mutable training state as an immutable pytree.

  Attributes:
    step: int32 scalar, number of batches trained so far (global across stages).
    params: model parameters (float32).
    batch_stats: BatchNorm running statistics (``{}`` for models without BatchNorm).
    opt_state: optax state of the current stage's optimiser.
    rng: uint32 (2,) PRNG key (``jax.random.PRNGKey`` layout); the per-step dropout key is
      ``fold_in(rng, step)``.
  """

  step: jax.Array
  params: Any
  batch_stats: Any
  opt_state: Any
  rng: jax.Array

  def variables(self) -> dict[str, Any]:
    """The Flax variable collections for ``model.apply``."""
    if self.batch_stats:
      return {"params": self.params, "batch_stats": self.batch_stats}
    return {"params": self.params}


def split_variables(variables: Any) -> tuple[Any, Any]:
  """Splits ``model.init`` output into ``(params, batch_stats)``.

  Raises:
    ValueError: the model created collections other than ``params`` and ``batch_stats`` (they would not be
      saved or updated; the message names them).
  """
  variables = dict(flax.core.unfreeze(variables))
  params = variables.pop("params", {})
  batch_stats = variables.pop("batch_stats", {})
  if variables:
    raise ValueError(
      f"model created variable collections {sorted(variables)} besides params/batch_stats; "
      "the trainer only handles those two"
    )
  return params, batch_stats


def create_state(params: Any, batch_stats: Any, opt_state: Any, rng: jax.Array, step: int = 0):
  """Builds a :class:`TrainState` with an int32 step."""
  return TrainState(
    step=jnp.asarray(step, jnp.int32),
    params=params,
    batch_stats=batch_stats,
    opt_state=opt_state,
    rng=rng,
  )


def param_count(params: Any) -> int:
  """Total number of scalars in a params pytree."""
  return int(sum(x.size for x in jax.tree.leaves(params)))
