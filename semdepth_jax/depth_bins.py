"""Depth discretisation (uniform, SID, DORN-shifted SID, 004's log10 quantisation) and decoding.

Classification-style depth heads (papers 002 and 004, model_spec §3.2, §7.5) predict a bin per pixel. This
module turns metric depth into bin indices (``encode``) and bin scores back into metres (``decode_argmax``,
``decode_expectation``). It also holds paper 000's target convention, *inverted normalised depth*
(``to_inverted_normalised`` / ``from_inverted_normalised``, docs/model_spec.md §1.0, §9.1).

Kinds (``make_bins(kind, alpha, beta, num_bins)``; depths in metres, ``K = num_bins``):

* ``"uniform"``: edges ``t_i = alpha + (beta - alpha) * i / K``, i = 0..K; ``K`` classes; centre = interval
  midpoint.
* ``"sid"``: spacing-increasing discretisation, docs/model_spec.md §3.2 / paper 002 Eq. 2:
  ``t_i = exp(log alpha + log(beta / alpha) * i / K)``; ``K`` classes; default decoding value = the bin centre
  in log space ``exp(log alpha + log(beta / alpha) * (i + 0.5) / K)`` (§3.2 option (a)).
* ``"dorn"``: DORN's shifted SID (§3.2): ``alpha* = 1``, shift ``xi = 1 - alpha``, ``beta* = beta + xi``,
  ``t_i = exp(log(beta*) * i / K) - xi`` (so ``t_0 = alpha``, ``t_K = beta``); ``K`` classes; default decoding
  value = DORN's midpoint ``(t_c + t_{c+1}) / 2`` (§3.2 option (b), recommended for 002).
* ``"log10"``: paper 004 Eq. 1 (§7.5): ``q = (log10 beta - log10 alpha) / K``,
  ``b = round((log10 x - log10 alpha) / q)``; ``K + 1`` classes ``0..K`` whose values are the quantisation
  points ``10 ** (log10 alpha + j * q)``; ``edges`` holds the ``K + 2`` rounding boundaries (half steps).

Encoding rules (all kinds): ``y <= 0``, NaN and ``y > beta`` (paper 002: depths beyond 80 m are ignored) map
to ``ignore_index``; ``0 < y < alpha`` maps to class 0 when ``clip_below=True`` (model_spec §3.2's
``clip(floor(...), 0, K - 1)``) and to ``ignore_index`` otherwise; ``y == beta`` maps to the last class.
Rounding: ``floor`` for uniform/SID/DORN (``t_c <= y < t_{c+1}``, §3.2 recommendation), round-half-up
``floor(v + 0.5)`` for ``log10`` (paper 004 writes "round").

DORN's *released* decoders (``demo_kitti.py``: ``exp((l - 1 + 40) / 25)``; ``demo_nyuv2.py``:
``exp((l - 1) / 25 - 0.36)``) are uniform log bins of width 1/25 that are *not* the ``dorn`` kind above;
``dorn_released_bins`` builds them as SID bins whose lower edge ``t_l`` equals the released formula for an
ordinal count ``l`` (decode with ``mode="lower_edge"``). The released models output 2K channels, i.e. K
thresholds, so the count ``l`` runs over ``0..K`` and the bins have ``K + 1`` classes.

All array functions are pure ``jax.numpy`` and jittable; a ``DepthBins`` is a constant closed over (it is
hashable by identity, so it may also be a static argument).
"""

from __future__ import annotations

import dataclasses
import math

import jax
import jax.numpy as jnp
import numpy as np

IGNORE_INDEX = 255
"""Default bin index of pixels without a valid target (same value as the stored label ignore index)."""

KINDS = ("uniform", "sid", "dorn", "log10")

# model_spec §3.2 recommended defaults for paper 002 (DORN KITTI setting) and §5.3 for paper 004 on NYU.
SID_DEFAULTS = {"alpha": 1.0, "beta": 80.0, "num_bins": 71}
NYU_DEFAULTS = {"alpha": 0.7, "beta": 10.0, "num_bins": 68}

