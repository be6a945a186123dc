"""The model-family contract: what every model declares and the one place its outputs become metres.

Every registered model is a linen module that mixes in :class:`DepthSegModel` and follows
docs/conventions.md ("Models"): ``model.apply(variables, image, labels=None, train=..., ...)`` with ``image``
float32 (B, H, W, 3) RGB in [0, 1] returns a dict with ``depth`` (B, h, w, 1) in the model's own units
(:attr:`DepthSegModel.depth_output`), ``seg_logits`` (B, h, w, C) when it segments, and ``aux``.

:meth:`DepthSegModel.decode` (also :func:`decode` for any model) turns those raw outputs into
``{'depth': (B, h, w) float32 metres, 'seg_probs': (B, h, w, C) float32}``. It is the only code that knows
the depth units; training-time evaluation, ``semdepth evaluate``, ``predict``, the visualisations and the
quickstart all call it.

Depth units (:data:`DEPTH_OUTPUTS`) of the raw ``depth`` output:

* ``'metres'``: metres, used as is.
* ``'inverted_normalised'``: paper 000's target ``1 - min(d / depth_norm, 1)`` (docs/model_spec.md §1.0);
  metres ``= (1 - clip(y, 0, 1)) * depth_norm`` (``depth_bins.from_inverted_normalised``).
* ``'log'``: natural log of metres; metres ``= exp(clip(y, -LOG_CLIP, LOG_CLIP))``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

Array = jax.Array

DEPTH_OUTPUTS = ("metres", "inverted_normalised", "log")
"""Units of a model's raw ``depth`` output (see the module docstring)."""

LOG_CLIP = 9.0
"""``log`` outputs are clipped to [-9, 9] before ``exp`` (0.12 mm .. 8.1 km), so a wild early prediction
cannot overflow float32."""


def check_depth_output(kind: str, depth_norm: float | None, where: str) -> None:
  """Validates a depth-unit declaration.

  Raises:
    ValueError: unknown kind, or ``inverted_normalised`` without a positive ``depth_norm`` (metres).
  """
  if kind not in DEPTH_OUTPUTS:
    raise ValueError(f"{where}: depth_output must be one of {DEPTH_OUTPUTS}, got {kind!r}")
  if kind == "inverted_normalised" and not (depth_norm and depth_norm > 0):
    raise ValueError(
      f"{where}: depth_output='inverted_normalised' needs depth_norm > 0 (metres: the saturation "
      f"distance of paper 000's target, docs/model_spec.md §1.0), got {depth_norm!r}"
    )


def depth_to_metres(depth: Array, kind: str, depth_norm: float | None = None) -> Array:
  """Raw depth (B, h, w[, 1]) in ``kind`` units -> (B, h, w) float32 metres (see the module docstring).

  Raises:
    ValueError: see :func:`check_depth_output`.
  """
  from semdepth_jax import depth_bins

  check_depth_output(kind, depth_norm, "depth_to_metres")
  d = jnp.asarray(depth)
  if d.ndim == 4:
    d = d[..., 0]
  d = d.astype(jnp.float32)
  if kind == "inverted_normalised":
    return depth_bins.from_inverted_normalised(d, float(depth_norm))
  if kind == "log":
    return jnp.exp(jnp.clip(d, -LOG_CLIP, LOG_CLIP))
  return d


def decode(
  outputs: Mapping[str, Any], *, depth_output: str = "metres", depth_norm: float | None = None
) -> dict[str, Array]:
  """Raw model outputs -> ``{'depth': (B, h, w) metres, 'seg_probs': (B, h, w, C)}`` (heads present only).

  ``seg_probs`` is the softmax of ``seg_logits`` over classes (its argmax is the logits' argmax; paper 000's
  per-class sigmoid planes give the same labels).
  """
  out: dict[str, Array] = {}
  if "depth" in outputs:
    out["depth"] = depth_to_metres(outputs["depth"], depth_output, depth_norm)
  if "seg_logits" in outputs:
    out["seg_probs"] = jax.nn.softmax(jnp.asarray(outputs["seg_logits"], jnp.float32), axis=-1)
  return out


def model_depth_units(model: Any) -> tuple[str, float | None]:
  """``(depth_output, depth_norm)`` a model declares (metres and None for models that do not say)."""
  return getattr(model, "depth_output", "metres"), getattr(model, "depth_norm", None)


class DepthSegModel:
  """Mixin of every registered model: declares its depth units and owns :meth:`decode`.

  A model class sets (as linen attributes) ``depth_output`` (one of :data:`DEPTH_OUTPUTS`) and, for
  ``inverted_normalised``, ``depth_norm`` (metres). Models without a depth head may leave both unset.
  """

  @nn.nowrap
  def decode(self, outputs: Mapping[str, Any]) -> dict[str, Array]:
    """See :func:`decode`; callable on an unbound module (no variables needed)."""
    kind, norm = model_depth_units(self)
    return decode(outputs, depth_output=kind, depth_norm=norm)
