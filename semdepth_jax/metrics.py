"""Depth and segmentation metrics, evaluation protocols and streaming accumulators.

Everything numeric runs in ``jax.numpy`` (jitted, shardable); the one-shot functions return Python floats /
numpy arrays. Definitions (docs/model_spec.md §8; ``y`` = ground truth, ``p`` = prediction, metres,
``d = p - y``, ``e = ln p - ln y``, means over the valid pixels ``M`` of one image or of the whole set):

=================  ======================================================  =================================
key                definition                                              source
=================  ======================================================  =================================
delta1/2/3         mean[max(y/p, p/y) < 1.25^k]                            §8.1 (MD2/ADA ``compute_errors``)
abs_rel            mean |d| / y                                            §8.1 (divides by GT)
sq_rel             mean d^2 / y                                            §8.1
rmse               sqrt(mean d^2)                                          §8.1
rmse_log           sqrt(mean e^2) (natural log)                            §8.1
log10              mean |log10 p - log10 y|                                §8.1 (ADA)
silog              100 * sqrt(mean e^2 - (mean e)^2)                       §8.1 (ADA, KITTI devkit)
sie                mean e^2 - (mean e)^2 (no sqrt)                         §8.1, §8.3 (Eigen 2014)
mae                mean |d|                                                KITTI devkit
irmse              sqrt(mean (1/p_km - 1/y_km)^2), 1/km                    §8.1 (KITTI devkit)
mse                mean d^2                                                paper 000 "MQE"
sq_rel_kitti       mean d^2 / y^2 (KITTI devkit "squared relative")        KITTI devkit ``evaluate_depth.cpp``
pp_mvn1/2/3        literal ratio test on MVN(p), MVN(y) (see below)        §8.3 (paper 001 Table 3)
pp_mvn_signed1/2/3 the same, also requiring equal signs                    §8.3 recommendation
=================  ======================================================  =================================

``sie``/``silog`` are computed per image as a two-pass variance (mean of ``(e - mean e)^2``), which equals
the textbook form without its float32 cancellation. PP-MVN: ``MVN(x) = (x - mean x) / (std x + 1e-9)`` per
image over its valid pixels with the population std (Caffe MVN, §7.3); the literal test
``max(a/b, b/a) < 1.25^k`` passes every pixel whose two MVN values have opposite signs (both ratios
negative), which is what paper 001's formula does if implemented as written (§8.3); the signed variant
also requires ``a * b > 0``. Neither is differentiable (they are counts).

Masks and protocol (``depth_metrics``, ``DepthAccumulator``): a pixel is valid where ``y`` is finite,
``y > min_depth``, ``y < max_depth`` (if given) and inside the crop; the prediction is clamped to
``[min_depth, max_depth]`` (NaN predictions to ``min_depth``, as AdaBins does) and never below
``PRED_FLOOR`` so logs and ratios stay finite. Averaging: ``per_image=True`` computes every metric per
image and averages over images (MD2/ADA/KITTI convention); images without any valid pixel are *excluded*
from the average (if no image has one the result is NaN). ``per_image=False`` pools all valid pixels of
the set (FCRN ``error_metrics.m`` and the multi-task convention).

Crops are named presets in ``CROP_PRESETS`` (referenced by name from ``semdepth_jax.data.meta``) or
explicit ``(top, bottom, left, right)`` pixel bounds, ``bottom``/``right`` exclusive.

Segmentation (``segmentation_metrics``, ``SegAccumulator``): one confusion matrix (rows = GT class,
columns = predicted class) over the whole evaluation set; GT pixels equal to ``ignore_index`` or outside
``[0, num_classes)`` are ignored; predictions outside ``[0, num_classes)`` count as wrong (a hidden extra
column). pixel_acc (G) = trace / total; mean_class_acc (C) = mean over classes present in GT of
diag / row sum; iou = diag / (row + col - diag), NaN for an empty union; miou = mean over classes with a
non-empty union; fw_iou = sum over classes of (row / total) * iou (model_spec §8.3, KZ ``metric.py``).
Counts are exact up to 2^55 pixels (two int32 words), so they do not overflow on large sets.

Evaluation protocols (``PROTOCOLS``, ``get_protocol``, ``evaluate_depth_protocol``) reproduce the
published scripts of papers 000 (R0) and 003 (R3) next to the field protocols; see each ``Protocol``'s
``description`` and ``reproduces``.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING

import jax
import jax.numpy as jnp
import numpy as np
from flax import struct

from semdepth_jax import depth_bins

if TYPE_CHECKING:
  from semdepth_jax.data.meta import DatasetMeta

DEPTH_METRIC_KEYS = (
  "delta1",
  "delta2",
  "delta3",
  "abs_rel",
  "sq_rel",
  "rmse",
  "rmse_log",
  "log10",
  "silog",
  "sie",
  "mae",
  "irmse",
)
"""Keys of ``depth_metrics`` (the public API; others rely on them)."""

EXTRA_DEPTH_KEYS = (
  "mse",
  "sq_rel_kitti",
  "pp_mvn1",
  "pp_mvn2",
  "pp_mvn3",
  "pp_mvn_signed1",
  "pp_mvn_signed2",
  "pp_mvn_signed3",
)
"""Further keys computed by ``DepthAccumulator.finish`` (used by protocols)."""

ALL_DEPTH_KEYS = DEPTH_METRIC_KEYS + EXTRA_DEPTH_KEYS

SEG_METRIC_KEYS = ("pixel_acc", "mean_class_acc", "miou", "fw_iou")
"""Scalar keys of ``segmentation_metrics`` (plus ``iou_per_class`` and ``confusion_matrix`` arrays)."""

R0_KEYS = ("rms", "mqe", "rmsl", "rlsi", "absr", "absq", "sigma1", "sigma2", "sigma3")
"""Paper 000's metric names (model_spec §8.2), used by the ``r0_ssegdepnet`` and ``clean_000`` protocols."""

R3_KEYS = ("delta1", "delta2", "delta3", "abs_rel", "sq_rel", "rmse", "rmse_log", "log10")
"""Paper 003's metric names (R3 ``eval_metrics.depth_metrics``)."""

PRED_FLOOR = 1e-6
"""Smallest prediction in metres used by the standard metrics, so ``log`` and ``1/p`` stay finite."""

MVN_EPS = 1e-9
"""Caffe MVN epsilon added to the std (docs/model_spec.md §7.3)."""

_DELTA_BASE = 1.25
_LN10 = math.log(10.0)
_WIDE_BITS = 24  # wide integer counts: value = hi * 2**24 + lo, 0 <= lo < 2**24.


# ---------------------------------------------------------------------------------------------------------
# Crops.
# ---------------------------------------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class CropPreset:
  """A named evaluation crop, scaled to the actual image size.

  At most one of ``pixels`` (with ``reference_size``) or ``fractions`` is set; with ``window`` set, the
  image is first cut to that bottom-centred window (KITTI's benchmark crop, ``kb_crop``) and the pixel or
  fraction bounds then refer to the window, exactly as cropping both maps first and applying the crop to
  the cropped size (so a crop preset with a window equals "crop GT and prediction, then crop again").

  Attributes:
    name: registry key.
    description: what it is and where it comes from.
    pixels: (top, bottom, left, right) at ``reference_size``; scaled as ``floor(v * size / reference)``.
    reference_size: (height, width) the pixel bounds refer to.
    fractions: (top, bottom, left, right) as fractions of (H, H, W, W); resolved as ``int(f * size)``
      exactly like MD2/AdaBins.
    window: (height, width) in pixels, absolute (not scaled): rows ``H - height .. H``, cols ``left ..
      left + width`` with ``left = (W - width) // 2`` (AdaBins/BTS/ZoeDepth/toolbox ``kb_crop`` with
      352 x 1216; the image must be at least that large).
  """

  name: str
  description: str
  pixels: tuple[int, int, int, int] | None = None
  reference_size: tuple[int, int] | None = None
  fractions: tuple[float, float, float, float] | None = None
  window: tuple[int, int] | None = None

  def resolve(self, height: int, width: int) -> tuple[int, int, int, int]:
    """Returns (top, bottom, left, right) pixel bounds for an image of ``height`` x ``width``.

    Raises:
      ValueError: the image is smaller than ``window``.
    """
    top = left = 0
    if self.window is not None:
      wh, ww = self.window
      if height < wh or width < ww:
        raise ValueError(
          f"crop {self.name!r} needs an image of at least {wh}x{ww} (its {wh}x{ww} benchmark window is "
          f"absolute), got {height}x{width}"
        )
      top, left = height - wh, (width - ww) // 2
      height, width = wh, ww
    if self.pixels is not None:
      rh, rw = self.reference_size
      t, b, l, r = self.pixels
      t, b, l, r = t * height // rh, b * height // rh, l * width // rw, r * width // rw
    elif self.fractions is not None:
      ft, fb, fl, fr = self.fractions
      t, b, l, r = int(ft * height), int(fb * height), int(fl * width), int(fr * width)
    else:
      t, b, l, r = 0, height, 0, width
    return (top + t, top + b, left + l, left + r)


CROP_PRESETS: dict[str, CropPreset] = {
  p.name: p
  for p in (
    CropPreset(
      "nyu_eigen",
      "NYUv2 Eigen crop rows 45:471, cols 41:601 (Python, exclusive end) at 480x640: BTS "
      "eval_with_pngs.py (--eigen_crop) and AdaBins evaluate.py `eval_mask[45:471, 41:601]` (model_spec "
      "§8.5). One row and column inside the official toolbox crop (nyu_toolbox).",
      pixels=(45, 471, 41, 601),
      reference_size=(480, 640),
    ),
    CropPreset(
      "nyu_toolbox",
      "NYUv2 official toolbox crop: MATLAB 1-based inclusive 45:471, 41:601 (NYU Depth V2 toolbox "
      "get_projection_mask.m, the 427x561 region with a valid depth projection) = Python rows 44:471, "
      "cols 40:601 at 480x640.",
      pixels=(44, 471, 40, 601),
      reference_size=(480, 640),
    ),
    CropPreset(
      "nyu_densedepth",
      "NYUv2 crop of DenseDepth (Alhashim & Wonka 2018): eigen_test_crop.npy = [20, 459, 24, 615] in its "
      "nyu_test.zip, applied inclusively by utils.evaluate (`crop[0]:crop[1]+1`) = Python rows 20:460, "
      "cols 24:616 at 480x640.",
      pixels=(20, 460, 24, 616),
      reference_size=(480, 640),
    ),
    CropPreset(
      "nyu_md2",
      "Legacy name (kept so old configs and results still resolve): DenseDepth's crop values [20, 459, 24, "
      "615] read as Python bounds with an exclusive end (rows 20:459, cols 24:615 at 480x640), as NYU forks "
      "of monodepth2 apply them; monodepth2 itself has no NYU evaluation. Use nyu_densedepth for "
      "DenseDepth's own inclusive reading.",
      pixels=(20, 459, 24, 615),
      reference_size=(480, 640),
    ),
    CropPreset(
      "kitti_garg",
      "KITTI Garg crop rows [0.40810811H, 0.99189189H), cols [0.03594771W, 0.96405229W) of the full "
      "image (monodepth2 evaluate_depth.py; §8.5).",
      fractions=(0.40810811, 0.99189189, 0.03594771, 0.96405229),
    ),
    CropPreset(
      "kitti_eigen",
      "KITTI Eigen crop rows [0.3324324H, 0.91351351H), cols [0.0359477W, 0.96405229W) (AdaBins; §8.5).",
      fractions=(0.3324324, 0.91351351, 0.0359477, 0.96405229),
    ),
    CropPreset(
      "kitti_kb",
      "KITTI benchmark crop (kb_crop): the bottom-centred 352x1216 window, rows H-352:H, cols "
      "(W-1216)//2 + 0:1216 (AdaBins/BTS dataloader do_kb_crop, ZoeDepth, toolbox eval_kb_crop).",
      window=(352, 1216),
    ),
    CropPreset(
      "kitti_kb_garg",
      "kb_crop to 352x1216, then the Garg fractions of the cropped 352x1216 map (rows 143:349, cols "
      "43:1172 of the window): AdaBins / ZoeDepth / depth-toolbox KITTI evaluation.",
      fractions=(0.40810811, 0.99189189, 0.03594771, 0.96405229),
      window=(352, 1216),
    ),
  )
}