_DECODE_MODES = ("default", "log_centre", "midpoint", "lower_edge")


@dataclasses.dataclass(frozen=True, eq=False)
class DepthBins:
  """A depth discretisation.

  Attributes:
    kind: one of ``KINDS``.
    alpha: lower end of the range in metres (> 0).
    beta: upper end of the range in metres (> alpha).
    num_bins: ``K`` of the source equations. The number of classes is ``num_classes`` (``K``, or ``K + 1``
      for ``log10``).
    edges: float64 numpy array of bin boundaries in metres: ``(K + 1,)`` (``t_0 = alpha .. t_K = beta``)
      or ``(K + 2,)`` half-step rounding boundaries for ``log10``.
    centres: float64 numpy array ``(num_classes,)``, the metres each class decodes to by default (log-space
      centre for ``sid``, DORN midpoint for ``dorn``, midpoint for ``uniform``, quantisation point for
      ``log10``).
  """

  kind: str
  alpha: float
  beta: float
  num_bins: int
  edges: np.ndarray
  centres: np.ndarray

  @property
  def num_classes(self) -> int:
    """Number of classes a head must output (``K``, or ``K + 1`` for ``log10``)."""
    return int(self.centres.shape[0])

  @property
  def log10_step(self) -> float:
    """``q = (log10 beta - log10 alpha) / K`` of paper 004 Eq. 1 (defined for every kind)."""
    return (math.log10(self.beta) - math.log10(self.alpha)) / self.num_bins

  @property
  def shift(self) -> float:
    """DORN's shift ``xi = 1 - alpha`` for ``kind == "dorn"``, else 0."""
    return 1.0 - self.alpha if self.kind == "dorn" else 0.0

  def __repr__(self) -> str:
    return (
      f"DepthBins(kind={self.kind!r}, alpha={self.alpha}, beta={self.beta}, num_bins={self.num_bins}, "
      f"num_classes={self.num_classes})"
    )


def make_bins(
  kind: str = "sid",
  alpha: float = SID_DEFAULTS["alpha"],
  beta: float = SID_DEFAULTS["beta"],
  num_bins: int = SID_DEFAULTS["num_bins"],
) -> DepthBins:
  """Builds a depth discretisation (see the module docstring for the equations).

  Defaults are model_spec §3.2's recommendation for paper 002 (SID, alpha = 1 m, beta = 80 m, K = 71, the
  DORN KITTI setting); for NYU-range data model_spec §5.3 proposes K = 68 over about 0.7-10 m
  (``NYU_DEFAULTS``).

  Args:
    kind: ``"uniform"``, ``"sid"``, ``"dorn"`` or ``"log10"``.
    alpha: lower end in metres, > 0.
    beta: upper end in metres, > alpha.
    num_bins: ``K`` >= 1.

  Returns:
    A ``DepthBins``.

  Raises:
    ValueError: unknown kind or an invalid range / bin count (the message names the argument).
  """
  if kind not in KINDS:
    raise ValueError(f"make_bins: kind must be one of {KINDS}, got {kind!r}")
  alpha, beta, K = float(alpha), float(beta), int(num_bins)
  if not (alpha > 0 and math.isfinite(alpha)):
    raise ValueError(f"make_bins: alpha must be a finite depth > 0 m, got {alpha}")
  if not (beta > alpha and math.isfinite(beta)):
    raise ValueError(f"make_bins: beta must be finite and > alpha={alpha}, got {beta}")
  if K < 1:
    raise ValueError(f"make_bins: num_bins must be >= 1, got {num_bins}")
  i = np.arange(K + 1, dtype=np.float64)
  if kind == "uniform":
    edges = alpha + (beta - alpha) * i / K
    centres = 0.5 * (edges[:-1] + edges[1:])
  elif kind == "sid":
    log_a, log_ratio = math.log(alpha), math.log(beta / alpha)
    edges = np.exp(log_a + log_ratio * i / K)
    centres = np.exp(log_a + log_ratio * (np.arange(K) + 0.5) / K)
  elif kind == "dorn":
    xi = 1.0 - alpha
    edges = np.exp(math.log(beta + xi) * i / K) - xi
    centres = 0.5 * (edges[:-1] + edges[1:])
  else:  # log10
    q = (math.log10(beta) - math.log10(alpha)) / K
    centres = 10.0 ** (math.log10(alpha) + i * q)
    edges = 10.0 ** (math.log10(alpha) + (np.arange(K + 2) - 0.5) * q)
  return DepthBins(kind=kind, alpha=alpha, beta=beta, num_bins=K, edges=edges, centres=centres)


