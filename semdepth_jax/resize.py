"""The library's resizing rules, in one place (jittable; numpy inputs accepted).

* :func:`nearest` — labels, masks, sparse depth: output pixel ``i`` reads input pixel
  ``floor((i + 0.5) * in / out)`` (aligned pixel centres; PyTorch ``'nearest-exact'``, cv2 and PIL nearest).
  No value is ever interpolated, so labels stay labels and invalid (zero) depth never mixes with valid depth.
* :func:`bilinear` — predictions (depth in metres, class probabilities): half-pixel centres, no
  antialiasing, i.e. cv2 ``INTER_LINEAR`` / PyTorch ``align_corners=False`` (docs/model_spec.md §13).
  ``align_corners=True`` switches to the aligned-corners rule some evaluation scripts resize their
  predictions with (AdaBins ``evaluate.py``, ZoeDepth ``compute_metrics``); an evaluation protocol names
  the rule it needs (``semdepth_jax.metrics.Protocol.resize``).
* :func:`bilinear_align_corners` — Caffe's ``Interp`` layer and PyTorch ``align_corners=True``:
  bilinear with the first and last pixels of input and output aligned (DeepLab, DepthNet, paper 001;
  smp's segmentation heads, paper 003; docs/model_spec.md §2.2), and :func:`nearest_floor`, PyTorch's
  legacy ``'nearest'`` (output ``i`` reads ``floor(i * in / out)``; smp's U-Net decoder, paper 003). Both
  only for layers inside models that upsample this way, never for data.
* :func:`image` — RGB images shrunk to a model's input: bilinear with antialiasing (a triangle filter
  widened by the scale factor), so small structures are averaged rather than aliased.

Everything works on the spatial axes 1 and 2 of ``(B, H, W)`` or ``(B, H, W, C)`` arrays. The numpy
training transforms (``semdepth_jax.data.transforms``) use :func:`nearest_indices` for the same rule.
"""

from __future__ import annotations

import math
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


def _gather(x: Any, size: Sequence[int], indices: Any) -> jax.Array:
  """Copies rows / columns ``indices(n_in, n_out)`` of axes 1, 2 (a nearest-neighbour rule)."""
  x = jnp.asarray(x)
  h, w = _size(size)
  if tuple(x.shape[1:3]) == (h, w):
    return x
  rows = jnp.asarray(indices(x.shape[1], h))
  cols = jnp.asarray(indices(x.shape[2], w))
  return x[:, rows][:, :, cols]


def _linear(x: Any, size: Sequence[int], *, antialias: bool) -> jax.Array:
  """float32 bilinear resize of axes 1, 2 with half-pixel centres (``jax.image.resize``)."""
  x = jnp.asarray(x)
  h, w = _size(size)
  if tuple(x.shape[1:3]) == (h, w):
    return x.astype(jnp.float32)
  shape = (x.shape[0], h, w, *x.shape[3:])
  return jax.image.resize(x.astype(jnp.float32), shape, "linear", antialias=antialias)


def nearest(x: Any, size: Sequence[int]) -> jax.Array:
  """Nearest-neighbour resize of axes 1, 2 to ``size`` (rule in the module docstring); keeps the dtype.

  Raises:
    ValueError: a non-positive output size.
  """
  return _gather(x, size, nearest_indices)


def bilinear(x: Any, size: Sequence[int], *, align_corners: bool = False) -> jax.Array:
  """Bilinear resize of axes 1, 2 of (B, H, W) or (B, H, W, C) to ``size``, no antialiasing; float32.

  Args:
    x: (B, H, W) or (B, H, W, C) array.
    size: (out_h, out_w).
    align_corners: ``False`` (default): half-pixel centres, output ``i`` samples input position
      ``(i + 0.5) * in / out - 0.5`` clamped to the edge (cv2 ``INTER_LINEAR``, PyTorch
      ``align_corners=False``). ``True``: output ``i`` samples ``i * (in - 1) / (out - 1)`` (PyTorch
      ``align_corners=True``, Caffe ``Interp``; :func:`align_corners_matrix`).

  Returns:
    float32 array of shape (B, out_h, out_w[, C]).

  Raises:
    ValueError: a non-positive output size.
  """
  if not align_corners:
    return _linear(x, size, antialias=False)
  x = jnp.asarray(x).astype(jnp.float32)
  if x.ndim == 3:
    return bilinear_align_corners(x[..., None], size)[..., 0]
  return bilinear_align_corners(x, size)