CropSpec = str | Sequence[int] | None


def resolve_crop(crop: CropSpec, height: int, width: int) -> tuple[int, int, int, int] | None:
  """Resolves a crop preset name or explicit bounds to pixel bounds for a ``height`` x ``width`` image.

  Args:
    crop: ``None`` (whole image), a ``CROP_PRESETS`` name, or (top, bottom, left, right) ints.
    height: image height in pixels.
    width: image width in pixels.

  Returns:
    ``None`` or (top, bottom, left, right) with ``0 <= top < bottom <= height`` and
    ``0 <= left < right <= width``.

  Raises:
    KeyError: unknown preset name (lists the known ones).
    ValueError: bounds that are not 4 ints or do not fit the image.
  """
  if crop is None:
    return None
  if isinstance(crop, str):
    if crop not in CROP_PRESETS:
      raise KeyError(f"unknown crop preset {crop!r}; known: {', '.join(sorted(CROP_PRESETS))}")
    bounds = CROP_PRESETS[crop].resolve(height, width)
  else:
    bounds = tuple(int(v) for v in crop)
    if len(bounds) != 4:
      raise ValueError(f"crop must be (top, bottom, left, right), got {crop!r}")
  t, b, l, r = bounds
  if not (0 <= t < b <= height and 0 <= l < r <= width):
    raise ValueError(
      f"crop {crop!r} -> rows {t}:{b}, cols {l}:{r} does not fit an image of {height}x{width}"
    )
  return bounds


def _crop_mask(height: int, width: int, crop: CropSpec) -> jax.Array | None:
  bounds = resolve_crop(crop, height, width)
  if bounds is None:
    return None
  t, b, l, r = bounds
  rows = jnp.arange(height)[:, None]
  cols = jnp.arange(width)[None, :]
  return (rows >= t) & (rows < b) & (cols >= l) & (cols < r)


# ---------------------------------------------------------------------------------------------------------
# Small NaN-safe helpers (double-where pattern: sanitise before the op, select after it).
# ---------------------------------------------------------------------------------------------------------
def _safe_sqrt(x: jax.Array) -> jax.Array:
  pos = x > 0
  return jnp.where(pos, jnp.sqrt(jnp.where(pos, x, 1.0)), 0.0)


def _safe_div(num: jax.Array, den: jax.Array) -> jax.Array:
  ok = den > 0
  return jnp.where(ok, num / jnp.where(ok, den, 1.0), 0.0)


def _as_bhw(x, name: str) -> jax.Array:
  x = jnp.asarray(x)
  if x.ndim == 4 and x.shape[-1] == 1:
    x = x[..., 0]
  if x.ndim != 3:
    raise ValueError(f"{name} must be (B, H, W) or (B, H, W, 1), got shape {x.shape}")
  return x


def _check_same_shape(pred: jax.Array, gt: jax.Array) -> None:
  if pred.shape != gt.shape:
    raise ValueError(
      f"prediction shape {pred.shape} != ground-truth shape {gt.shape}; resize the prediction to the "
      "ground-truth size first (e.g. metrics.resize_prediction)"
    )


def _example_mask(example_mask, batch: int) -> jax.Array:
  if example_mask is None:
    return jnp.ones((batch,), bool)
  m = jnp.asarray(example_mask, bool)
  if m.shape != (batch,):
    raise ValueError(f"example_mask must have shape ({batch},), got {m.shape}")
  return m


def _wide_zeros(shape=()) -> dict[str, jax.Array]:
  return {"lo": jnp.zeros(shape, jnp.int32), "hi": jnp.zeros(shape, jnp.int32)}


def _wide_add(w: dict[str, jax.Array], x: jax.Array) -> dict[str, jax.Array]:
  """Adds a non-negative int32 count ``x`` (< 2**31 - 2**24) to a wide counter."""
  lo = w["lo"] + x.astype(jnp.int32)
  return {
    "lo": jnp.bitwise_and(lo, (1 << _WIDE_BITS) - 1),
    "hi": w["hi"] + jnp.right_shift(lo, _WIDE_BITS),
  }


def _wide_merge(a, b) -> dict[str, jax.Array]:
  lo = a["lo"] + b["lo"]
  return {
    "lo": jnp.bitwise_and(lo, (1 << _WIDE_BITS) - 1),
    "hi": a["hi"] + b["hi"] + jnp.right_shift(lo, _WIDE_BITS),
  }


def _wide_value(w) -> np.ndarray:
  return np.asarray(w["hi"], np.int64) * (1 << _WIDE_BITS) + np.asarray(w["lo"], np.int64)


def _wide_float(w) -> jax.Array:
  return w["hi"].astype(jnp.float32) * float(1 << _WIDE_BITS) + w["lo"].astype(jnp.float32)


# ---------------------------------------------------------------------------------------------------------
# Depth: masks, per-pixel terms, per-image metrics.
# ---------------------------------------------------------------------------------------------------------
def depth_valid_mask(
  gt: jax.Array,
  *,
  min_depth: float = 1e-3,
  max_depth: float | None = None,
  crop: CropSpec = None,
) -> jax.Array:
  """Evaluation validity mask: finite ``gt``, ``min_depth < gt`` (``< max_depth``), inside the crop.

  Args:
    gt: float (B, H, W) ground-truth depth in metres (0 / NaN = invalid).
    min_depth: exclusive lower bound, metres.
    max_depth: exclusive upper bound, metres, or ``None``.
    crop: crop preset name, (top, bottom, left, right) or ``None``.

  Returns:
    bool (B, H, W).
  """
  gt = jnp.asarray(gt)
  valid = jnp.isfinite(gt) & (gt > min_depth)
  if max_depth is not None:
    valid &= gt < max_depth
  cmask = _crop_mask(gt.shape[-2], gt.shape[-1], crop)
  if cmask is not None:
    valid &= cmask
  return valid


def clip_prediction(
  pred: jax.Array, lower: float | None = None, upper: float | None = None
) -> jax.Array:
  """Clamps a depth prediction to ``[max(lower, PRED_FLOOR), upper]``; NaN becomes the lower bound.

  Args:
    pred: float array, metres.
    lower: lower clamp in metres (``None`` = ``PRED_FLOOR`` only).
    upper: upper clamp in metres or ``None``.

  Returns:
    float32 array of the same shape; the gradient is 1 inside the range and 0 outside.
  """
  lo = PRED_FLOOR if lower is None else max(float(lower), PRED_FLOOR)
  pred = jnp.asarray(pred, jnp.float32)
  pred = jnp.where(jnp.isnan(pred), lo, pred)
  return jnp.clip(pred, lo, upper)


def median_scaled_prediction(pred: jax.Array, gt: jax.Array, valid: jax.Array) -> jax.Array:
  """Per-image median scaling: ``p * median(y) / median(p)`` with both medians over ``valid`` pixels.

  monodepth2 ``evaluate_depth.py`` (mono evaluation) computes ``ratio = np.median(gt) / np.median(pred)``
  on the masked pixels of each image, multiplies, then clamps to ``[1e-3, 80]``; ``DepthAccumulator``
  with ``median_scaling=True`` does the same (scale, then its clamp). The median of an even count is the
  mean of the two middle values (``np.median``). Images without valid pixels keep their prediction.

  Args:
    pred: float (B, H, W) predicted depth (any positive scale).
    gt: float (B, H, W) ground-truth depth, metres.
    valid: bool (B, H, W) pixels the medians are taken over.

  Returns:
    float32 (B, H, W) scaled prediction (NaN where the prediction was NaN; non-finite medians give a
    non-finite image, which the metrics then report as NaN).
  """
  pred = jnp.asarray(pred, jnp.float32)
  gt = jnp.asarray(gt, jnp.float32)
  has = jnp.any(valid, axis=(1, 2))
  med_y = jnp.nanmedian(jnp.where(valid, gt, jnp.nan), axis=(1, 2))
  med_p = jnp.nanmedian(jnp.where(valid, pred, jnp.nan), axis=(1, 2))
  ratio = jnp.where(has, med_y / jnp.where(has, med_p, 1.0), 1.0)
  return pred * ratio[:, None, None]


def _mvn(x: jax.Array, valid: jax.Array, vf: jax.Array, n_safe: jax.Array) -> jax.Array:
  mean = jnp.sum(x * vf, axis=(1, 2)) / n_safe
  c = jnp.where(valid, x - mean[:, None, None], 0.0)
  std = _safe_sqrt(jnp.sum(c * c, axis=(1, 2)) / n_safe)
  return c / (std[:, None, None] + MVN_EPS)


def _image_terms(pred: jax.Array, gt: jax.Array, valid: jax.Array) -> dict[str, jax.Array]:
  """Per-pixel terms (B, H, W), zero outside ``valid``; ``pred`` must already be > 0 where valid.

  A non-finite prediction on a valid pixel (``+inf`` without an upper clamp, or NaN when no clamp ran) is
  replaced by 1 in the terms so that sums and gradients stay finite, and flagged in ``terms["bad"]``; the
  callers turn every metric of such an image into NaN (a broken image never scores a perfect value).
  """
  vf = valid.astype(jnp.float32)
  finite = jnp.isfinite(pred)
  p = jnp.where(valid & finite, pred, 1.0)
  g = jnp.where(valid, gt, 1.0)
  d = p - g
  e = jnp.log(p) - jnp.log(g)
  inv = 1000.0 / p - 1000.0 / g
  ratio = jax.lax.stop_gradient(jnp.maximum(g / p, p / g))
  n = jnp.sum(vf, axis=(1, 2))
  n_safe = jnp.maximum(n, 1.0)
  a = jax.lax.stop_gradient(_mvn(p, valid, vf, n_safe))
  b = jax.lax.stop_gradient(_mvn(g, valid, vf, n_safe))
  # Literal PP-MVN ratio test with IEEE semantics (a/0 = inf, 0/0 = NaN fails); forward-only counts.
  mvn_ratio = jnp.maximum(a / b, b / a)
  same_sign = a * b > 0
  terms = {
    "abs_rel": jnp.abs(d) / g * vf,
    "sq_rel": d * d / g * vf,
    "sq_rel_kitti": (d / g) ** 2 * vf,
    "sq": d * d * vf,
    "abs": jnp.abs(d) * vf,
    "e": e * vf,
    "e2": e * e * vf,
    "abs_log10": jnp.abs(e) / _LN10 * vf,
    "inv2": inv * inv * vf,
  }
  for k in (1, 2, 3):
    thr = _DELTA_BASE**k
    terms[f"delta{k}"] = (valid & (ratio < thr)).astype(jnp.float32)
    lit = valid & (mvn_ratio < thr)
    terms[f"pp_mvn{k}"] = lit.astype(jnp.float32)
    terms[f"pp_mvn_signed{k}"] = (lit & same_sign).astype(jnp.float32)
  terms["n"] = vf
  terms["bad"] = (valid & ~finite).astype(jnp.float32)
  return terms