def dorn_released_bins(dataset: str = "kitti") -> DepthBins:
  """SID bins whose lower edges reproduce DORN's released decoders (docs/model_spec.md §3.2).

  ``demo_kitti.py`` decodes an ordinal count ``l`` to ``exp((l - 1 + 40) / 25)`` and ``demo_nyuv2.py`` to
  ``exp((l - 1) / 25 - 0.36)``. The released deploy nets output ``2K`` channels (KITTI 142, K = 71; NYU 136,
  K = 68), i.e. K ordinal thresholds, so the count ``l`` (thresholds passed) takes the ``K + 1`` values
  ``0..K``. Both formulas are ``t_l`` for SID edges ``t_i = exp(c0 + i / 25)``, ``i = 0..K + 1``, with
  ``c0 = 39 / 25`` (KITTI: ``l = 0`` -> 4.76 m, ``l = K`` -> ``exp(110 / 25)`` = 81.45 m) or ``c0 = -0.4``
  (NYU: 0.67 m .. ``exp(67 / 25 - 0.36)`` = 10.18 m), so ``decode_argmax(bins, ..., mode="lower_edge")``
  of class ``l`` equals the released formula for every count the models can output.

  Args:
    dataset: ``"kitti"`` or ``"nyu"``.

  Returns:
    A ``DepthBins`` of kind ``"sid"`` with ``num_bins = num_classes = K + 1`` (72 for KITTI, 69 for NYU).

  Raises:
    ValueError: unknown dataset.
  """
  if dataset == "kitti":
    c0, K = 39.0 / 25.0, 71
  elif dataset == "nyu":
    c0, K = -0.4, 68
  else:
    raise ValueError(f"dorn_released_bins: dataset must be 'kitti' or 'nyu', got {dataset!r}")
  # Counts 0..K are K + 1 classes; their lower edges t_0..t_K are the released values.
  return make_bins("sid", alpha=math.exp(c0), beta=math.exp(c0 + (K + 1) / 25.0), num_bins=K + 1)


def encode(
  bins: DepthBins,
  depth: jax.Array,
  *,
  ignore_index: int = IGNORE_INDEX,
  clip_below: bool = True,
) -> jax.Array:
  """Maps depth in metres to bin indices.

  Args:
    bins: the discretisation.
    depth: float array of any shape, metres; ``<= 0`` or NaN = invalid.
    ignore_index: index written for invalid pixels and ``y > beta``.
    clip_below: map ``0 < y < alpha`` to class 0 (True, model_spec §3.2) or to ``ignore_index``.

  Returns:
    int32 array of the same shape with values in ``[0, num_classes)`` or ``ignore_index``. Rounding is
    ``floor`` (uniform, sid, dorn) or round-half-up (log10); see the module docstring.
  """
  y = jnp.asarray(depth, jnp.float32)
  valid = jnp.isfinite(y) & (y > 0) & (y <= bins.beta)
  if not clip_below:
    valid &= y >= bins.alpha
  # Below alpha only class 0 is possible; clamping first keeps every log argument positive.
  safe = jnp.where(valid, jnp.maximum(y, bins.alpha), bins.alpha)
  K = bins.num_bins
  if bins.kind == "uniform":
    v = jnp.floor((safe - bins.alpha) / (bins.beta - bins.alpha) * K)
  elif bins.kind == "sid":
    v = jnp.floor(K * jnp.log(safe / bins.alpha) / math.log(bins.beta / bins.alpha))
  elif bins.kind == "dorn":
    xi = bins.shift
    v = jnp.floor(K * jnp.log(safe + xi) / math.log(bins.beta + xi))
  else:
    v = jnp.floor((jnp.log10(safe) - math.log10(bins.alpha)) / bins.log10_step + 0.5)
  idx = jnp.clip(v, 0, bins.num_classes - 1).astype(jnp.int32)
  return jnp.where(valid, idx, jnp.int32(ignore_index))


