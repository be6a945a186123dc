"""Sliding-window tiling and horizontal-flip test-time augmentation of dense predictions (pure JAX).

Both work on a *dense prediction function* ``fn(image, labels) -> predictions`` that maps an image batch
(B, h, w, 3) (and optional (B, h, w) int32 labels, for models that read ground-truth labels) to a dict of
float maps **at the size of its input**: ``depth`` (B, h, w) metres and/or ``probs`` (B, h, w, C)
normalised class scores (softmax probabilities). Every entry is a quantity that may be averaged
pixel-wise, so both wrappers combine predictions by their arithmetic mean:

* :func:`tiled_predict` covers a large image with tiles of the model's input size, evenly spaced with the
  fewest tiles that cover it (model_spec §2.6, paper 001's Cityscapes protocol: ``ceil(H / th)`` rows
  starting at ``round(linspace(0, H - th, n))``, likewise for columns); overlapping depth is averaged and
  overlapping scores are averaged, so the label is the one with the higher mean normalised score, or
  (``probs_combine='max'``) combined by their maximum, so the label is the one with the highest
  normalised score of any tile (paper 001's literal rule: "compare the normalized score maps and take the
  label with higher score").
* :func:`flip_tta` averages the prediction of the image and the flipped-back prediction of its horizontal
  mirror image (depth in metres, scores as probabilities).

Everything is jittable: tile positions are static Python ints (from the static image shape) and the tiles
run one after the other in a ``lax.scan``, so memory does not grow with the number of tiles and the
model is compiled once.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping

import jax
import jax.numpy as jnp
import numpy as np

from semdepth_jax.data.meta import IGNORE_INDEX

Predictions = dict[str, jax.Array]
"""``depth`` (B, H, W) metres and/or ``probs`` (B, H, W, C), at the size of the input image."""

DenseFn = Callable[[jax.Array, jax.Array | None], Mapping[str, jax.Array]]
"""``fn(image (B, h, w, 3) float32 in [0, 1], labels (B, h, w) int32 or None) -> Predictions``."""


def tile_starts(size: int, tile: int) -> tuple[int, ...]:
  """Start offsets of tiles of length ``tile`` that cover ``[0, size)`` with minimum overlap.

  ``n = ceil(size / tile)`` tiles start at ``round(linspace(0, size - tile, n))`` (halves round up), the
  placement recommended for paper 001's tiled testing (model_spec §2.6). The first tile starts at 0 and
  the last one ends at ``size``; consecutive tiles overlap by at most ``tile - 1`` pixels, never leave a gap.

  Args:
    size: image length in pixels (>= 1).
    tile: tile length in pixels (>= 1). If ``size <= tile`` there is one tile at 0 (the caller pads).

  Returns:
    Increasing start offsets.

  Raises:
    ValueError: non-positive ``size`` or ``tile``.
  """
  size, tile = int(size), int(tile)
  if size < 1 or tile < 1:
    raise ValueError(f"tile_starts: size and tile must be >= 1, got size={size}, tile={tile}")
  if size <= tile:
    return (0,)
  n = math.ceil(size / tile)
  return tuple(int(math.floor(v + 0.5)) for v in np.linspace(0.0, size - tile, n))


def tile_grid(
  height: int, width: int, tile_size: tuple[int, int]
) -> tuple[tuple[int, ...], tuple[int, ...]]:
  """Row and column start offsets of the tiles covering a ``height`` x ``width`` image (see ``tile_starts``)."""
  th, tw = (int(v) for v in tile_size)
  return tile_starts(height, th), tile_starts(width, tw)


def coverage_counts(height: int, width: int, tile_size: tuple[int, int]) -> np.ndarray:
  """int32 (H, W) number of tiles covering each pixel (>= 1 everywhere).

  Images smaller than a tile count as padded to the tile size (see ``tiled_predict``).
  """
  th, tw = (int(v) for v in tile_size)
  hp, wp = max(height, th), max(width, tw)
  rows, cols = tile_grid(hp, wp, (th, tw))
  counts = np.zeros((hp, wp), np.int32)
  for r in rows:
    for c in cols:
      counts[r : r + th, c : c + tw] += 1
  return counts[:height, :width]


def _pad_to(x: jax.Array, height: int, width: int, value=None) -> jax.Array:
  """Pads axes 1, 2 at the bottom/right up to (height, width): edge values, or ``value`` if given."""
  ph, pw = height - x.shape[1], width - x.shape[2]
  if ph <= 0 and pw <= 0:
    return x
  pad = [(0, 0), (0, max(ph, 0)), (0, max(pw, 0))] + [(0, 0)] * (x.ndim - 3)
  if value is None:
    return jnp.pad(x, pad, mode="edge")
  return jnp.pad(x, pad, mode="constant", constant_values=value)


PROBS_COMBINES = ("mean", "max")
"""How :func:`tiled_predict` combines overlapping class scores (``probs``)."""


def tiled_predict(
  fn: DenseFn,
  image: jax.Array,
  tile_size: tuple[int, int],
  labels: jax.Array | None = None,
  *,
  probs_combine: str = "mean",
) -> Predictions:
  """Runs ``fn`` on overlapping tiles of ``image`` and stitches the results.

  Tiles of ``tile_size`` are placed by :func:`tile_grid`; each output pixel is the mean of the predictions
  of all tiles covering it (``coverage_counts``), except ``probs`` with ``probs_combine='max'``: the
  per-class maximum over the covering tiles (then the argmax is the label with the highest normalised
  score of any tile, paper 001 §5.1; the values no longer sum to 1). An image smaller than a tile in some
  dimension is padded at the bottom/right with its edge pixels (labels with ``IGNORE_INDEX``) and the
  result cropped back.

  Args:
    fn: dense prediction function (see ``DenseFn``); called with (B, th, tw, 3) tiles and must return
      maps of the tile size.
    image: float32 (B, H, W, 3) in [0, 1].
    tile_size: (th, tw), the model's input size.
    labels: optional int32 (B, H, W) labels, tiled alongside the image and passed to ``fn``.
    probs_combine: ``'mean'`` or ``'max'`` (:data:`PROBS_COMBINES`) for the ``probs`` key.

  Returns:
    Dict with the keys of ``fn``'s output, each (B, H, W, ...) float32.

  Raises:
    ValueError: ``fn`` returns a map whose size is not the tile size, or an unknown ``probs_combine``.
  """
  if probs_combine not in PROBS_COMBINES:
    raise ValueError(
      f"tiled_predict: probs_combine must be one of {PROBS_COMBINES}, got {probs_combine!r}"
    )
  use_max = {"probs"} if probs_combine == "max" else set()
  B, H, W = image.shape[:3]
  th, tw = (int(v) for v in tile_size)
  hp, wp = max(H, th), max(W, tw)
  x = _pad_to(image, hp, wp)
  lab = None if labels is None else _pad_to(labels, hp, wp, IGNORE_INDEX)
  rows, cols = tile_grid(hp, wp, (th, tw))
  starts = np.asarray([(r, c) for r in rows for c in cols], np.int32)

  def run_tile(rc):
    r, c = rc[0], rc[1]
    tile = jax.lax.dynamic_slice(x, (0, r, c, 0), (B, th, tw, x.shape[3]))
    tile_lab = None if lab is None else jax.lax.dynamic_slice(lab, (0, r, c), (B, th, tw))
    return dict(fn(tile, tile_lab))

  shapes = jax.eval_shape(run_tile, jnp.zeros((2,), jnp.int32))
  for k, v in shapes.items():
    if tuple(v.shape[:3]) != (B, th, tw):
      raise ValueError(
        f"tiled_predict: fn returned {k!r} of shape {v.shape}; expected (B, {th}, {tw}, ...) (the tile "
        "size) - resize the model output to its input size inside fn"
      )
  init = {k: jnp.zeros((B, hp, wp) + tuple(v.shape[3:]), jnp.float32) for k, v in shapes.items()}

  def body(acc, rc):
    out = run_tile(rc)
    new = {}
    for k, v in out.items():
      start = (0, rc[0], rc[1]) + (0,) * (v.ndim - 3)
      cur = jax.lax.dynamic_slice(acc[k], start, v.shape)
      v = v.astype(jnp.float32)
      # Scores are >= 0, so the zero initialisation is neutral for the maximum.
      upd = jnp.maximum(cur, v) if k in use_max else cur + v
      new[k] = jax.lax.dynamic_update_slice(acc[k], upd, start)
    return new, None

  sums, _ = jax.lax.scan(body, init, jnp.asarray(starts))
  counts = jnp.asarray(coverage_counts(hp, wp, (th, tw)), jnp.float32)
  out = {}
  for k, s in sums.items():
    c = counts.reshape((1, hp, wp) + (1,) * (s.ndim - 3))
    out[k] = (s if k in use_max else s / c)[:, :H, :W]
  return out


def hflip(x: jax.Array) -> jax.Array:
  """Mirrors axis 2 (width) of a (B, H, W, ...) array."""
  return jnp.flip(x, axis=2)


def flip_tta(fn: DenseFn, image: jax.Array, labels: jax.Array | None = None) -> Predictions:
  """Horizontal-flip test-time augmentation: mean of ``fn(image)`` and ``hflip(fn(hflip(image)))``.

  Both passes run as one batch of 2B images. Depth is averaged in metres and class scores as
  probabilities (so the label is the argmax of the mean probability).

  Args:
    fn: dense prediction function (see ``DenseFn``).
    image: float32 (B, H, W, 3) in [0, 1].
    labels: optional int32 (B, H, W), flipped alongside the image.

  Returns:
    Dict with the keys of ``fn``'s output, (B, H, W, ...) float32.
  """
  B = image.shape[0]
  both = jnp.concatenate([image, hflip(image)], axis=0)
  lab = None if labels is None else jnp.concatenate([labels, hflip(labels)], axis=0)
  out = fn(both, lab)
  return {
    k: 0.5 * (v[:B].astype(jnp.float32) + hflip(v[B:]).astype(jnp.float32)) for k, v in out.items()
  }