_COUNT_TERMS = (
  "n",
  "delta1",
  "delta2",
  "delta3",
  "pp_mvn1",
  "pp_mvn2",
  "pp_mvn3",
  "pp_mvn_signed1",
  "pp_mvn_signed2",
  "pp_mvn_signed3",
)
_SUM_TERMS = ("abs_rel", "sq_rel", "sq_rel_kitti", "sq", "abs", "e2", "abs_log10", "inv2")


def _metrics_from_sums(s: Mapping[str, jax.Array], var_e: jax.Array) -> dict[str, jax.Array]:
  """Metric values from pixel sums ``s`` (count keys and sum keys) and the variance of ``e``."""
  n = s["n"]
  out = {}
  for k in (1, 2, 3):
    out[f"delta{k}"] = _safe_div(s[f"delta{k}"], n)
    out[f"pp_mvn{k}"] = _safe_div(s[f"pp_mvn{k}"], n)
    out[f"pp_mvn_signed{k}"] = _safe_div(s[f"pp_mvn_signed{k}"], n)
  out["abs_rel"] = _safe_div(s["abs_rel"], n)
  out["sq_rel"] = _safe_div(s["sq_rel"], n)
  out["sq_rel_kitti"] = _safe_div(s["sq_rel_kitti"], n)
  out["mse"] = _safe_div(s["sq"], n)
  out["rmse"] = _safe_sqrt(out["mse"])
  out["mae"] = _safe_div(s["abs"], n)
  out["rmse_log"] = _safe_sqrt(_safe_div(s["e2"], n))
  out["log10"] = _safe_div(s["abs_log10"], n)
  out["sie"] = jnp.maximum(var_e, 0.0)
  out["silog"] = 100.0 * _safe_sqrt(out["sie"])
  out["irmse"] = _safe_sqrt(_safe_div(s["inv2"], n))
  return out


def per_image_depth_metrics(
  pred: jax.Array, gt: jax.Array, valid: jax.Array
) -> tuple[dict[str, jax.Array], jax.Array]:
  """All depth metrics of every image (jittable and differentiable w.r.t. ``pred``).

  No clamping happens here: pass a prediction that is > 0 on ``valid`` (e.g. through
  ``clip_prediction``); values outside ``valid`` are never read (double-where), so gradients stay finite
  for all-invalid masks, zero depths and NaN ground truth.

  Args:
    pred: float (B, H, W) predicted depth, metres.
    gt: float (B, H, W) ground-truth depth, metres.
    valid: bool (B, H, W) pixels to evaluate (e.g. ``depth_valid_mask``).

  Returns:
    (metrics, n): ``metrics`` maps every key of ``ALL_DEPTH_KEYS`` to float32 (B,) values (0 for images
    without valid pixels; NaN for every key of an image with a non-finite prediction on a valid pixel,
    e.g. ``+inf`` when no upper clamp ran); ``n`` is the float32 (B,) number of valid pixels per image.
  """
  valid = jnp.asarray(valid, bool)
  terms = _image_terms(jnp.asarray(pred, jnp.float32), jnp.asarray(gt, jnp.float32), valid)
  metrics, n, _ = _per_image_from_terms(terms, valid)
  return metrics, n


def _per_image_from_terms(terms, valid):
  """(metrics with NaN for broken images, n, broken): per-image values from the per-pixel terms."""
  sums = {k: jnp.sum(terms[k], axis=(1, 2)) for k in _COUNT_TERMS + _SUM_TERMS}
  n = sums["n"]
  mean_e = _safe_div(jnp.sum(terms["e"], axis=(1, 2)), n)
  centred = jnp.where(valid, terms["e"] - mean_e[:, None, None], 0.0)
  var_e = _safe_div(jnp.sum(centred * centred, axis=(1, 2)), n)
  broken = jnp.sum(terms["bad"], axis=(1, 2)) > 0
  metrics = {k: jnp.where(broken, jnp.nan, v) for k, v in _metrics_from_sums(sums, var_e).items()}
  return metrics, n, broken


# ---------------------------------------------------------------------------------------------------------
# Streaming accumulators.
# ---------------------------------------------------------------------------------------------------------
@struct.dataclass
class DepthStats:
  """Running sums of a ``DepthAccumulator`` (a pytree of jnp arrays; merge by ``DepthAccumulator.merge``).

  Attributes:
    image_sum: key -> float32 scalar, sum over images with >= 1 valid pixel of their per-image metric.
    num_images: int32 scalar, images with >= 1 valid pixel.
    num_examples: int32 scalar, examples seen with ``example_mask`` True.
    counts: key -> wide counter ({"lo", "hi"} int32) of pooled pixel counts (``n``, delta and PP-MVN
      passes).
    sums: key -> float32 scalar pooled pixel sums (abs_rel, sq_rel, sq_rel_kitti, sq, abs, e2, abs_log10,
      inv2).
    e_mean: float32 scalar pooled mean of ``e = ln p - ln y``.
    e_m2: float32 scalar pooled sum of squared deviations of ``e`` (merged with Chan et al.'s formula).
    num_broken: int32 scalar, images with a non-finite prediction on a valid pixel (their values are
      left out of every sum so the state stays finite; ``finish`` then reports NaN for every key).
  """

  image_sum: dict[str, jax.Array]
  num_images: jax.Array
  num_examples: jax.Array
  counts: dict[str, dict[str, jax.Array]]
  sums: dict[str, jax.Array]
  e_mean: jax.Array
  e_m2: jax.Array
  num_broken: jax.Array


@dataclasses.dataclass(frozen=True)
class DepthAccumulator:
  """Streaming depth metrics: ``init``, ``update`` (pure, jittable), ``merge``, ``finish`` (host).

  ``finish`` gives the same numbers as ``depth_metrics`` for any batching (uneven or padded batches;
  padding examples have ``example_mask`` False), up to float32 summation order (~1e-6 relative).
  Typical use: ``step = jax.jit(acc.update)``, ``state = acc.init()``, ``state = step(state, p, y, m)`` per
  batch, then ``acc.finish(state)`` (per-image averages) or ``acc.finish(state, per_image=False)``
  (pooled). Batches may be sharded over devices along the batch axis.

  Attributes:
    min_depth: exclusive lower bound of valid ground truth, metres.
    max_depth: exclusive upper bound of valid ground truth, metres, or ``None``.
    crop: crop preset name, (top, bottom, left, right) or ``None``.
    clip: (lower, upper) prediction clamp in metres (``None`` entries = no bound; ``PRED_FLOOR`` always
      applies); ``None`` means ``(min_depth, max_depth)``.
    median_scaling: scale each prediction by ``median(y) / median(p)`` over the image's valid pixels
      before the clamp (monodepth2 ``evaluate_depth.py`` for scale-ambiguous, e.g. monocular
      self-supervised, models; ``median_scaled_prediction``).
  """

  min_depth: float = 1e-3
  max_depth: float | None = None
  crop: str | tuple[int, int, int, int] | None = None
  clip: tuple[float | None, float | None] | None = None
  median_scaling: bool = False

  def __post_init__(self):
    if self.crop is not None and not isinstance(self.crop, str):
      object.__setattr__(self, "crop", tuple(int(v) for v in self.crop))
    if self.clip is not None:
      object.__setattr__(self, "clip", tuple(self.clip))

  @property
  def clip_range(self) -> tuple[float | None, float | None]:
    """(lower, upper) clamp applied to predictions, metres."""
    return self.clip if self.clip is not None else (self.min_depth, self.max_depth)

  def init(self) -> DepthStats:
    """Empty state."""
    z = jnp.zeros((), jnp.float32)
    return DepthStats(
      image_sum={k: z for k in ALL_DEPTH_KEYS},
      num_images=jnp.zeros((), jnp.int32),
      num_examples=jnp.zeros((), jnp.int32),
      counts={k: _wide_zeros() for k in _COUNT_TERMS},
      sums={k: z for k in _SUM_TERMS},
      e_mean=z,
      e_m2=z,
      num_broken=jnp.zeros((), jnp.int32),
    )

  def prepare(self, pred, gt, example_mask=None) -> tuple[jax.Array, jax.Array, jax.Array]:
    """Squeezes, clamps the prediction and builds the validity mask; returns (pred, gt, valid)."""
    pred = _as_bhw(pred, "pred").astype(jnp.float32)
    gt = _as_bhw(gt, "gt").astype(jnp.float32)
    _check_same_shape(pred, gt)
    emask = _example_mask(example_mask, gt.shape[0])
    valid = (
      depth_valid_mask(gt, min_depth=self.min_depth, max_depth=self.max_depth, crop=self.crop)
      & emask[:, None, None]
    )
    if self.median_scaling:
      pred = median_scaled_prediction(pred, gt, valid)
    lo, hi = self.clip_range
    return clip_prediction(pred, lo, hi), gt, valid

  def update(
    self, state: DepthStats, pred: jax.Array, gt: jax.Array, example_mask: jax.Array | None = None
  ) -> DepthStats:
    """Adds a batch.

    Args:
      state: running ``DepthStats``.
      pred: float (B, H, W) or (B, H, W, 1) predicted depth, metres, same size as ``gt``.
      gt: float (B, H, W) or (B, H, W, 1) ground-truth depth, metres (0 / NaN = invalid).
      example_mask: bool (B,), False for padding examples; ``None`` = all True.

    Returns:
      The new state.
    """
    pred, gt, valid = self.prepare(pred, gt, example_mask)
    emask = _example_mask(example_mask, gt.shape[0])
    terms = _image_terms(pred, gt, valid)
    per_image, n, broken = _per_image_from_terms(terms, valid)
    has = n > 0
    # Broken images enter only ``num_broken`` (finish then reports NaN); the sums stay finite.
    keep = (~broken).astype(jnp.float32)[:, None, None]
    terms = {k: v * keep for k, v in terms.items()}
    valid = valid & ~broken[:, None, None]
    n = n * (~broken)
    counts = {
      k: _wide_add(state.counts[k], jnp.sum(terms[k].astype(jnp.int32))) for k in _COUNT_TERMS
    }
    sums = {k: state.sums[k] + jnp.sum(terms[k]) for k in _SUM_TERMS}
    n_b = jnp.sum(n)
    mean_b = _safe_div(jnp.sum(terms["e"]), n_b)
    dev = jnp.where(valid, terms["e"] - mean_b, 0.0)
    m2_b = jnp.sum(dev * dev)
    n_a = _wide_float(state.counts["n"])
    e_mean, e_m2 = _chan_merge(n_a, state.e_mean, state.e_m2, n_b, mean_b, m2_b)
    return DepthStats(
      image_sum={
        k: state.image_sum[k] + jnp.sum(jnp.where(has & ~broken, per_image[k], 0.0))
        for k in ALL_DEPTH_KEYS
      },
      num_images=state.num_images + jnp.sum(has.astype(jnp.int32)),
      num_examples=state.num_examples + jnp.sum(emask.astype(jnp.int32)),
      counts=counts,
      sums=sums,
      e_mean=e_mean,
      e_m2=e_m2,
      num_broken=state.num_broken + jnp.sum(broken.astype(jnp.int32)),
    )

  def merge(self, a: DepthStats, b: DepthStats) -> DepthStats:
    """Combines two states (e.g. from different hosts or data shards)."""
    e_mean, e_m2 = _chan_merge(
      _wide_float(a.counts["n"]), a.e_mean, a.e_m2, _wide_float(b.counts["n"]), b.e_mean, b.e_m2
    )
    return DepthStats(
      image_sum={k: a.image_sum[k] + b.image_sum[k] for k in ALL_DEPTH_KEYS},
      num_images=a.num_images + b.num_images,
      num_examples=a.num_examples + b.num_examples,
      counts={k: _wide_merge(a.counts[k], b.counts[k]) for k in _COUNT_TERMS},
      sums={k: a.sums[k] + b.sums[k] for k in _SUM_TERMS},
      e_mean=e_mean,
      e_m2=e_m2,
      num_broken=a.num_broken + b.num_broken,
    )

  def finish(self, state: DepthStats, *, per_image: bool = True) -> dict[str, float]:
    """Final metrics (host side).

    Args:
      state: accumulated ``DepthStats``.
      per_image: average per-image metrics over images with valid pixels (True) or pool pixels (False).

    Returns:
      Every key of ``ALL_DEPTH_KEYS`` -> Python float (NaN when nothing was valid, and NaN for every key
      in both averaging modes when an image had a non-finite prediction on a valid pixel; see
      ``counts``'s ``num_nonfinite_images``).
    """
    state = jax.device_get(state)
    if int(state.num_broken) > 0:
      return {k: float("nan") for k in ALL_DEPTH_KEYS}
    if per_image:
      num = int(state.num_images)
      if num == 0:
        return {k: float("nan") for k in ALL_DEPTH_KEYS}
      return {k: float(np.float64(state.image_sum[k]) / num) for k in ALL_DEPTH_KEYS}
    counts = {k: float(_wide_value(state.counts[k])) for k in _COUNT_TERMS}
    n = counts["n"]
    if n == 0:
      return {k: float("nan") for k in ALL_DEPTH_KEYS}
    sums = {k: float(state.sums[k]) for k in _SUM_TERMS}
    s = {**counts, **sums}
    out = {}
    for k in (1, 2, 3):
      for name in (f"delta{k}", f"pp_mvn{k}", f"pp_mvn_signed{k}"):
        out[name] = s[name] / n
    out["abs_rel"] = s["abs_rel"] / n
    out["sq_rel"] = s["sq_rel"] / n
    out["sq_rel_kitti"] = s["sq_rel_kitti"] / n
    out["mse"] = s["sq"] / n
    out["rmse"] = math.sqrt(max(out["mse"], 0.0))
    out["mae"] = s["abs"] / n
    out["rmse_log"] = math.sqrt(max(s["e2"] / n, 0.0))
    out["log10"] = s["abs_log10"] / n
    out["sie"] = max(float(state.e_m2) / n, 0.0)
    out["silog"] = 100.0 * math.sqrt(out["sie"])
    out["irmse"] = math.sqrt(max(s["inv2"] / n, 0.0))
    return {k: float(out[k]) for k in ALL_DEPTH_KEYS}

  def counts(self, state: DepthStats) -> dict[str, int]:
    """Example, image and pixel counts of a state.

    Returns:
      ``num_examples``, ``num_images`` (with >= 1 valid pixel), ``num_pixels`` (valid pixels of images
      with finite predictions) and ``num_nonfinite_images`` (images with a non-finite prediction on a
      valid pixel; when > 0, ``finish`` reports NaN for every metric).
    """
    state = jax.device_get(state)
    return {
      "num_examples": int(state.num_examples),
      "num_images": int(state.num_images),
      "num_pixels": int(_wide_value(state.counts["n"])),
      "num_nonfinite_images": int(state.num_broken),
    }