def class_values(bins: DepthBins, mode: str = "default") -> np.ndarray:
  """Metres that each class decodes to.

  Args:
    bins: the discretisation.
    mode: ``"default"`` (``bins.centres``); ``"log_centre"`` (geometric mean of the bin edges, §3.2 (a));
      ``"midpoint"`` (``(t_c + t_{c+1}) / 2``, DORN, §3.2 (b)); ``"lower_edge"`` (``t_c``, DORN's released
      decoders, see ``dorn_released_bins``). Only ``"default"`` is defined for ``log10``.

  Returns:
    float64 numpy array ``(num_classes,)``.

  Raises:
    ValueError: unknown mode, or a non-default mode for ``log10`` bins.
  """
  if mode not in _DECODE_MODES:
    raise ValueError(f"class_values: mode must be one of {_DECODE_MODES}, got {mode!r}")
  if mode == "default":
    return bins.centres
  if bins.kind == "log10":
    raise ValueError(
      "class_values: log10 bins decode to their quantisation points only (mode='default'), got "
      f"mode={mode!r}"
    )
  lo, hi = bins.edges[:-1], bins.edges[1:]
  if mode == "log_centre":
    return np.sqrt(lo * hi)
  if mode == "midpoint":
    return 0.5 * (lo + hi)
  return lo


def decode_argmax(bins: DepthBins, scores: jax.Array, *, mode: str = "default") -> jax.Array:
  """Decodes class scores (logits or probabilities) to depth by argmax.

  Args:
    bins: the discretisation.
    scores: float ``(..., num_classes)``, e.g. ``depth_logits`` (B, H, W, K) NHWC.
    mode: class value rule, see ``class_values``.

  Returns:
    float32 ``(...)`` depth in metres.

  Raises:
    ValueError: the last axis is not ``num_classes``.
  """
  _check_classes(bins, scores)
  values = jnp.asarray(class_values(bins, mode), jnp.float32)
  return values[jnp.argmax(scores, axis=-1)]


def decode_index(bins: DepthBins, index: jax.Array, *, mode: str = "default") -> jax.Array:
  """Maps integer class indices to depth in metres (``ignore_index`` and out-of-range -> 0 = invalid).

  Args:
    bins: the discretisation.
    index: int array of class indices, any shape.
    mode: class value rule, see ``class_values``.

  Returns:
    float32 array of the same shape, metres.
  """
  index = jnp.asarray(index)
  values = jnp.asarray(class_values(bins, mode), jnp.float32)
  ok = (index >= 0) & (index < bins.num_classes)
  return jnp.where(ok, values[jnp.where(ok, index, 0)], 0.0)


def expected_index(probs: jax.Array) -> jax.Array:
  """Expected bin index ``d = sum_j j * p_j`` (paper 004 soft classification, model_spec §7.5).

  Args:
    probs: float ``(..., C)`` probabilities (softmax output) summing to 1 over the last axis.

  Returns:
    float32 ``(...)`` in ``[0, C - 1]`` for valid probabilities; differentiable.
  """
  probs = jnp.asarray(probs, jnp.float32)
  j = jnp.arange(probs.shape[-1], dtype=jnp.float32)
  return jnp.sum(probs * j, axis=-1)


