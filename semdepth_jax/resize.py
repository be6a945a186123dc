"""The library's resizing rules, in one place (jittable; numpy inputs accepted).

* :func:`nearest` — labels, masks, sparse depth: output pixel ``i`` reads input pixel
  ``floor((i + 0.5) * in / out)`` (aligned pixel centres; PyTorch ``'nearest-exact'``, cv2 and PIL nearest).
  No value is ever interpolated, so labels stay labels and invalid (zero) depth never mixes with valid depth.
* :func:`bilinear` — predictions (depth in metres, class probabilities): half-pixel centres, no
  antialiasing, i.e. cv2 ``INTER_LINEAR`` / PyTorch ``align_corners=False`` (docs/model_spec.md §13).
* :func:`image` — RGB images shrunk to a model's input: bilinear with antialiasing (a triangle filter
  widened by the scale factor), so small structures are averaged rather than aliased.

Everything works on the spatial axes 1 and 2 of ``(B, H, W)`` or ``(B, H, W, C)`` arrays. The numpy
training transforms (``semdepth_jax.data.transforms``) use :func:`nearest_indices` for the same rule.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np


def nearest_indices(in_size: int, out_size: int) -> np.ndarray:
  """Source index of each output pixel: ``min(floor((i + 0.5) * in / out), in - 1)`` (int64, numpy)."""
  idx = np.floor((np.arange(out_size, dtype=np.float64) + 0.5) * (in_size / out_size))
  return np.minimum(idx.astype(np.int64), in_size - 1)


def _size(size: Sequence[int]) -> tuple[int, int]:
  h, w = int(size[0]), int(size[1])
  if h <= 0 or w <= 0:
    raise ValueError(f"resize: the output size must be positive, got {tuple(size)}")
  return h, w


def nearest(x: Any, size: Sequence[int]) -> jax.Array:
  """Nearest-neighbour resize of axes 1, 2 to ``size`` (rule in the module docstring); keeps the dtype.

  Raises:
    ValueError: a non-positive output size.
  """
  x = jnp.asarray(x)
  h, w = _size(size)
  if tuple(x.shape[1:3]) == (h, w):
    return x
  rows = jnp.asarray(nearest_indices(x.shape[1], h))
  cols = jnp.asarray(nearest_indices(x.shape[2], w))
  return x[:, rows][:, :, cols]


def bilinear(x: Any, size: Sequence[int]) -> jax.Array:
  """Bilinear resize of axes 1, 2 to ``size``, half-pixel centres, no antialiasing; float32.

  Raises:
    ValueError: a non-positive output size.
  """
  x = jnp.asarray(x)
  h, w = _size(size)
  if tuple(x.shape[1:3]) == (h, w):
    return x.astype(jnp.float32)
  shape = (x.shape[0], h, w, *x.shape[3:])
  return jax.image.resize(x.astype(jnp.float32), shape, "linear", antialias=False)


def image(x: Any, size: Sequence[int]) -> jax.Array:
  """Antialiased bilinear resize of (B, H, W, C) images to ``size`` (float32).

  Raises:
    ValueError: a non-positive output size.
  """
  x = jnp.asarray(x)
  h, w = _size(size)
  if tuple(x.shape[1:3]) == (h, w):
    return x.astype(jnp.float32)
  return jax.image.resize(
    x.astype(jnp.float32), (x.shape[0], h, w, x.shape[-1]), "linear", antialias=True
  )