def _chan_merge(n_a, mean_a, m2_a, n_b, mean_b, m2_b):
  """Pooled mean / sum of squared deviations of two groups (Chan, Golub & LeVeque)."""
  n = n_a + n_b
  frac_b = _safe_div(n_b, n)
  delta = mean_b - mean_a
  mean = mean_a + delta * frac_b
  m2 = m2_a + m2_b + delta * delta * n_a * frac_b
  return mean, m2


@struct.dataclass
class SegStats:
  """Confusion matrix of a ``SegAccumulator`` as a wide counter (rows = GT, columns = prediction).

  Attributes:
    confusion: {"lo", "hi"} int32 (C, C + 1); column C counts predictions outside ``[0, C)``.
    num_examples: int32 scalar, examples seen with ``example_mask`` True.
  """

  confusion: dict[str, jax.Array]
  num_examples: jax.Array


@dataclasses.dataclass(frozen=True)
class SegAccumulator:
  """Streaming segmentation metrics over a confusion matrix (see the module docstring for definitions).

  Attributes:
    num_classes: C, labels are ``0 .. C - 1``.
    ignore_index: GT label that is ignored (the stored convention is 255).
  """

  num_classes: int
  ignore_index: int = 255

  def __post_init__(self):
    if int(self.num_classes) < 1:
      raise ValueError(f"num_classes must be >= 1, got {self.num_classes}")

  def init(self) -> SegStats:
    """Empty state."""
    C = int(self.num_classes)
    return SegStats(confusion=_wide_zeros((C, C + 1)), num_examples=jnp.zeros((), jnp.int32))

  def confusion_batch(self, pred, gt, example_mask=None) -> jax.Array:
    """int32 (C, C + 1) confusion counts of one batch.

    Args:
      pred: int (B, H, W) labels, or float (B, H, W, C) logits/probabilities (argmax is taken).
      gt: int (B, H, W) or (B, H, W, 1) labels with ``ignore_index``.
      example_mask: bool (B,) or ``None``.
    """
    C = int(self.num_classes)
    pred = jnp.asarray(pred)
    gt = jnp.asarray(gt)
    if gt.ndim == 4 and gt.shape[-1] == 1:
      gt = gt[..., 0]
    if jnp.issubdtype(pred.dtype, jnp.floating) and pred.ndim == gt.ndim + 1:
      pred = jnp.argmax(pred, axis=-1)
    elif pred.ndim == 4 and pred.shape[-1] == 1:
      pred = pred[..., 0]
    if pred.shape != gt.shape or gt.ndim != 3:
      raise ValueError(
        f"segmentation pred {pred.shape} and gt {gt.shape} must both be (B, H, W) (pred may also be "
        "(B, H, W, C) scores); resize the prediction (nearest) to the ground-truth size first"
      )
    gt = gt.astype(jnp.int32)
    pred = pred.astype(jnp.int32)
    emask = _example_mask(example_mask, gt.shape[0])
    valid = (gt != self.ignore_index) & (gt >= 0) & (gt < C) & emask[:, None, None]
    pred = jnp.where((pred >= 0) & (pred < C), pred, C)
    flat = jnp.where(valid, gt * (C + 1) + pred, 0).reshape(-1)
    counts = jnp.bincount(flat, weights=valid.reshape(-1).astype(jnp.int32), length=C * (C + 1))
    return counts.astype(jnp.int32).reshape(C, C + 1)

  def update(
    self, state: SegStats, pred: jax.Array, gt: jax.Array, example_mask: jax.Array | None = None
  ) -> SegStats:
    """Adds a batch (pure, jittable); arguments as in ``confusion_batch``."""
    cm = self.confusion_batch(pred, gt, example_mask)
    emask = _example_mask(example_mask, jnp.shape(gt)[0])
    return SegStats(
      confusion=_wide_add(state.confusion, cm),
      num_examples=state.num_examples + jnp.sum(emask.astype(jnp.int32)),
    )

  def merge(self, a: SegStats, b: SegStats) -> SegStats:
    """Combines two states."""
    return SegStats(
      confusion=_wide_merge(a.confusion, b.confusion), num_examples=a.num_examples + b.num_examples
    )

  def finish(self, state: SegStats) -> dict:
    """Final metrics (host side): see ``segmentation_metrics_from_confusion``."""
    full = _wide_value(jax.device_get(state.confusion))
    return segmentation_metrics_from_confusion(full)


def segmentation_metrics_from_confusion(confusion: np.ndarray) -> dict:
  """Segmentation metrics from a confusion matrix (rows = GT, columns = prediction).

  Args:
    confusion: int (C, C) or (C, C + 1) counts; an extra last column holds predictions outside
      ``[0, C)`` (they count as wrong).

  Returns:
    dict with ``pixel_acc``, ``mean_class_acc``, ``miou``, ``fw_iou`` (Python floats, NaN when undefined),
    ``iou_per_class`` (float64 (C,), NaN for an empty union), ``class_acc`` (float64 (C,), NaN for classes
    absent from GT), ``confusion_matrix`` (int64 (C, C)), ``num_invalid_pred`` (int) and ``num_pixels``
    (int, evaluated pixels).
  """
  cm_full = np.asarray(confusion, np.int64)
  C = cm_full.shape[0]
  if cm_full.shape not in ((C, C), (C, C + 1)):
    raise ValueError(f"confusion must be (C, C) or (C, C + 1), got {cm_full.shape}")
  cm = cm_full[:, :C]
  row = cm_full.sum(axis=1).astype(
    np.float64
  )  # all GT pixels of the class, invalid preds included.
  col = cm.sum(axis=0).astype(np.float64)
  diag = np.diag(cm).astype(np.float64)
  total = float(row.sum())
  union = row + col - diag
  with np.errstate(divide="ignore", invalid="ignore"):
    iou = np.where(union > 0, diag / np.where(union > 0, union, 1.0), np.nan)
    class_acc = np.where(row > 0, diag / np.where(row > 0, row, 1.0), np.nan)
  has_union = union > 0
  has_gt = row > 0
  nan = float("nan")
  return {
    "pixel_acc": float(diag.sum() / total) if total > 0 else nan,
    "mean_class_acc": float(class_acc[has_gt].mean()) if has_gt.any() else nan,
    "miou": float(iou[has_union].mean()) if has_union.any() else nan,
    "fw_iou": float(np.sum((row / total)[has_gt] * iou[has_gt])) if total > 0 else nan,
    "iou_per_class": iou,
    "class_acc": class_acc,
    "confusion_matrix": cm,
    "num_invalid_pred": int(cm_full[:, C:].sum()),
    "num_pixels": int(total),
  }


# ---------------------------------------------------------------------------------------------------------
# One-shot functional API.
# ---------------------------------------------------------------------------------------------------------
@functools.lru_cache(maxsize=64)
def _update_jit(accumulator) -> Callable:
  """One jitted ``update`` per accumulator configuration (bound methods are new objects each time)."""
  return jax.jit(accumulator.update)


