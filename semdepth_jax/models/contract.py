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
* ``'normalised'``: paper 003's target ``clip(d, 0, depth_norm) / depth_norm`` (docs/model_spec.md §4.2, §4.5;
  ``depth_norm`` = 15 m there); metres ``= y * depth_norm``, unclipped: a sigmoid head (003's baseline)
  stays in (0, depth_norm), an unbounded head (003's multi-task models, §4.4) may leave it, and the
  evaluation protocols clamp predictions themselves (R3 at ``1e-4 * 15`` m, §8.4).
* ``'bins'``: depth as classification (papers 002, 004): the model outputs ``depth_logits`` (B, h, w, K)
  over the bins ``depth_bins = (kind, alpha, beta, num_bins)`` of ``semdepth_jax.depth_bins.make_bins``;
  metres by ``bin_decode``: ``'argmax'`` (class value; 002's DORN mid-point for ``dorn`` bins) or
  ``'expectation'`` (soft, 004), with ``bin_value_mode`` (``depth_bins.class_values``). A model may output
  ``depth`` in metres as well (004's regression branch); ``bin_decode='regression'`` then uses it and
  ``'average'`` the mean of both.

A model declares what it reads and writes as class attributes: ``INPUTS`` (of ``'image'``, ``'labels'``
(ground-truth training ids, e.g. for OHESS planes), ``'semantic_planes'``) and ``OUTPUTS`` (of ``'depth'``,
``'depth_logits'``, ``'seg_logits'``, ``'aux'``).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

import flax.linen as nn
import jax
import jax.numpy as jnp

Array = jax.Array

DEPTH_OUTPUTS = ("metres", "inverted_normalised", "log", "bins", "normalised")

BIN_DECODES = ("argmax", "expectation", "regression", "average")
"""How ``'bins'`` models become metres (see the module docstring)."""

INPUT_KINDS = ("image", "labels", "semantic_planes")
OUTPUT_KINDS = ("depth", "depth_logits", "seg_logits", "aux")
"""Units of a model's raw ``depth`` output (see the module docstring)."""

LOG_CLIP = 9.0
"""``log`` outputs are clipped to [-9, 9] before ``exp`` (0.12 mm .. 8.1 km), so a wild early prediction
cannot overflow float32."""


def check_depth_output(
  kind: str,
  depth_norm: float | None,
  where: str,
  depth_bins: Any = None,
  bin_decode: str = "argmax",
) -> None:
  """Validates a depth-unit declaration.

  Raises:
    ValueError: unknown kind, ``inverted_normalised`` / ``normalised`` without a positive ``depth_norm``
      (metres), or ``bins`` without ``depth_bins`` / with an unknown ``bin_decode``.
  """
  if kind == "bins":
    if depth_bins is None:
      raise ValueError(
        f"{where}: depth_output='bins' needs depth_bins=(kind, alpha, beta, num_bins)"
      )
    if bin_decode not in BIN_DECODES:
      raise ValueError(f"{where}: bin_decode must be one of {BIN_DECODES}, got {bin_decode!r}")
  if kind not in DEPTH_OUTPUTS:
    raise ValueError(f"{where}: depth_output must be one of {DEPTH_OUTPUTS}, got {kind!r}")
  if kind == "inverted_normalised" and not (depth_norm and depth_norm > 0):
    raise ValueError(
      f"{where}: depth_output='inverted_normalised' needs depth_norm > 0 (metres: the saturation "
      f"distance of paper 000's target, docs/model_spec.md §1.0), got {depth_norm!r}"
    )
  if kind == "normalised" and not (depth_norm and depth_norm > 0):
    raise ValueError(
      f"{where}: depth_output='normalised' needs depth_norm > 0 (metres: the clipping range of paper "
      f"003's target, 15 m in docs/model_spec.md §4.5), got {depth_norm!r}"
    )


def depth_to_metres(depth: Array, kind: str, depth_norm: float | None = None) -> Array:
  """Raw depth (B, h, w[, 1]) in ``kind`` units -> (B, h, w) float32 metres (see the module docstring).

  Raises:
    ValueError: see :func:`check_depth_output`.
  """
  from semdepth_jax import depth_bins

  if kind == "bins":
    raise ValueError(
      "depth_to_metres: 'bins' outputs are decoded from depth_logits (bins_to_metres)"
    )
  check_depth_output(kind, depth_norm, "depth_to_metres")
  d = jnp.asarray(depth)
  if d.ndim == 4:
    d = d[..., 0]
  d = d.astype(jnp.float32)
  if kind == "inverted_normalised":
    return depth_bins.from_inverted_normalised(d, float(depth_norm))
  if kind == "log":
    return jnp.exp(jnp.clip(d, -LOG_CLIP, LOG_CLIP))
  if kind == "normalised":
    return d * jnp.float32(depth_norm)
  return d


def bins_to_metres(
  logits: Array,
  depth_bins: Any,
  *,
  bin_decode: str = "argmax",
  bin_value_mode: str = "default",
  regression: Array | None = None,
) -> Array:
  """(B, h, w, K) bin logits -> (B, h, w) float32 metres (see the module docstring's ``'bins'``).

  Raises:
    ValueError: unknown ``bin_decode``, a K that does not match the bins, or ``regression`` /
      ``average`` without a regression output.
  """
  from semdepth_jax import depth_bins as bins_lib

  bins = (
    bins_lib.make_bins(*depth_bins)
    if not isinstance(depth_bins, bins_lib.DepthBins)
    else depth_bins
  )
  if bin_decode not in BIN_DECODES:
    raise ValueError(f"bin_decode must be one of {BIN_DECODES}, got {bin_decode!r}")
  if bin_decode in ("regression", "average") and regression is None:
    raise ValueError(
      f"bin_decode={bin_decode!r} needs the model's regression output ('depth', metres)"
    )
  logits = jnp.asarray(logits, jnp.float32)
  if bin_decode == "regression":
    return depth_to_metres(regression, "metres")
  if bin_decode == "argmax":
    return bins_lib.decode_argmax(bins, logits, mode=bin_value_mode)
  soft = bins_lib.decode_expectation(bins, jax.nn.softmax(logits, axis=-1), mode=bin_value_mode)
  if bin_decode == "average":
    return 0.5 * (soft + depth_to_metres(regression, "metres"))
  return soft


def decode(
  outputs: Mapping[str, Any],
  *,
  depth_output: str = "metres",
  depth_norm: float | None = None,
  depth_bins: Any = None,
  bin_decode: str = "argmax",
  bin_value_mode: str = "default",
) -> dict[str, Array]:
  """Raw model outputs -> ``{'depth': (B, h, w) metres, 'seg_probs': (B, h, w, C)}`` (heads present only).

  ``seg_probs`` is the softmax of ``seg_logits`` over classes (its argmax is the logits' argmax; paper 000's
  per-class sigmoid planes give the same labels). ``'bins'`` models are decoded from ``depth_logits``
  (:func:`bins_to_metres`).
  """
  out: dict[str, Array] = {}
  if depth_output == "bins" and "depth_logits" in outputs:
    out["depth"] = bins_to_metres(
      outputs["depth_logits"],
      depth_bins,
      bin_decode=bin_decode,
      bin_value_mode=bin_value_mode,
      regression=outputs.get("depth"),
    )
  elif "depth" in outputs:
    out["depth"] = depth_to_metres(outputs["depth"], depth_output, depth_norm)
  if "seg_logits" in outputs:
    out["seg_probs"] = jax.nn.softmax(jnp.asarray(outputs["seg_logits"], jnp.float32), axis=-1)
  return out


def model_depth_units(model: Any) -> tuple[str, float | None]:
  """``(depth_output, depth_norm)`` a model declares (metres and None for models that do not say)."""
  return getattr(model, "depth_output", "metres"), getattr(model, "depth_norm", None)


def decode_options(model: Any) -> dict[str, Any]:
  """The keyword arguments of :func:`decode` that ``model`` declares through its attributes."""
  kind, norm = model_depth_units(model)
  return {
    "depth_output": kind,
    "depth_norm": norm,
    "depth_bins": getattr(model, "depth_bins", None),
    "bin_decode": getattr(model, "bin_decode", "argmax"),
    "bin_value_mode": getattr(model, "bin_value_mode", "default"),
  }


def check_model(model: Any, where: str | None = None) -> None:
  """Validates the depth declaration of ``model`` (raises ValueError naming the model)."""
  o = decode_options(model)
  check_depth_output(
    o["depth_output"],
    o["depth_norm"],
    where or type(model).__name__,
    depth_bins=o["depth_bins"],
    bin_decode=o["bin_decode"],
  )


class DepthSegModel:
  """Mixin of every registered model: declares its depth units and owns :meth:`decode`.

  A model class sets (as linen attributes) ``depth_output`` (one of :data:`DEPTH_OUTPUTS`) and, for
  ``inverted_normalised`` and ``normalised``, ``depth_norm`` (metres); ``'bins'`` models set ``depth_bins``, ``bin_decode``
  and ``bin_value_mode``. Models without a depth head may leave them unset. ``INPUTS`` / ``OUTPUTS``
  declare what the model reads and writes (defaults: image in; depth and segmentation out).
  """

  INPUTS: ClassVar[tuple[str, ...]] = ("image",)
  OUTPUTS: ClassVar[tuple[str, ...]] = ("depth", "seg_logits", "aux")

  @nn.nowrap
  def decode(self, outputs: Mapping[str, Any]) -> dict[str, Array]:
    """See :func:`decode`; callable on an unbound module (no variables needed)."""
    return decode(outputs, **decode_options(self))