def nearest_floor(x: Any, size: Sequence[int]) -> jax.Array:
  """PyTorch ``F.interpolate(mode='nearest')`` on axes 1, 2: output ``i`` reads ``floor(i * in / out)``.

  Equal to :func:`nearest` for integer up-scaling factors (e.g. x2 repeats every pixel twice); differs for
  other ratios. Keeps the dtype.

  Raises:
    ValueError: a non-positive output size.
  """
  return _gather(x, size, lambda n_in, n_out: (np.arange(n_out) * n_in) // n_out)


def image(x: Any, size: Sequence[int]) -> jax.Array:
  """Antialiased bilinear resize of (B, H, W, C) images to ``size`` (float32).

  Raises:
    ValueError: a non-positive output size.
  """
  return _linear(x, size, antialias=True)


def align_corners_matrix(n_in: int, n_out: int) -> np.ndarray:
  """float32 (n_out, n_in) matrix of 1-D linear interpolation with aligned corners.

  Output ``i`` samples input position ``i * (n_in - 1) / (n_out - 1)`` (0 when ``n_out == 1``), the rule of
  Caffe's ``Interp`` layer (DeepLab; model_spec §2.1, §2.2, §13) and of PyTorch ``align_corners=True``:
  the first and last samples of input and output coincide.

  Raises:
    ValueError: a non-positive size.
  """
  if n_in < 1 or n_out < 1:
    raise ValueError(f"resize.align_corners_matrix: sizes must be >= 1, got {n_in} -> {n_out}")
  m = np.zeros((n_out, n_in), np.float64)
  scale = (n_in - 1) / (n_out - 1) if n_out > 1 else 0.0
  for i in range(n_out):
    src = i * scale
    lo = min(int(math.floor(src)), n_in - 1)
    hi = min(lo + 1, n_in - 1)
    frac = src - lo
    m[i, lo] += 1.0 - frac
    m[i, hi] += frac
  return m.astype(np.float32)


def bilinear_align_corners(x: Any, size: Sequence[int]) -> jax.Array:
  """Bilinear resize of (B, H, W, C) to (B, *size, C) with aligned corners (Caffe ``Interp``).

  Caffe's ``Interp`` layer with ``zoom_factor: z`` gives ``H + (H - 1)(z - 1)`` rows (41 -> 81 for z = 2,
  model_spec §2.2); with a target size it resizes to that size by the same rule. Both are this function
  with the right ``size``. Computed as two interpolation matrices (:func:`align_corners_matrix`), so it is
  exact, differentiable and works for up- and downsampling (no antialiasing, like Caffe).

  Args:
    x: (B, H, W, C).
    size: (out_h, out_w).

  Returns:
    (B, out_h, out_w, C) in ``x``'s dtype (float).

  Raises:
    ValueError: a non-positive output size.
  """
  x = jnp.asarray(x)
  out_h, out_w = _size(size)
  if tuple(x.shape[1:3]) == (out_h, out_w):
    return x
  mh = jnp.asarray(align_corners_matrix(x.shape[1], out_h), x.dtype)
  mw = jnp.asarray(align_corners_matrix(x.shape[2], out_w), x.dtype)
  return jnp.einsum("bhwc,ih,jw->bijc", x, mh, mw, precision=jax.lax.Precision.HIGHEST)