def depth_metrics(
  pred,
  gt,
  *,
  min_depth: float = 1e-3,
  max_depth: float | None = None,
  crop: CropSpec = None,
  per_image: bool = True,
) -> dict[str, float]:
  """Standard depth metrics of a set of predictions (docs/model_spec.md §8.1, §8.5).

  Args:
    pred: float (B, H, W) or (B, H, W, 1) predicted depth in metres, same size as ``gt``.
    gt: float (B, H, W) or (B, H, W, 1) ground truth in metres (0 / NaN = invalid).
    min_depth: valid ground truth is ``> min_depth``; also the lower prediction clamp.
    max_depth: valid ground truth is ``< max_depth`` (if given); also the upper prediction clamp.
    crop: crop preset name (``CROP_PRESETS``), (top, bottom, left, right) pixels, or ``None``.
    per_image: average per-image metrics over images with valid pixels (True) or pool all pixels.

  Returns:
    ``{key: float}`` for ``DEPTH_METRIC_KEYS`` (delta1, delta2, delta3, abs_rel, sq_rel, rmse, rmse_log,
    log10, silog, sie, mae, irmse); NaN if no pixel is valid.

  Raises:
    ValueError: shapes differ or are not (B, H, W[, 1]); a crop that does not fit.
    KeyError: unknown crop preset.
  """
  acc = DepthAccumulator(min_depth=min_depth, max_depth=max_depth, crop=crop)
  pred = np.asarray(pred, np.float32)
  gt = np.asarray(gt, np.float32)
  state = _update_jit(acc)(acc.init(), pred, gt, np.ones((np.shape(gt)[0],), bool))
  out = acc.finish(state, per_image=per_image)
  return {k: out[k] for k in DEPTH_METRIC_KEYS}


def segmentation_metrics(pred, gt, *, num_classes: int, ignore_index: int) -> dict:
  """Segmentation metrics of a set of label maps (model_spec §8.3), over one confusion matrix.

  Args:
    pred: int (B, H, W) predicted labels (or float (B, H, W, C) scores; argmax is taken).
    gt: int (B, H, W) ground-truth labels; ``ignore_index`` pixels are ignored.
    num_classes: C.
    ignore_index: ignored GT label (255 in the stored data).

  Returns:
    dict with pixel_acc, mean_class_acc, miou, fw_iou (floats), iou_per_class (float64 (C,), NaN for
    classes with an empty union), class_acc, confusion_matrix (int64 (C, C)), num_invalid_pred, num_pixels.

  Raises:
    ValueError: shapes differ.
  """
  acc = SegAccumulator(num_classes=int(num_classes), ignore_index=int(ignore_index))
  pred = np.asarray(pred)
  gt = np.asarray(gt)
  state = _update_jit(acc)(acc.init(), pred, gt, np.ones((gt.shape[0],), bool))
  return acc.finish(state)


def pp_mvn(
  pred, gt, *, min_depth: float = 1e-3, max_depth: float | None = None
) -> dict[str, float]:
  """Paper 001's PP-MVN (Table 3, model_spec §8.3), per image then averaged, both variants labelled.

  Args:
    pred: float (B, H, W[, 1]) predicted depth, metres.
    gt: float (B, H, W[, 1]) ground truth, metres.
    min_depth: valid GT is ``> min_depth``.
    max_depth: valid GT is ``< max_depth`` if given.

  Returns:
    ``pp_mvn1..3`` (literal ratio test: opposite-sign pixels pass) and ``pp_mvn_signed1..3`` (equal signs
    required), thresholds 1.25, 1.25^2, 1.25^3.
  """
  acc = DepthAccumulator(min_depth=min_depth, max_depth=max_depth)
  state = _update_jit(acc)(
    acc.init(),
    np.asarray(pred, np.float32),
    np.asarray(gt, np.float32),
    np.ones((np.shape(gt)[0],), bool),
  )
  out = acc.finish(state)
  return {k: out[k] for k in EXTRA_DEPTH_KEYS if k.startswith("pp_mvn")}


# ---------------------------------------------------------------------------------------------------------
# Paper-specific metric scripts.
# ---------------------------------------------------------------------------------------------------------
R0_SIGMA_DENOMINATOR = 192 * 320
"""R0 divides its sigma counts by the *input* size 192x320, whatever the map size (model_spec §8.2)."""


def r0_ssegdepnet_per_image(
  pred: jax.Array, target: jax.Array, *, sigma_denominator: int = R0_SIGMA_DENOMINATOR
) -> dict[str, jax.Array]:
  """Paper 000's metrics exactly as R0's ``SSEGDEP-NET:`` script computes them, per image.

  Inputs are *inverted normalised* depth (near = 1, far = 0; ``depth_bins.to_inverted_normalised``). The
  prediction is clipped to [0, 1] as R0 does; then, per image over ALL pixels (no mask; model_spec §8.2):
  rms = sqrt(mean (y - x)^2); mqe = mean (y - x)^2; rmsl = sqrt(mean (log10 y - log10 x)^2) with values
  <= 0 giving log 0 (R0 turns -inf into 0); rlsi = mean |log10 y - log10 x| (same log handling; it is the
  log10 metric, not a scale-invariant one); absr = mean |y - x| / x and absq = mean (y - x)^2 / x (divide
  by the *prediction*; a 0/0 pixel makes the image's mean NaN, which ``nan_to_num`` turns into 0; x = 0 <
  y gives inf, which R0 stores as inf in its float32 list); sigma_k = #(max(y/x, x/y) <= 1.25^k or NaN) /
  ``sigma_denominator`` (NaN ratios count as passes; 61,440 although maps are 184x312).

  Not meant to be differentiated.

  Args:
    pred: float (B, H, W) prediction, inverted normalised.
    target: float (B, H, W) target, inverted normalised.
    sigma_denominator: divisor of the sigma counts.

  Returns:
    ``R0_KEYS`` -> float32 (B,).
  """
  x = jnp.clip(jnp.asarray(pred, jnp.float32), 0.0, 1.0)
  y = jnp.asarray(target, jnp.float32)
  axes = (1, 2)
  sq = (y - x) ** 2
  out = {"rms": jnp.sqrt(jnp.mean(sq, axis=axes)), "mqe": jnp.mean(sq, axis=axes)}

  def r0_log10(v):
    return jnp.where(v <= 0, 0.0, jnp.log10(jnp.where(v <= 0, 1.0, v)))

  dlog = r0_log10(y) - r0_log10(x)
  out["rmsl"] = jnp.sqrt(jnp.mean(dlog**2, axis=axes))
  out["rlsi"] = jnp.mean(jnp.abs(dlog), axis=axes)
  for name, num in (("absr", jnp.abs(y - x)), ("absq", sq)):
    m = jnp.mean(num / x, axis=axes)
    out[name] = jnp.where(jnp.isnan(m), 0.0, m)
  ratio = jnp.maximum(y / x, x / y)
  for k in (1, 2, 3):
    passed = jnp.isnan(ratio) | (ratio <= _DELTA_BASE**k)
    out[f"sigma{k}"] = jnp.sum(passed, axis=axes).astype(jnp.float32) / float(sigma_denominator)
  return out


def clean_000_per_image(pred: jax.Array, target: jax.Array) -> tuple[dict, dict]:
  """Paper 000's metrics defined cleanly (docs/model_spec.md §8.2 recommendation (b)), per image.

  Inverted normalised inputs; prediction clipped to [0, 1]; valid = finite target > 0 (0 = far or no
  measurement); denominators = number of valid pixels. rms / mqe / absr / absq / sigma_k over valid
  pixels (absr, absq divide by the target; sigma_k = fraction with max(y/x, x/y) < 1.25^k, x = 0 fails);
  rmsl = sqrt(mean (ln y - ln x)^2) and rlsi = Eigen's scale-invariant error mean e^2 - (mean e)^2 over
  valid pixels with x > 0.

  Args:
    pred: float (B, H, W) prediction, inverted normalised.
    target: float (B, H, W) target, inverted normalised.

  Returns:
    (values, defined): ``R0_KEYS`` -> float32 (B,) values and bool (B,) flags (the metric's denominator is
    non-zero for that image; undefined images are excluded from the average).
  """
  x = jnp.clip(jnp.asarray(pred, jnp.float32), 0.0, 1.0)
  y = jnp.asarray(target, jnp.float32)
  valid = jnp.isfinite(y) & (y > 0)
  lvalid = valid & (x > 0)
  vf, lf = valid.astype(jnp.float32), lvalid.astype(jnp.float32)
  axes = (1, 2)
  n, nl = jnp.sum(vf, axis=axes), jnp.sum(lf, axis=axes)
  ys = jnp.where(valid, y, 1.0)
  xs = jnp.where(valid, x, 0.0)
  d = xs - ys
  sq = jnp.sum(d * d * vf, axis=axes)
  xl = jnp.where(lvalid, x, 1.0)
  e = (jnp.log(xl) - jnp.log(ys)) * lf
  mean_e = _safe_div(jnp.sum(e, axis=axes), nl)
  dev = jnp.where(lvalid, e - mean_e[:, None, None], 0.0)
  xr = jnp.where(lvalid, x, 1.0)
  ratio = jnp.where(lvalid, jnp.maximum(ys / xr, xr / ys), jnp.inf)
  values = {
    "mqe": _safe_div(sq, n),
    "rms": _safe_sqrt(_safe_div(sq, n)),
    "absr": _safe_div(jnp.sum(jnp.abs(d) / ys * vf, axis=axes), n),
    "absq": _safe_div(jnp.sum(d * d / ys * vf, axis=axes), n),
    "rmsl": _safe_sqrt(_safe_div(jnp.sum(e * e, axis=axes), nl)),
    "rlsi": _safe_div(jnp.sum(dev * dev, axis=axes), nl),
  }
  for k in (1, 2, 3):
    values[f"sigma{k}"] = _safe_div(jnp.sum(valid & (ratio < _DELTA_BASE**k), axis=axes) * 1.0, n)
  defined = {k: (nl > 0) if k in ("rmsl", "rlsi") else (n > 0) for k in R0_KEYS}
  return values, defined


R3_NORM_MAX = 15.0
"""R3 normalises depth as clip(0, 15) / 15 (docs/model_spec.md §4.5)."""
R3_EPS = 1e-4
"""R3 clamps the normalised prediction to >= 1e-4 before un-normalising (model_spec §8.4)."""


