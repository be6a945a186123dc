"""Robust SIDE routing of paper 004 (Ren et al.): low or high depth range per image (docs/model_spec.md §5.4).

Stage 1 decides the depth range of an image, stage 2 runs the low- or high-range DS-SIDENet. Two stage-1 rules,
both pure functions here (the networks that feed them are ordinary models):

* (a) scene classification: the top-``K`` (paper: 15) Places365 categories of a scene classifier vote; a
  category votes "low" when it is indoor in the Places365 release's ``IO_places365.txt`` (shipped with this
  package, MIT licence, see ``resources/places365/README.md``); the image is low range if it gets more than
  ``K / 2`` low votes (:func:`scene_vote`).
* (b) coarse depth: a coarse DS-SIDENet predicts depth; the image is high range if its maximum predicted depth
  exceeds ``sigma`` = 5.89 m (:func:`max_depth_rule`). The statistic is a switch (:func:`coarse_depth_rule`,
  ``statistic`` = ``max`` (paper) / ``p95`` / ``median``): on NYU rooms the ground truth itself has pixels
  beyond 5.89 m in most frames, so even a perfect coarse network fails the max rule there, while the median
  separates every real set of the shared data (``benchmarks/coarse_router_accuracy.py --oracle``).
"""

from __future__ import annotations

import functools
from importlib import resources
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

Array = jax.Array

TOP_K = 15
"""Scene categories that vote (paper §3: top-15)."""

SIGMA_M = 5.89
"""Max-depth threshold of the coarse-depth rule in metres (paper §3, chosen on ROB 2018 validation)."""

NUM_PLACES365 = 365
INDOOR, OUTDOOR = 1, 2
"""Labels of ``IO_places365.txt``."""

STATISTICS = ("max", "p95", "median")
"""Per-image statistics of the coarse depth that :func:`coarse_depth_rule` compares with ``sigma`` (paper: max)."""

LOW, HIGH = "low", "high"
"""Depth-range decisions (low = indoor network, high = outdoor network)."""

_IO_FILE = "IO_places365.txt"


def _io_text() -> tuple[str, str]:
  path = resources.files("semdepth_jax").joinpath("resources", "places365", _IO_FILE)
  return str(path), path.read_text(encoding="utf-8")


def parse_places365_io(text: str, where: str = _IO_FILE) -> tuple[tuple[str, int], ...]:
  """Parses ``IO_places365.txt``: one ``/<l>/<category> <1|2>`` per line, 365 lines in class order.

  Args:
    text: the file's contents.
    where: the file name, for errors.

  Returns:
    365 ``(category, label)`` pairs, label 1 = indoor, 2 = outdoor, in the classifier's output order.

  Raises:
    ValueError: a malformed line, a label other than 1 / 2, or not 365 entries (the message names ``where``,
      the expected and the actual).
  """
  out = []
  for n, line in enumerate(text.splitlines(), 1):
    if not line.strip():
      continue
    parts = line.split()
    if len(parts) != 2 or parts[1] not in ("1", "2"):
      raise ValueError(f"{where}:{n}: expected '<category> <1|2>', got {line!r}")
    out.append((parts[0], int(parts[1])))
  if len(out) != NUM_PLACES365:
    raise ValueError(f"{where}: expected {NUM_PLACES365} categories, got {len(out)}")
  return tuple(out)


@functools.cache
def load_places365_io() -> tuple[tuple[str, int], ...]:
  """The packaged Places365 indoor/outdoor list (see :func:`parse_places365_io`)."""
  where, text = _io_text()
  return parse_places365_io(text, where)


def places365_low_range_mask() -> np.ndarray:
  """Low-range mask, bool (365,): True where the category votes "low depth range" (indoor), in classifier output order."""
  return np.array([label == INDOOR for _, label in load_places365_io()])


def scene_vote(probs: Any, low_mask: Any, top_k: int = TOP_K) -> dict[str, Array]:
  """Top-``k`` majority vote of scene probabilities (paper §3, docs/model_spec.md §5.4 (a)).

  Args:
    probs: float (..., C) scene probabilities or logits (only their order matters).
    low_mask: bool (C,), True for categories that vote low range (:func:`places365_low_range_mask`).
    top_k: voting categories (paper: 15); ties in ``probs`` go to the lower index (``lax.top_k``).

  Returns:
    ``{'low_votes': int32 (...), 'is_low': bool (...)}``; ``is_low`` = ``low_votes > top_k / 2``.

  Raises:
    ValueError: ``low_mask`` does not have one entry per category, or ``top_k`` not in [1, C].
  """
  probs = jnp.asarray(probs, jnp.float32)
  low_mask = jnp.asarray(low_mask, bool)
  c = probs.shape[-1]
  if low_mask.shape != (c,):
    raise ValueError(f"scene_vote: low_mask must have shape ({c},), got {low_mask.shape}")
  if not 1 <= int(top_k) <= c:
    raise ValueError(f"scene_vote: top_k must be in [1, {c}], got {top_k}")
  _, idx = jax.lax.top_k(probs, int(top_k))
  votes = jnp.sum(low_mask[idx], axis=-1, dtype=jnp.int32)
  return {"low_votes": votes, "is_low": 2 * votes > int(top_k)}