def decode_expectation(bins: DepthBins, probs: jax.Array, *, mode: str = "default") -> jax.Array:
  """Decodes softmax probabilities to depth by expectation; differentiable.

  * ``log10`` bins (paper 004): expected index ``d = sum_j j p_j``, then ``x = 10 ** (log10 alpha + d q)``
    (inverse of Eq. 1, docs/model_spec.md §7.5).
  * other kinds: ``sum_j p_j * value_j`` with ``value_j = class_values(bins, mode)``.

  On a one-hot ``probs`` both equal ``decode_argmax``.

  Args:
    bins: the discretisation.
    probs: float ``(..., num_classes)`` probabilities (apply ``jax.nn.softmax`` to logits first).
    mode: class value rule for non-``log10`` kinds, see ``class_values``.

  Returns:
    float32 ``(...)`` depth in metres.

  Raises:
    ValueError: the last axis is not ``num_classes``.
  """
  _check_classes(bins, probs)
  probs = jnp.asarray(probs, jnp.float32)
  if bins.kind == "log10":
    d = expected_index(probs)
    return jnp.power(10.0, math.log10(bins.alpha) + d * bins.log10_step)
  values = jnp.asarray(class_values(bins, mode), jnp.float32)
  return jnp.sum(probs * values, axis=-1)


def to_inverted_normalised(depth_m: jax.Array, norm_m: float) -> jax.Array:
  """Paper 000's depth target: ``1 - min(depth / norm_m, 1)`` (near = 1, far = 0; model_spec §1.0, §9.1).

  Invalid depth (``<= 0`` or NaN; the stored-data convention is 0 = no measurement, sky included) maps to 0,
  the same value as depth at or beyond ``norm_m`` ("far"), which is what R0's targets hold for sky. Note R0
  itself would map a decoded 0 to 1; the stored data never hands it a true zero depth.

  Args:
    depth_m: float array, metres.
    norm_m: saturation distance in metres (> 0); R0's arithmetic corresponds to about 256 m under the
      reading of docs/model_spec.md §9.1.

  Returns:
    float32 array in [0, 1]; differentiable where ``0 < depth < norm_m``.

  Raises:
    ValueError: ``norm_m <= 0``.
  """
  if not norm_m > 0:
    raise ValueError(f"to_inverted_normalised: norm_m must be > 0 metres, got {norm_m}")
  d = jnp.asarray(depth_m, jnp.float32)
  valid = jnp.isfinite(d) & (d > 0)
  safe = jnp.where(valid, d, 0.0)
  return jnp.where(valid, 1.0 - jnp.minimum(safe / norm_m, 1.0), 0.0)


def from_inverted_normalised(pred: jax.Array, norm_m: float) -> jax.Array:
  """Inverse of ``to_inverted_normalised``: ``(1 - clip(pred, 0, 1)) * norm_m`` metres.

  ``pred = 1`` gives 0 m and ``pred = 0`` gives ``norm_m`` (the saturation distance, i.e. "far"); the
  invalid/far ambiguity of the forward map cannot be undone.

  Args:
    pred: float array, inverted normalised depth (values outside [0, 1] are clipped, as R0 does).
    norm_m: saturation distance in metres (> 0).

  Returns:
    float32 array, metres in ``[0, norm_m]``.

  Raises:
    ValueError: ``norm_m <= 0``.
  """
  if not norm_m > 0:
    raise ValueError(f"from_inverted_normalised: norm_m must be > 0 metres, got {norm_m}")
  p = jnp.clip(jnp.asarray(pred, jnp.float32), 0.0, 1.0)
  return (1.0 - p) * norm_m


def _check_classes(bins: DepthBins, scores) -> None:
  if scores.shape[-1] != bins.num_classes:
    raise ValueError(
      f"expected {bins.num_classes} classes on the last axis for {bins!r}, got shape {scores.shape}"
    )