def r3_semantic_md_batch(pred: jax.Array, gt: jax.Array) -> dict[str, jax.Array]:
  """Paper 003's metrics for ONE batch exactly as R3 ``eval_metrics.depth_metrics`` computes them.

  Inputs in metres. R3 clamps the normalised prediction to >= 1e-4 and multiplies both maps by 15, i.e.
  ``p = max(pred, 1e-4 * 15)``; the target is R3's ``clip(0, 15)`` GT, i.e. ``min(gt, 15)``, with invalid
  pixels NaN (HyperSim's marker; the stored-data zeros are turned into NaN here). Pooled over all pixels
  of the batch: delta_k = mean(max(y/p, p/y) < 1.25^k) over ALL pixels (NaN-GT pixels count as failures);
  abs_rel = nanmean(|d| / y) (divides by GT, as the code; the paper divides by p); sq_rel =
  nanmean(d^2 / y); rmse = sqrt(nanmean d^2); rmse_log = sqrt(nanmean (ln p - ln y)^2); log10 =
  nanmean |log10 p - log10 y|. No range mask (a genuine GT 0 would give inf, as in R3).

  Args:
    pred: float (B, H, W) prediction, metres (B <= 32 in R3's evaluation).
    gt: float (B, H, W) ground truth, metres, 0 / NaN = invalid.

  Returns:
    ``R3_KEYS`` -> float32 scalars.
  """
  p = jnp.maximum(jnp.asarray(pred, jnp.float32), R3_EPS * R3_NORM_MAX)
  y = jnp.asarray(gt, jnp.float32)
  y = jnp.where(y > 0, jnp.minimum(y, R3_NORM_MAX), jnp.nan)
  ratio = jnp.maximum(y / p, p / y)
  out = {f"delta{k}": jnp.mean((ratio < _DELTA_BASE**k).astype(jnp.float32)) for k in (1, 2, 3)}
  d = p - y
  out["abs_rel"] = jnp.nanmean(jnp.abs(d) / y)
  out["sq_rel"] = jnp.nanmean(d * d / y)
  out["rmse"] = jnp.sqrt(jnp.nanmean(d * d))
  out["rmse_log"] = jnp.sqrt(jnp.nanmean((jnp.log(p) - jnp.log(y)) ** 2))
  out["log10"] = jnp.nanmean(jnp.abs(jnp.log10(p) - jnp.log10(y)))
  return out


# ---------------------------------------------------------------------------------------------------------
# Protocols.
# ---------------------------------------------------------------------------------------------------------
PROTOCOL_KINDS = ("standard", "r0", "clean_000", "r3")
AVERAGING = ("per_image", "pooled", "per_batch")
PREDICTION_RESIZE_METHODS = ("bilinear", "bilinear_align_corners")
"""Depth prediction resize rules a protocol may name (``resize_prediction``)."""


def _same(*keys: str) -> tuple[tuple[str, str, float], ...]:
  return tuple((k, k, 1.0) for k in keys)


@dataclasses.dataclass(frozen=True)
class Protocol:
  """A named depth evaluation protocol.

  Attributes:
    name: registry key.
    description: what it computes (mask, crop, clamp, averaging).
    reproduces: which published script / paper table it matches.
    kind: ``"standard"`` (``DepthAccumulator``), ``"r0"`` (``r0_ssegdepnet_per_image``), ``"clean_000"``
      (``clean_000_per_image``) or ``"r3"`` (``r3_semantic_md_batch``).
    min_depth: exclusive lower bound of valid GT, metres (standard kind).
    max_depth: exclusive upper bound of valid GT, metres, or ``None`` (standard kind).
    crop: crop preset name or (top, bottom, left, right) or ``None`` (standard kind).
    averaging: ``"per_image"``, ``"pooled"`` or ``"per_batch"`` (R3: pooled within consecutive batches
      of ``batch_size`` images, then the mean over batches).
    clip: (lower, upper) prediction clamp in metres, or ``None`` = ``(min_depth, max_depth)``.
    outputs: (reported key, computed key, factor) triples; the result holds ``factor * value``.
    units: reported key -> unit string.
    space: ``"metres"`` or ``"inverted_normalised"`` (paper 000's target space, model_spec §1.0).
    batch_size: batch size of ``per_batch`` averaging.
    median_scaling: per-image median scaling of the prediction before the clamp (monodepth2 mono
      evaluation; ``median_scaled_prediction``; standard kind only).
    resize: how a prediction smaller than the ground truth is brought to its size before scoring:
      ``"bilinear"`` (half-pixel centres: cv2 ``resize``, PyTorch ``align_corners=False``; monodepth2,
      BTS) or ``"bilinear_align_corners"`` (PyTorch ``align_corners=True``; AdaBins ``predict_tta``,
      ZoeDepth ``compute_metrics``). See ``resize_prediction`` and ``resize.bilinear``.
  """

  name: str
  description: str
  reproduces: str
  kind: str = "standard"
  min_depth: float = 1e-3
  max_depth: float | None = None
  crop: str | tuple[int, int, int, int] | None = None
  averaging: str = "per_image"
  clip: tuple[float | None, float | None] | None = None
  outputs: tuple[tuple[str, str, float], ...] = _same(*DEPTH_METRIC_KEYS)
  units: Mapping[str, str] | None = None
  space: str = "metres"
  batch_size: int | None = None
  median_scaling: bool = False
  resize: str = "bilinear"

  def __post_init__(self):
    if self.resize not in PREDICTION_RESIZE_METHODS:
      raise ValueError(
        f"Protocol {self.name}: resize must be one of {PREDICTION_RESIZE_METHODS}, got {self.resize!r}"
      )
    if self.median_scaling and self.kind != "standard":
      raise ValueError(
        f"Protocol {self.name}: median_scaling needs the standard kind, not {self.kind}"
      )
    if self.kind not in PROTOCOL_KINDS:
      raise ValueError(
        f"Protocol {self.name}: kind must be one of {PROTOCOL_KINDS}, got {self.kind!r}"
      )
    if self.averaging not in AVERAGING:
      raise ValueError(f"Protocol {self.name}: averaging must be one of {AVERAGING}")
    if self.space not in ("metres", "inverted_normalised"):
      raise ValueError(f"Protocol {self.name}: unknown space {self.space!r}")

  @property
  def per_image(self) -> bool:
    """True when metrics are computed per image and averaged over images."""
    return self.averaging == "per_image"

  @property
  def metric_keys(self) -> tuple[str, ...]:
    """Reported metric keys, in order."""
    return tuple(o[0] for o in self.outputs)

  def select(self, values: Mapping[str, float]) -> dict:
    """Maps computed metrics (e.g. ``DepthAccumulator.finish``) to this protocol's reported keys.

    Args:
      values: computed key -> value (must hold every computed key of ``outputs``).

    Returns:
      reported key -> ``factor * value`` (Python floats), plus ``protocol`` (name) and ``averaging``.
    """
    out: dict = {key: float(values[src]) * factor for key, src, factor in self.outputs}
    out["protocol"] = self.name
    out["averaging"] = self.averaging
    return out

  def accumulator(self) -> DepthAccumulator:
    """The ``DepthAccumulator`` of a standard-kind protocol (for jitted streaming evaluation)."""
    if self.kind != "standard":
      raise ValueError(f"protocol {self.name!r} (kind {self.kind!r}) has no DepthAccumulator")
    return DepthAccumulator(
      min_depth=self.min_depth,
      max_depth=self.max_depth,
      crop=self.crop,
      clip=self.clip,
      median_scaling=self.median_scaling,
    )

  def resize_prediction(self, pred, size: tuple[int, int]) -> np.ndarray:
    """Resizes a (B, H, W) or (H, W) depth prediction to ``size`` with this protocol's ``resize`` rule."""
    return resize_prediction(pred, size, method=self.resize)


_STD_UNITS = {
  "abs_rel": "1",
  "sq_rel": "m",
  "rmse": "m",
  "rmse_log": "ln m",
  "log10": "log10 m",
  "silog": "100 ln m",
  "sie": "(ln m)^2",
  "mae": "m",
  "irmse": "1/km",
}


def _field(name, crop, max_depth, averaging, what, reproduces, **kw) -> Protocol:
  per = (
    "metric per image, mean over images" if averaging == "per_image" else "pooled over all pixels"
  )
  extra = ""
  if kw.get("median_scaling"):
    extra += " Prediction scaled per image by median(y) / median(p) over the valid pixels first."
  if kw.get("resize") == "bilinear_align_corners":
    extra += " Predictions resized to the GT with align-corners bilinear."
  return Protocol(
    name=name,
    description=(
      f"valid 1e-3 < y < {max_depth:g} m, crop {crop!r}, prediction clamped to [1e-3, {max_depth:g}] m "
      f"(NaN -> 1e-3), {per}.{extra} {what}"
    ),
    reproduces=reproduces,
    min_depth=1e-3,
    max_depth=max_depth,
    crop=crop,
    averaging=averaging,
    units=_STD_UNITS,
    **kw,
  )