def depth_statistics(depth: Any, valid: Any = None) -> dict[str, Array]:
  """Every statistic of :data:`STATISTICS` of each depth map over its valid pixels.

  Args:
    depth: float (B, H, W) or (B, H, W, 1) depth in metres.
    valid: optional bool (B, H, W) of pixels to consider (e.g. not the zero padding); non-finite depths are
      ignored too.

  Returns:
    ``{'max' | 'p95' | 'median': float32 (B,) metres}``; percentiles interpolate linearly between order
    statistics (``numpy.percentile``'s default); -inf for an image without valid pixels.

  Raises:
    ValueError: ``depth`` is not (B, H, W[, 1]).
  """
  d = jnp.asarray(depth, jnp.float32)
  if d.ndim == 4 and d.shape[-1] == 1:
    d = d[..., 0]
  if d.ndim != 3:
    raise ValueError(f"coarse depth rule: depth must be (B, H, W) metres, got shape {d.shape}")
  ok = jnp.isfinite(d)
  if valid is not None:
    ok = ok & jnp.asarray(valid, bool).reshape(d.shape)
  any_ok = jnp.any(ok, axis=(1, 2))
  out = {"max": jnp.max(jnp.where(ok, d, -jnp.inf), axis=(1, 2))}
  flat = jnp.where(ok, d, jnp.nan).reshape(d.shape[0], -1)
  p95, median = jnp.nanquantile(flat, jnp.array([0.95, 0.5]), axis=1)  # one sort for both
  out["p95"] = jnp.where(any_ok, p95, -jnp.inf)
  out["median"] = jnp.where(any_ok, median, -jnp.inf)
  return out


def coarse_depth_rule(
  depth: Any, sigma: float = SIGMA_M, statistic: str = "max", valid: Any = None
) -> dict[str, Array]:
  """Coarse-depth rule (docs/model_spec.md §5.4 (b)): high range iff ``statistic(depth) > sigma``.

  The paper (§3) uses the maximum; ``p95`` and ``median`` are this library's alternatives (module
  docstring).

  Args:
    depth: float (B, H, W) or (B, H, W, 1) predicted depth in metres.
    sigma: threshold in metres (paper: 5.89).
    statistic: one of :data:`STATISTICS`.
    valid: optional bool (B, H, W) of pixels to consider; non-finite depths are ignored too.

  Returns:
    ``{'max_depth', 'p95_depth', 'median_depth': float32 (B,) metres (-inf for an image without valid
    pixels), 'is_high': bool (B,)}``.

  Raises:
    ValueError: ``depth`` is not (B, H, W[, 1]), or an unknown ``statistic``.
  """
  if statistic not in STATISTICS:
    raise ValueError(
      f"coarse depth rule: statistic must be one of {', '.join(STATISTICS)}, got {statistic!r}"
    )
  stats = depth_statistics(depth, valid)
  out = {f"{k}_depth": v for k, v in stats.items()}
  out["is_high"] = stats[statistic] > float(sigma)
  return out


def max_depth_rule(depth: Any, sigma: float = SIGMA_M, valid: Any = None) -> dict[str, Array]:
  """The paper's coarse-depth rule (§3): high range iff the maximum depth > ``sigma``.

  :func:`coarse_depth_rule` with ``statistic='max'`` (same arguments, returns and errors).
  """
  return coarse_depth_rule(depth, sigma, "max", valid)


def decision(is_low: Any) -> list[str]:
  """Decision names: bool ``is_low`` (B,) -> ``['low' | 'high', ...]`` (host-side names for reports)."""
  return [LOW if bool(v) else HIGH for v in np.asarray(is_low).reshape(-1)]


__all__ = [
  "HIGH",
  "LOW",
  "SIGMA_M",
  "STATISTICS",
  "TOP_K",
  "coarse_depth_rule",
  "decision",
  "depth_statistics",
  "load_places365_io",
  "max_depth_rule",
  "parse_places365_io",
  "places365_low_range_mask",
  "scene_vote",
]