PROTOCOLS: dict[str, Protocol] = {
  p.name: p
  for p in (
    Protocol(
      name="standard",
      description=(
        "valid y > 1e-3 m, no cap, no crop, prediction clamped to >= 1e-3 m, metric per image, mean over "
        "images (the defaults of depth_metrics)."
      ),
      reproduces="Field-standard definitions (docs/model_spec.md §8.1) on the whole image.",
      units=_STD_UNITS,
    ),
    _field(
      "nyu_eigen",
      "nyu_eigen",
      10.0,
      "per_image",
      "Eigen crop 45:471, 41:601 (Python) scaled to the image size.",
      "BTS eval_with_pngs.py (--eigen_crop) and AdaBins evaluate.py on NYUv2 (654 test "
      "images), the usual NYU table protocol (model_spec §8.5); clean re-evaluation for papers 001/004 on "
      "NYU. Tables of BTS, AdaBins, NeWCRFs use this crop (with predictions resized align-corners in "
      "AdaBins: nyu_eigen_ac).",
    ),
    _field(
      "nyu_eigen_ac",
      "nyu_eigen",
      10.0,
      "per_image",
      "Eigen crop 45:471, 41:601 (Python) scaled to the image size.",
      "AdaBins evaluate.py (predict_tta resizes with align_corners=True) and ZoeDepth "
      "zoedepth/utils/misc.py compute_metrics (interpolate(..., align_corners=True), eigen_crop) on "
      "NYUv2; ZoeDepth's own NYU runs set min_depth_eval in their config (this protocol keeps 1e-3).",
      resize="bilinear_align_corners",
    ),
    _field(
      "nyu_toolbox",
      "nyu_toolbox",
      10.0,
      "per_image",
      "Official toolbox crop rows 44:471, cols 40:601 (MATLAB 45:471, 41:601 inclusive).",
      "NYU Depth V2 toolbox (Silberman) get_projection_mask.m: mask(45:471, 41:601) = the 427x561 "
      "region with a valid depth projection, which MATLAB evaluations crop as depths(45:471, 41:601, :); "
      "metric per image here.",
    ),
    _field(
      "nyu_eigen_pooled",
      "nyu_eigen",
      10.0,
      "pooled",
      "Eigen crop; pixels of all images pooled.",
      "FCRN error_metrics.m aggregation (pooled over the test set; model_spec §8.1) with the Eigen crop.",
    ),
    Protocol(
      name="nyu_densedepth",
      description=(
        "crop rows 20:460, cols 24:616 (DenseDepth's [20, 459, 24, 615] inclusive), valid y > 1e-3 m, no "
        "cap, prediction clamped to [0.1, 10] m, pixels of all images pooled. DenseDepth's script passes "
        "(prediction, GT) to compute_errors(gt, pred), so its abs_rel and log10 see the arguments swapped "
        "(abs_rel divides by the prediction); this protocol keeps the standard definitions (divide by GT)."
      ),
      reproduces=(
        "DenseDepth (Alhashim & Wonka 2018) utils.evaluate on its nyu_test.zip (654 Eigen test images, "
        "dense in-painted GT, eigen_test_crop.npy), pooled compute_errors; TTA flip and the swapped "
        "arguments are not reproduced."
      ),
      min_depth=1e-3,
      crop="nyu_densedepth",
      averaging="pooled",
      clip=(0.1, 10.0),
      units=_STD_UNITS,
    ),
    _field(
      "nyu_md2",
      "nyu_md2",
      10.0,
      "per_image",
      "Legacy name: crop 20:459, 24:615 scaled to the image size (DenseDepth's crop values read with an "
      "exclusive end; see nyu_densedepth).",
      "Not monodepth2 (its evaluate_depth.py has no NYU evaluation): the crop is DenseDepth's "
      "eigen_test_crop.npy [20, 459, 24, 615] as NYU forks of monodepth2 apply it "
      "(crop_mask[20:459, 24:615]); kept so old configs and results resolve (docs/model_spec.md §8.5).",
    ),
    _field(
      "kitti_garg",
      "kitti_garg",
      80.0,
      "per_image",
      "Garg crop of the full image.",
      "monodepth2 evaluate_depth.py --eval_split eigen --eval_stereo / --disable_median_scaling (Eigen "
      "split, 697 images, no median scaling, cv2 half-pixel resize); the protocol recommended for paper "
      "002 (docs/model_spec.md §3.4).",
    ),
    _field(
      "kitti_garg_median",
      "kitti_garg",
      80.0,
      "per_image",
      "Garg crop of the full image.",
      "monodepth2 evaluate_depth.py --eval_split eigen --eval_mono (the default: median scaling), the "
      "protocol of monocular self-supervised KITTI tables (monodepth2's 'M' models).",
      median_scaling=True,
    ),
    Protocol(
      name="kitti_eigen_benchmark",
      description=(
        "valid y > 0 (every projected improved-GT point, no cap), no crop, prediction clamped to "
        "[1e-3, 80] m, metric per image, mean over images."
      ),
      reproduces=(
        "monodepth2 evaluate_depth.py --eval_split eigen_benchmark (652 Eigen test images with the KITTI "
        "improved ground truth; mask = gt_depth > 0, no Garg crop) without median scaling "
        "(--eval_stereo / --disable_median_scaling); monodepth2's results on the improved ground truth."
      ),
      min_depth=0.0,
      clip=(1e-3, 80.0),
      units=_STD_UNITS,
    ),
    Protocol(
      name="kitti_eigen_benchmark_median",
      description=(
        "kitti_eigen_benchmark with per-image median scaling (p *= median(y) / median(p) over the valid "
        "pixels) before the [1e-3, 80] m clamp."
      ),
      reproduces="monodepth2 evaluate_depth.py --eval_split eigen_benchmark --eval_mono.",
      min_depth=0.0,
      clip=(1e-3, 80.0),
      median_scaling=True,
      units=_STD_UNITS,
    ),
    _field(
      "kitti_kb_garg",
      "kitti_kb_garg",
      80.0,
      "per_image",
      "kb_crop (GT and prediction cut to the bottom-centred 352x1216 window), then the Garg crop of that "
      "window.",
      "AdaBins evaluate.py (--do_kb_crop --garg_crop, args_test_kitti_eigen.txt), ZoeDepth "
      "zoedepth/utils/misc.py compute_metrics (garg_crop on the kb-cropped GT) and the depth toolbox "
      "depth/datasets/kitti.py (eval_kb_crop + eval_mask, max_depth 80); ~1% abs_rel from kitti_garg. "
      "Tables of AdaBins, ZoeDepth, DepthFormer/BinsFormer on the Eigen split.",
      resize="bilinear_align_corners",
    ),
    _field(
      "kitti_toolbox_benchmark",
      "kitti_kb_garg",
      88.0,
      "per_image",
      "kb_crop, then the Garg crop of the 352x1216 window; cap 88 m.",
      "Monocular-Depth-Estimation-Toolbox KITTI online-benchmark setting: "
      "configs/_base_/datasets/kitti_benchmark.py (benchmark_train/val splits, garg_crop, max_depth=88) "
      "with depth/datasets/kitti.py eval_kb_crop + eval_mask; its models predict at the crop size, so no "
      "resize rule is implied. Not the KITTI devkit metrics (see kitti_benchmark).",
    ),
    _field(
      "kitti_garg_pooled",
      "kitti_garg",
      80.0,
      "pooled",
      "Garg crop; pixels of all images pooled.",
      "kitti_garg with the multi-task (pooled) aggregation.",
    ),
    _field(
      "kitti_eigen",
      "kitti_eigen",
      80.0,
      "per_image",
      "Eigen crop.",
      "AdaBins evaluate.py KITTI setting with the Eigen crop (docs/model_spec.md §8.5).",
    ),
    _field(
      "kitti_eigen_pooled",
      "kitti_eigen",
      80.0,
      "pooled",
      "Eigen crop; pixels of all images pooled.",
      "kitti_eigen with the multi-task (pooled) aggregation.",
    ),
    Protocol(
      name="kitti_benchmark",
      description=(
        "valid y > 0 (devkit), no crop, no cap, prediction clamped to >= 1e-3 m, metric per image, mean "
        "over images. silog = 100 sqrt(mean e^2 - (mean e)^2); sq_error_rel = 100 mean (d/y)^2 (the "
        "devkit divides by y^2, unlike Eigen's sq_rel); abs_error_rel = 100 mean |d|/y; irmse in 1/km."
      ),
      reproduces=(
        "KITTI depth-prediction devkit (evaluate_depth.cpp) as reported on the benchmark and in paper 004 "
        "Table 5 (SILog, sqErrorRel %, absErrorRel %, iRMSE 1/km; model_spec §8.1). The devkit "
        "interpolates missing (<= 0) predictions; dense predictions only need the clamp."
      ),
      min_depth=0.0,
      clip=(1e-3, None),
      outputs=(
        ("silog", "silog", 1.0),
        ("sq_error_rel", "sq_rel_kitti", 100.0),
        ("abs_error_rel", "abs_rel", 100.0),
        ("irmse", "irmse", 1.0),
      ),
      units={"silog": "100 ln m", "sq_error_rel": "%", "abs_error_rel": "%", "irmse": "1/km"},
    ),
    Protocol(
      name="p1_hybridnet",
      description=(
        "valid y > 1e-3 m, no crop, prediction clamped to >= 1e-3 m, metric per image (paper: UNSPECIFIED), "
        "mean over images. PP = delta; PP-MVN literal (pp_mvn*) and sign-consistent (pp_mvn_signed*); "
        "ARD = abs_rel; SRD = sq_rel; rmse; rmse_log (natural log); SIE = sie = mean e^2 - (mean e)^2."
      ),
      reproduces="Paper 001 (HybridNet) Table 3 definitions (model_spec §8.3); no public code exists.",
      clip=(1e-3, None),
      outputs=_same(
        "delta1",
        "delta2",
        "delta3",
        "pp_mvn1",
        "pp_mvn2",
        "pp_mvn3",
        "pp_mvn_signed1",
        "pp_mvn_signed2",
        "pp_mvn_signed3",
        "abs_rel",
        "sq_rel",
        "rmse",
        "rmse_log",
        "sie",
      ),
      units=_STD_UNITS,
    ),
    Protocol(
      name="r0_ssegdepnet",
      description=(
        "Inputs in inverted normalised depth [0, 1]. All R0 quirks: no mask, prediction clipped to [0, 1], "
        "RMSL/RLSI in log10 with log 0 -> 0, RLSI = mean |log10 diff|, ABSR/ABSQ divide by the prediction "
        "and nan_to_num the image mean (0/0 -> 0), sigma counts NaN ratios as passes, uses <= 1.25^k and "
        "divides by 192*320; metric per image, mean over all images."
      ),
      reproduces="Paper 000 Tables 2-4 as produced by R0's `SSEGDEP-NET:` script (model_spec §8.2 (a)).",
      kind="r0",
      min_depth=0.0,
      outputs=_same(*R0_KEYS),
      space="inverted_normalised",
    ),
    Protocol(
      name="clean_000",
      description=(
        "Inputs in inverted normalised depth [0, 1]; prediction clipped to [0, 1]; valid = target > 0; "
        "RMS/MQE/ABSR/ABSQ/sigma over valid pixels (ABSR/ABSQ divide by the target, sigma uses < 1.25^k); "
        "RMSL (natural log) and RLSI (Eigen SI error, no sqrt) over valid pixels with x > 0; per image, "
        "mean over images where the metric is defined."
      ),
      reproduces="Paper 000's metric names with clean definitions (model_spec §8.2 recommendation (b)).",
      kind="clean_000",
      min_depth=0.0,
      outputs=_same(*R0_KEYS),
      space="inverted_normalised",
    ),
    Protocol(
      name="r3_semantic_md",
      description=(
        "Prediction clamped to >= 1e-4 * 15 m, GT clamped to <= 15 m with invalid (0) -> NaN; pooled over "
        "each batch of 32 consecutive images, mean over batches; delta over ALL pixels (NaN-GT pixels "
        "count as failures), other metrics nanmean (abs_rel divides by GT)."
      ),
      reproduces="Paper 003 (Semantic-MD) numbers from R3 eval_metrics.depth_metrics (model_spec §8.4).",
      kind="r3",
      min_depth=0.0,
      max_depth=R3_NORM_MAX,
      averaging="per_batch",
      outputs=_same(*R3_KEYS),
      batch_size=32,
      units=_STD_UNITS,
    ),
  )
}


def get_protocol(name: str | Protocol) -> Protocol:
  """Returns the protocol called ``name`` (a ``Protocol`` is returned unchanged).

  Raises:
    KeyError: unknown name; the message lists the known names.
  """
  if isinstance(name, Protocol):
    return name
  if name not in PROTOCOLS:
    raise KeyError(f"unknown depth protocol {name!r}; known: {', '.join(sorted(PROTOCOLS))}")
  return PROTOCOLS[name]


def dataset_protocol(meta: DatasetMeta) -> Protocol:
  """The default depth protocol of a dataset (its meta info's ``min_depth``, ``max_depth``, ``eval_crop``).

  Returns the registered standard, per-image protocol with exactly these settings if there is one (e.g.
  ``nyu_eigen`` for ``nyu_depth_v2_labeled``), else a ``dataset:<name>`` protocol with them (prediction
  clamped to ``[min_depth, max_depth]``, metric per image, mean over images).
  """
  for p in PROTOCOLS.values():
    if (
      p.kind == "standard"
      and p.per_image
      and p.clip is None
      and not p.median_scaling
      and p.resize == "bilinear"
      and p.crop == meta.eval_crop
      and p.max_depth == meta.max_depth
      and p.min_depth == meta.min_depth
      and p.metric_keys == DEPTH_METRIC_KEYS
    ):
      return p
  cap = "no cap" if meta.max_depth is None else f"y < {meta.max_depth:g} m"
  return dataclasses.replace(
    get_protocol("standard"),
    name=f"dataset:{meta.name}",
    description=(
      f"{meta.name} meta info: valid y > {meta.min_depth:g} m, {cap}, crop {meta.eval_crop!r}, "
      "prediction clamped to that range, metric per image, mean over images."
    ),
    reproduces="Dataset defaults from semdepth_jax.data.meta.",
    min_depth=meta.min_depth,
    max_depth=meta.max_depth,
    crop=meta.eval_crop,
  )


@functools.lru_cache(maxsize=8)
def _r0_jit():
  return jax.jit(r0_ssegdepnet_per_image)


@functools.lru_cache(maxsize=8)
def _clean000_jit():
  return jax.jit(clean_000_per_image)


@functools.lru_cache(maxsize=8)
def _r3_jit():
  return jax.jit(r3_semantic_md_batch)


class ProtocolEvaluator:
  """Host-side streaming evaluation under a ``Protocol`` (add batches, then ``result``).

  Standard-kind protocols run the jitted ``DepthAccumulator``; paper 000's kinds sum per-image values on
  the host in float64; ``r3`` buffers images into R3's batches of ``batch_size``.

  Args:
    protocol: a ``Protocol`` or its name.
    norm_m: for ``inverted_normalised`` protocols only: if given, inputs are metres and are converted with
      ``depth_bins.to_inverted_normalised(x, norm_m)``; if ``None``, inputs are already inverted normalised.
  """

  def __init__(self, protocol: str | Protocol, *, norm_m: float | None = None):
    self.protocol = get_protocol(protocol)
    self.norm_m = norm_m
    if norm_m is not None and self.protocol.space != "inverted_normalised":
      raise ValueError(
        f"norm_m only applies to inverted_normalised protocols, not {self.protocol.name}"
      )
    self._num_examples = 0
    if self.protocol.kind == "standard":
      self._acc = self.protocol.accumulator()
      self._state = self._acc.init()
    else:
      self._sums = dict.fromkeys(R0_KEYS + R3_KEYS, 0.0)
      self._nums = dict.fromkeys(R0_KEYS + R3_KEYS, 0)
      self._buffer: list[tuple[np.ndarray, np.ndarray]] = []
      self._num_batches = 0

  def add(self, pred, gt, example_mask=None) -> None:
    """Adds a batch: float (B, H, W[, 1]) prediction and ground truth, optional bool (B,) example mask."""
    kind = self.protocol.kind
    if kind == "standard":  # stays on device (arrays may be sharded); counts come from the state.
      pred, gt = _as_bhw(pred, "pred"), _as_bhw(gt, "gt")
      _check_same_shape(pred, gt)
      mask = _example_mask(example_mask, gt.shape[0])
      self._state = _update_jit(self._acc)(self._state, pred, gt, mask)
      return
    p = np.asarray(_as_bhw(pred, "pred"), np.float32)
    g = np.asarray(_as_bhw(gt, "gt"), np.float32)
    _check_same_shape(p, g)
    mask = np.ones((g.shape[0],), bool) if example_mask is None else np.asarray(example_mask, bool)
    if mask.shape != (g.shape[0],):
      raise ValueError(f"example_mask must have shape ({g.shape[0]},), got {mask.shape}")
    self._num_examples += int(mask.sum())
    p, g = p[mask], g[mask]
    if p.shape[0] == 0:
      return
    if self.norm_m is not None:
      p = np.asarray(depth_bins.to_inverted_normalised(p, self.norm_m))
      g = np.asarray(depth_bins.to_inverted_normalised(g, self.norm_m))
    if kind == "r0":
      vals = jax.device_get(_r0_jit()(p, g))
      for k in R0_KEYS:
        self._sums[k] += float(np.sum(np.asarray(vals[k], np.float64)))
        self._nums[k] += p.shape[0]
    elif kind == "clean_000":
      vals, defined = jax.device_get(_clean000_jit()(p, g))
      for k in R0_KEYS:
        ok = np.asarray(defined[k])
        self._sums[k] += float(np.sum(np.asarray(vals[k], np.float64)[ok]))
        self._nums[k] += int(ok.sum())
    else:
      self._buffer.extend(zip(p, g, strict=True))
      bs = self.protocol.batch_size
      while len(self._buffer) >= bs:
        self._flush(self._buffer[:bs])
        self._buffer = self._buffer[bs:]

  def _flush(self, items) -> None:
    p = np.stack([a for a, _ in items])
    g = np.stack([b for _, b in items])
    vals = jax.device_get(_r3_jit()(p, g))
    for k in R3_KEYS:
      self._sums[k] += float(vals[k])
      self._nums[k] += 1
    self._num_batches += 1

  def result(self) -> dict:
    """Metrics under the protocol plus labels.

    Returns:
      dict with the protocol's reported keys (floats; NaN when undefined) and ``protocol`` (name),
      ``averaging``, ``num_examples`` (examples added), ``num_images`` (images that entered the
      averages); ``num_batches`` for ``per_batch`` averaging.
    """
    proto = self.protocol
    if proto.kind == "standard":
      values = self._acc.finish(self._state, per_image=proto.per_image)
      counts = self._acc.counts(self._state)
      num_images = counts["num_images"]
      self._num_examples = counts["num_examples"]
    else:
      if proto.kind == "r3" and self._buffer:
        self._flush(self._buffer)
        self._buffer = []
      values = {
        k: (self._sums[k] / self._nums[k] if self._nums[k] else float("nan")) for k in self._sums
      }
      first = proto.outputs[0][1]
      num_images = self._num_examples if proto.kind == "r3" else self._nums[first]
    out = proto.select(values)
    out["num_examples"] = self._num_examples
    out["num_images"] = int(num_images)
    if proto.averaging == "per_batch":
      out["num_batches"] = self._num_batches
      out["batch_size"] = proto.batch_size
    return out


def evaluate_depth_protocol(
  pred, gt, protocol: str | Protocol, *, example_mask=None, norm_m: float | None = None
) -> dict:
  """Evaluates predictions under a named protocol (``PROTOCOLS``).

  Args:
    pred: float (B, H, W) or (B, H, W, 1) prediction (metres, or inverted normalised for paper 000's
      protocols unless ``norm_m`` is given), same size as ``gt``.
    gt: float (B, H, W) or (B, H, W, 1) ground truth in the same units (0 / NaN = invalid).
    protocol: protocol name or ``Protocol``.
    example_mask: optional bool (B,), False for padding examples.
    norm_m: see ``ProtocolEvaluator``.

  Returns:
    See ``ProtocolEvaluator.result``.

  Raises:
    KeyError: unknown protocol name (lists the known ones).
    ValueError: shape mismatch.
  """
  ev = ProtocolEvaluator(protocol, norm_m=norm_m)
  ev.add(pred, gt, example_mask)
  return ev.result()


# ---------------------------------------------------------------------------------------------------------
# Multi-task Delta_m.
# ---------------------------------------------------------------------------------------------------------
HIGHER_IS_BETTER = frozenset(
  {
    "delta1",
    "delta2",
    "delta3",
    "pp_mvn1",
    "pp_mvn2",
    "pp_mvn3",
    "pp_mvn_signed1",
    "pp_mvn_signed2",
    "pp_mvn_signed3",
    "sigma1",
    "sigma2",
    "sigma3",
    "miou",
    "pixel_acc",
    "mean_class_acc",
    "fw_iou",
  }
)
LOWER_IS_BETTER = frozenset(
  {
    "abs_rel",
    "sq_rel",
    "rmse",
    "rmse_log",
    "log10",
    "silog",
    "sie",
    "mae",
    "irmse",
    "mse",
    "sq_rel_kitti",
    "sq_error_rel",
    "abs_error_rel",
    "rms",
    "mqe",
    "rmsl",
    "rlsi",
    "absr",
    "absq",
  }
)


def metric_sign(key: str) -> int:
  """+1 if higher is better for ``key``, -1 if lower is better.

  Raises:
    KeyError: a key in neither table (lists both).
  """
  if key in HIGHER_IS_BETTER:
    return 1
  if key in LOWER_IS_BETTER:
    return -1
  raise KeyError(
    f"no direction known for metric {key!r}; higher-better: {sorted(HIGHER_IS_BETTER)}, "
    f"lower-better: {sorted(LOWER_IS_BETTER)}"
  )


def delta_m(
  metrics: Mapping[str, float],
  baselines: Mapping[str, float],
  keys: Sequence[str] | None = None,
) -> float:
  """Multi-task performance change ``Delta_m`` in percent, relative to single-task baselines.

  ``Delta_m = (1/T) sum_i (-1)^{l_i} (M_i - B_i) / B_i * 100`` with ``l_i = 1`` when lower is better
  (``metric_sign``); positive = better than the baselines.

  Args:
    metrics: the multi-task model's metrics.
    baselines: the single-task models' metrics (same keys).
    keys: metrics to include (default: every key of ``baselines``).

  Returns:
    Delta_m in percent.

  Raises:
    KeyError: a key missing from ``metrics`` / ``baselines`` or without a known direction.
    ValueError: no keys, or a zero baseline.
  """
  keys = list(baselines if keys is None else keys)
  if not keys:
    raise ValueError("delta_m: no metric keys given")
  total = 0.0
  for k in keys:
    if k not in metrics:
      raise KeyError(f"delta_m: metric {k!r} missing from metrics (has {sorted(metrics)})")
    if k not in baselines:
      raise KeyError(f"delta_m: metric {k!r} missing from baselines (has {sorted(baselines)})")
    b = float(baselines[k])
    if b == 0:
      raise ValueError(f"delta_m: baseline of {k!r} is 0; the relative change is undefined")
    total += metric_sign(k) * (float(metrics[k]) - b) / b
  return 100.0 * total / len(keys)


# ---------------------------------------------------------------------------------------------------------
# Resizing predictions to the ground-truth size.
# ---------------------------------------------------------------------------------------------------------
def resize_prediction(pred, size: tuple[int, int], *, method: str) -> np.ndarray:
  """Resizes a prediction to the ground-truth size before scoring.

  Args:
    pred: (H, W) or (B, H, W) array (depth in metres, or integer labels).
    size: target (height, width).
    method: ``"bilinear"`` (depth; half-pixel centres, no antialiasing, like cv2 / PyTorch
      ``align_corners=False``), ``"bilinear_align_corners"`` (depth; PyTorch ``align_corners=True``, as
      AdaBins and ZoeDepth resize their predictions; ``Protocol.resize``) or ``"nearest"`` (labels;
      source index ``floor((i + 0.5) * in / out)``).

  Returns:
    numpy array of shape (..., height, width): float32 for bilinear, the input dtype for nearest.

  Raises:
    ValueError: unknown method.
  """
  arr = np.asarray(pred)
  H, W = int(size[0]), int(size[1])
  h, w = arr.shape[-2], arr.shape[-1]
  if (h, w) == (H, W):
    return arr
  from semdepth_jax import resize

  lead = arr.shape[:-2]
  flat = arr.reshape((-1, h, w))
  if method == "nearest":
    return np.asarray(resize.nearest(flat, (H, W))).reshape(lead + (H, W))
  if method in ("bilinear", "bilinear_align_corners"):
    out = resize.bilinear(flat, (H, W), align_corners=method == "bilinear_align_corners")
    return np.asarray(out).reshape(lead + (H, W))
  raise ValueError(
    "resize_prediction: method must be 'bilinear', 'bilinear_align_corners' or 'nearest', got "
    f"{method!r}"
  )
