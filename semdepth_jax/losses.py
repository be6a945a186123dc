"""Training losses of the five papers and a config-driven multi-task loss composer.

Every loss here is a pure, jittable ``jax.numpy`` function that returns a float32 scalar. Layouts are NHWC:
depth predictions ``(B, H, W)`` or ``(B, H, W, 1)``, logits ``(B, H, W, C)``, depth targets ``(B, H, W)`` in
metres (or in the target space named by the caller), labels ``(B, H, W)`` int with ``ignore_index`` (255).

Masking conventions shared by all functions:

* ``mask`` (bool, ``(B, H, W)``, optional) selects the pixels that take part; ``None`` means all pixels.
  Depth losses additionally drop non-finite targets, always. Segmentation losses additionally drop pixels whose
  label is ``ignore_index`` or outside ``[0, C)`` (except where a loss's own semantics say otherwise, e.g.
  Dice/Focal-Tversky, whose ignored pixels still enter the prediction sum, as in paper 003's code).
* A loss whose mask selects nothing is exactly 0 with a zero gradient. Masked-out values never reach a ``log``,
  ``sqrt`` or a division: they are replaced *before* the operation (the "double where" pattern), so NaN/inf in
  the ground truth or zero depths cannot leak into values or gradients.

The composer (:func:`build_loss`) turns a config mapping into ``loss_fn(outputs, batch) -> (total, aux)``;
see its docstring for the schema, :data:`LOSS_REGISTRY` for the term names and :data:`PRESETS` for the
papers' recipes. Sources (model_spec = ``docs/model_spec.md``): §1.1/§7.1 (paper 000),
§2.5/§7.3 (paper 001), §3.2/§7.2 (paper 002), §4.3/§4.4/§4.6/§7.4 (paper 003), §7.5 (paper 004), §11.
"""

from __future__ import annotations

import copy
import dataclasses
import inspect
from collections.abc import Callable, Mapping
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from semdepth_jax import depth_bins
from semdepth_jax.data.meta import IGNORE_INDEX

Array = jax.Array

# --------------------------------------------------------------------------------------------------------
# Small helpers (safe arithmetic, shapes, resizing).
# --------------------------------------------------------------------------------------------------------


def _f32(x: Any) -> Array:
  return jnp.asarray(x, jnp.float32)


def _safe_div(num: Array, den: Array) -> Array:
  """``num / den`` where ``den > 0`` and 0 elsewhere, with a finite gradient everywhere."""
  ok = den > 0
  return jnp.where(ok, num / jnp.where(ok, den, 1.0), 0.0)


def _masked_sum(x: Array, mask: Array, axis=None) -> Array:
  return jnp.sum(jnp.where(mask, x, 0.0), axis=axis)


def _masked_mean(x: Array, mask: Array) -> Array:
  return _safe_div(_masked_sum(x, mask), jnp.sum(mask).astype(jnp.float32))


def _depth_map(x: Any, name: str) -> Array:
  """Returns a float32 ``(B, H, W)`` map from ``(B, H, W)`` or ``(B, H, W, 1)``."""
  x = _f32(x)
  if x.ndim == 4 and x.shape[-1] == 1:
    x = x[..., 0]
  if x.ndim != 3:
    raise ValueError(
      f"losses.py: {name} must have shape (B, H, W) or (B, H, W, 1), got {tuple(x.shape)}"
    )
  return x


def _label_map(x: Any, name: str) -> Array:
  """Returns an int32 ``(B, H, W)`` label map from ``(B, H, W)`` or ``(B, H, W, 1)``."""
  x = jnp.asarray(x)
  if x.ndim == 4 and x.shape[-1] == 1:
    x = x[..., 0]
  if x.ndim != 3:
    raise ValueError(
      f"losses.py: {name} must have shape (B, H, W) or (B, H, W, 1), got {tuple(x.shape)}"
    )
  return x.astype(jnp.int32)


def _pixel_mask(mask: Any, shape: tuple[int, ...], name: str = "mask") -> Array:
  """Returns a bool mask of ``shape``; ``None`` -> all True. Accepts ``(B,)`` per-example masks too."""
  if mask is None:
    return jnp.ones(shape, bool)
  mask = jnp.asarray(mask, bool)
  if mask.ndim == 1 and mask.shape[0] == shape[0]:
    mask = mask.reshape((shape[0],) + (1,) * (len(shape) - 1))
  try:
    return jnp.broadcast_to(mask, shape)
  except ValueError:
    raise ValueError(
      f"losses.py: {name} of shape {tuple(mask.shape)} does not broadcast to {tuple(shape)}"
    ) from None


def _check_same(a: Array, b: Array, na: str, nb: str) -> None:
  if a.shape != b.shape:
    raise ValueError(
      f"losses.py: {na} {tuple(a.shape)} and {nb} {tuple(b.shape)} must have the same shape "
      "(the composer resizes targets to the prediction size; direct callers must do it themselves)"
    )


def _depth_pair(pred: Any, target: Any, mask: Any) -> tuple[Array, Array, Array]:
  """Validates a depth prediction/target pair; returns (pred, sanitised target, valid mask)."""
  pred = _depth_map(pred, "pred")
  target = _depth_map(target, "target")
  _check_same(pred, target, "pred", "target")
  valid = _pixel_mask(mask, target.shape) & jnp.isfinite(target)
  return pred, jnp.where(valid, target, 0.0), valid


def resize_nearest(x: Any, out_hw: tuple[int, int]) -> Array:
  """Nearest-neighbour resize of the spatial axes 1 and 2 (``semdepth_jax.resize.nearest``'s rule).

  Ground truth is brought to the prediction's size this way: no value is ever interpolated, so labels stay
  labels and invalid (zero) depth never mixes with valid depth.

  Args:
    x: array ``(B, H, W)`` or ``(B, H, W, C)``, any dtype.
    out_hw: target ``(h, w)``.

  Returns:
    ``(B, h, w[, C])`` array of ``x``'s dtype.

  Raises:
    ValueError: a non-positive ``out_hw``.
  """
  from semdepth_jax import resize

  return resize.nearest(x, out_hw)


# --------------------------------------------------------------------------------------------------------
# Depth losses.
# --------------------------------------------------------------------------------------------------------


def l1_loss(pred: Any, target: Any, mask: Any = None) -> Array:
  """Mean absolute error over valid pixels.

  Source: paper 003 code (``nn.L1Loss(reduction='none')`` then ``torch.nanmean``; model_spec §7.4) — NaN
  targets are excluded from numerator and denominator, which is exactly a mean over valid pixels. Also the
  regression term of paper 004 (Eq. 3, docs/model_spec.md §7.5).

  Args:
    pred: ``(B, H, W)`` or ``(B, H, W, 1)`` float, same units as ``target``.
    target: same shape; non-finite values are ignored.
    mask: optional bool ``(B, H, W)`` (or ``(B,)``) of pixels to use.

  Returns:
    float32 scalar ``mean |pred - target|`` over valid pixels (0 if none).
  """
  pred, target, valid = _depth_pair(pred, target, mask)
  return _masked_mean(jnp.abs(pred - target), valid)


def l2_mean_loss(pred: Any, target: Any, mask: Any = None) -> Array:
  """Paper 000 Eq. 3 read as a mean: ``1/(2n) sum_i (y_i - yhat_i)^2`` over the n valid pixels of the batch.

  Source: paper 000 Eq. 3 (model_spec §1.2, §7.1, §11 item 4). If ``n`` in Eq. 3 is read as the number of
  *examples* with ``||.||^2`` summed over each image, the loss is Caffe's EuclideanLoss instead — use
  :func:`euclidean_loss` for that reading. The reference code's scaling is :func:`l2_sum_loss`.

  Args:
    pred: ``(B, H, W)`` or ``(B, H, W, 1)`` float.
    target: same shape; non-finite values are ignored.
    mask: optional bool ``(B, H, W)`` (or ``(B,)``).

  Returns:
    float32 scalar, 0 if no pixel is valid.
  """
  pred, target, valid = _depth_pair(pred, target, mask)
  return 0.5 * _masked_mean(jnp.square(pred - target), valid)


def l2_sum_loss(pred: Any, target: Any, mask: Any = None, *, scale: float = 0.0005) -> Array:
  """Paper 000 reference-code depth loss ``scale * sum_{batch, pixels} (yhat - y)^2`` (no mean).

  Source: R0 depth scripts (``0.001 * 0.5 * sum``; model_spec §1.2, §7.1). The reference code masks nothing;
  pass ``mask=None`` (or, in the composer, ``mask_invalid=False``) to reproduce that. Non-finite targets are
  always dropped so the loss stays finite.

  Args:
    pred: ``(B, H, W)`` or ``(B, H, W, 1)`` float (000: inverted normalised depth in [0, 1]).
    target: same shape.
    mask: optional bool ``(B, H, W)`` (or ``(B,)``).
    scale: multiplier, 0.0005 = 0.001 * 1/2 in the code.

  Returns:
    float32 scalar.
  """
  pred, target, valid = _depth_pair(pred, target, mask)
  return scale * _masked_sum(jnp.square(pred - target), valid)


def _num_examples(example_mask: Any, batch: int) -> Array:
  if example_mask is None:
    return jnp.float32(batch)
  em = jnp.asarray(example_mask, bool)
  if em.shape != (batch,):
    raise ValueError(f"losses.py: example_mask must have shape ({batch},), got {tuple(em.shape)}")
  return jnp.sum(em).astype(jnp.float32)


def euclidean_loss(pred: Any, target: Any, mask: Any = None, *, example_mask: Any = None) -> Array:
  """Caffe ``EuclideanLoss``: ``1/(2B) sum_{batch, pixels} (yhat - y)^2`` (paper 001's ``L_Dabs``).

  Source: model_spec §7.3 (Caffe semantics: sum over pixels divided by twice the batch size). The mask is the
  spec's recommendation (Caffe itself masks nothing).

  Args:
    pred: ``(B, H, W)`` or ``(B, H, W, 1)`` float.
    target: same shape; non-finite values are ignored.
    mask: optional bool ``(B, H, W)`` (or ``(B,)``) of pixels that take part.
    example_mask: optional bool ``(B,)``; ``B`` in the formula is its number of True entries (examples that
      carry depth). ``None``: ``B`` = batch size.

  Returns:
    float32 scalar (0 if no example counts).
  """
  pred, target, valid = _depth_pair(pred, target, mask)
  n = _num_examples(example_mask, pred.shape[0])
  return _safe_div(_masked_sum(jnp.square(pred - target), valid), 2.0 * n)


def mvn(x: Any, mask: Any = None, *, eps: float = 1e-9) -> Array:
  """Caffe MVN per image and channel: ``(x - mean) / (std + eps)`` with statistics over masked pixels.

  Source: Caffe ``MVNParameter`` (normalize_variance=true, across_channels=false, eps=1e-9) and
  ``mvn_layer.cpp`` (population variance, ``eps`` added to the standard deviation); model_spec §7.3. Statistics
  over *valid* pixels only is model_spec's recommendation (Caffe uses all pixels; pass ``mask=None``). The
  variance is computed as ``mean((x - mean)^2)`` (equal to Caffe's ``E[x^2] - E[x]^2``, but never negative).

  Args:
    x: ``(B, H, W)`` or ``(B, H, W, C)`` float.
    mask: optional bool ``(B, H, W)`` (or ``(B,)``); masked-out outputs are 0.
    eps: added to the standard deviation (Caffe 1e-9).

  Returns:
    float32 array shaped like ``x``. An image whose mask is empty maps to zeros; a constant image maps to 0
    (its deviation is exactly zero).
  """
  x = _f32(x)
  squeeze = x.ndim == 3
  if squeeze:
    x = x[..., None]
  if x.ndim != 4:
    raise ValueError(f"losses.py: mvn expects (B, H, W) or (B, H, W, C), got {tuple(x.shape)}")
  m = _pixel_mask(mask, x.shape[:3])[..., None]
  m = jnp.broadcast_to(m, x.shape)
  xs = jnp.where(m, x, 0.0)
  n = jnp.sum(m, axis=(1, 2), keepdims=True).astype(jnp.float32)
  mean = _safe_div(jnp.sum(xs, axis=(1, 2), keepdims=True), n)
  dev = jnp.where(m, xs - mean, 0.0)
  var = _safe_div(jnp.sum(jnp.square(dev), axis=(1, 2), keepdims=True), n)
  pos = var > 0
  std = jnp.where(pos, jnp.sqrt(jnp.where(pos, var, 1.0)), 0.0)
  out = dev / (std + eps)
  return out[..., 0] if squeeze else out


def mvn_euclidean_loss(
  pred: Any, target: Any, mask: Any = None, *, example_mask: Any = None, eps: float = 1e-9
) -> Array:
  """Paper 001's ``L_Dmvn`` = ``EuclideanLoss(MVN(yhat), MVN(y))`` (Caffe semantics, model_spec §7.3).

  MVN statistics per image over the valid pixels (see :func:`mvn`); the Euclidean loss sums over valid pixels
  and divides by ``2B`` (see :func:`euclidean_loss`).

  Args:
    pred: ``(B, H, W)`` or ``(B, H, W, 1)`` float.
    target: same shape; non-finite values are ignored.
    mask: optional bool ``(B, H, W)`` (or ``(B,)``).
    example_mask: optional bool ``(B,)``; ``B`` = its True count (``None``: batch size).
    eps: MVN epsilon (Caffe 1e-9).

  Returns:
    float32 scalar.
  """
  pred, target, valid = _depth_pair(pred, target, mask)
  return euclidean_loss(
    mvn(pred, valid, eps=eps), mvn(target, valid, eps=eps), valid, example_mask=example_mask
  )


def depth_gradient_maps(depth: Any, valid: Any = None) -> tuple[Array, Array]:
  """Magnitudes of the depth gradient along x and y by forward differences, with their validity.

  ``g[..., 0] = |d[i, j + 1] - d[i, j]|``, ``g[..., 1] = |d[i + 1, j] - d[i, j]|``; a difference is valid when
  both of its pixels are (the last column / row has no x / y difference). The target of DepthNet's gradient
  network (paper 001 §3: "the magnitude of depth gradient on x and y direction computed from the depth
  map"; docs/model_spec.md §2.2), in the units of ``depth`` per pixel.

  Args:
    depth: ``(B, H, W)`` or ``(B, H, W, 1)`` float.
    valid: optional bool ``(B, H, W)`` (``None``: every finite pixel).

  Returns:
    ``(grads, grads_valid)``: float32 ``(B, H, W, 2)`` (0 where invalid) and bool ``(B, H, W, 2)``.
  """
  d = _depth_map(depth, "depth")
  v = _pixel_mask(valid, d.shape, "valid") & jnp.isfinite(d)
  d = jnp.where(v, d, 0.0)
  gx = jnp.abs(d[:, :, 1:] - d[:, :, :-1])
  gy = jnp.abs(d[:, 1:, :] - d[:, :-1, :])
  vx = v[:, :, 1:] & v[:, :, :-1]
  vy = v[:, 1:, :] & v[:, :-1, :]
  gx = jnp.pad(jnp.where(vx, gx, 0.0), ((0, 0), (0, 0), (0, 1)))
  gy = jnp.pad(jnp.where(vy, gy, 0.0), ((0, 0), (0, 1), (0, 0)))
  vx = jnp.pad(vx, ((0, 0), (0, 0), (0, 1)))
  vy = jnp.pad(vy, ((0, 0), (0, 1), (0, 0)))
  return jnp.stack([gx, gy], axis=-1), jnp.stack([vx, vy], axis=-1)


GRADIENT_REDUCTIONS = ("euclidean", "l1")


def gradient_loss(
  pred: Any,
  target: Any,
  mask: Any = None,
  *,
  reduction: str = "euclidean",
  example_mask: Any = None,
) -> Array:
  """DepthNet's gradient-network loss: predicted (B, H, W, 2) maps vs :func:`depth_gradient_maps` of ``target``.

  Source: paper 001 §3 / model_spec §2.2 (the gradient net is trained on the gradient magnitudes of the
  ground truth; the loss is not stated, Caffe's EuclideanLoss is the default like the paper's other depth
  terms).

  Args:
    pred: float ``(B, H, W, 2)`` (``|dD/dx|``, ``|dD/dy|``).
    target: ``(B, H, W)`` depth in the same units (already resized to the prediction's grid).
    mask: optional bool ``(B, H, W)`` of valid depth pixels.
    reduction: ``'euclidean'`` (``1/(2B) sum (p - g)^2`` over valid differences, :func:`euclidean_loss`'s
      scaling) or ``'l1'`` (mean ``|p - g|`` over valid differences).
    example_mask: optional bool ``(B,)``; ``B`` of the Euclidean reduction = its True count.

  Returns:
    float32 scalar (0 when nothing is valid).

  Raises:
    ValueError: ``pred`` not (B, H, W, 2) matching ``target``, or an unknown ``reduction``.
  """
  if reduction not in GRADIENT_REDUCTIONS:
    raise ValueError(
      f"losses.py: gradient_loss reduction must be one of {GRADIENT_REDUCTIONS}, got {reduction!r}"
    )
  pred = _f32(pred)
  target = _depth_map(target, "target")
  if pred.ndim != 4 or pred.shape[-1] != 2 or pred.shape[:3] != target.shape:
    raise ValueError(
      f"losses.py: gradient_loss pred must be (B, H, W, 2) matching target {tuple(target.shape)}, got "
      f"{tuple(pred.shape)}"
    )
  g, gv = depth_gradient_maps(target, mask)
  err = pred - g
  if reduction == "l1":
    return _masked_mean(jnp.abs(err), gv)
  n = _num_examples(example_mask, pred.shape[0])
  return _safe_div(_masked_sum(jnp.square(err), gv), 2.0 * n)


def berhu_loss(
  pred: Any,
  target: Any,
  mask: Any = None,
  *,
  threshold: str = "code",
  c_fraction: float = 0.2,
  stop_gradient_threshold: bool = False,
) -> Array:
  """Reverse Huber (BerHu) loss, mean over valid pixels.

  ``B(e) = |e|`` if ``|e| <= c`` else ``(e^2 + c^2) / (2c)``, ``e = pred - target``.

  Threshold ``c`` (computed over the valid pixels of the whole batch):

  * ``'code'`` (default): ``c = 0.2 * max |e|`` — paper 003 code ``BerHuLoss`` (R3
    ``utils/loss_functions.py``), following Laina et al.; docs/model_spec.md §7.4.
  * ``'paper'``: ``c = max_i{pred_i, target_i} / 5`` — paper 003 Eq. 2 (max of the *values*); model_spec §11
    item 8. If that maximum is ``<= 0`` the loss falls back to ``|e|``.

  Gradient through ``c``: the R3 code computes ``c`` from the loss tensors without ``detach()``, so PyTorch
  back-propagates through ``max``; the default here does the same. ``stop_gradient_threshold=True`` treats
  ``c`` as a constant instead.

  Args:
    pred: ``(B, H, W)`` or ``(B, H, W, 1)`` float.
    target: same shape; non-finite values are ignored.
    mask: optional bool ``(B, H, W)`` (or ``(B,)``).
    threshold: ``'code'`` or ``'paper'``.
    c_fraction: the factor (0.2 = 1/5 in both forms).
    stop_gradient_threshold: stop the gradient through ``c``.

  Returns:
    float32 scalar (0 if no valid pixel, or if every residual is 0).

  Raises:
    ValueError: unknown ``threshold``.
  """
  pred, target, valid = _depth_pair(pred, target, mask)
  e = jnp.where(valid, pred - target, 0.0)
  ae = jnp.abs(e)
  if threshold == "code":
    c = c_fraction * jnp.max(jnp.where(valid, ae, 0.0))
  elif threshold == "paper":
    c = c_fraction * jnp.maximum(jnp.max(jnp.where(valid, jnp.maximum(pred, target), 0.0)), 0.0)
  else:
    raise ValueError(
      f"losses.py: berhu_loss threshold must be 'code' or 'paper', got {threshold!r}"
    )
  if stop_gradient_threshold:
    c = jax.lax.stop_gradient(c)
  pos = c > 0
  c_safe = jnp.where(pos, c, 1.0)
  quad = (jnp.square(e) + jnp.square(c_safe)) / (2.0 * c_safe)
  per_px = jnp.where((ae <= c) | ~pos, ae, quad)
  return _masked_mean(per_px, valid)


def scale_invariant_loss(
  pred: Any,
  target: Any,
  mask: Any = None,
  *,
  lam: float = 0.5,
  pred_is_log: bool = False,
  pred_floor: float = 1e-3,
) -> Array:
  """Eigen et al. (2014) scale-invariant log loss, per image then averaged over images.

  ``D = mean(e^2) - lam * mean(e)^2`` with ``e = log(pred) - log(target)`` over the valid pixels of each image
  (Eigen, Puhrsch & Fergus 2014, Eq. 4: training loss with ``lam = 0.5``; ``lam = 1`` is the scale-invariant
  error metric, model_spec §8.1/§8.3). Images without valid pixels are left out of the average.

  Args:
    pred: ``(B, H, W)`` or ``(B, H, W, 1)``: depth in metres, or natural-log depth if ``pred_is_log``.
    target: same shape, depth in metres; pixels with ``target <= 0`` or non-finite are ignored.
    mask: optional bool ``(B, H, W)`` (or ``(B,)``).
    lam: weight of the squared mean (0.5 training, 1.0 = the SIE metric).
    pred_is_log: whether ``pred`` already holds log-depth.
    pred_floor: metres; metre predictions are clamped to ``>= pred_floor`` before the log (their gradient is
      zero below it) so the loss is defined for any network output.

  Returns:
    float32 scalar.
  """
  pred, target, valid = _depth_pair(pred, target, mask)
  valid = valid & (target > 0)
  log_t = jnp.log(jnp.where(valid, target, 1.0))
  log_p = pred if pred_is_log else jnp.log(jnp.maximum(pred, pred_floor))
  e = jnp.where(valid, log_p - log_t, 0.0)
  n = jnp.sum(valid, axis=(1, 2)).astype(jnp.float32)
  m2 = _safe_div(jnp.sum(jnp.square(e), axis=(1, 2)), n)
  m1 = _safe_div(jnp.sum(e, axis=(1, 2)), n)
  per_image = m2 - lam * jnp.square(m1)
  has = n > 0
  return _safe_div(jnp.sum(jnp.where(has, per_image, 0.0)), jnp.sum(has).astype(jnp.float32))


# --------------------------------------------------------------------------------------------------------
# Segmentation losses.
# --------------------------------------------------------------------------------------------------------


def _labels_and_valid(
  labels: Any, num_classes: int, ignore_index: int | None, mask: Any
) -> tuple[Array, Array]:
  labels = _label_map(labels, "labels")
  valid = (labels >= 0) & (labels < num_classes)
  if ignore_index is not None:
    valid = valid & (labels != ignore_index)
  valid = valid & _pixel_mask(mask, labels.shape)
  return jnp.where(valid, labels, 0), valid


def _check_logits(logits: Any, labels_shape: tuple[int, ...], name: str = "logits") -> Array:
  logits = _f32(logits)
  if logits.ndim != 4:
    raise ValueError(f"losses.py: {name} must have shape (B, H, W, C), got {tuple(logits.shape)}")
  if tuple(logits.shape[:3]) != tuple(labels_shape):
    raise ValueError(
      f"losses.py: {name} spatial shape {tuple(logits.shape[:3])} does not match the targets "
      f"{tuple(labels_shape)} (the composer resizes targets; direct callers must do it themselves)"
    )
  return logits


def softmax_cross_entropy(
  logits: Any,
  labels: Any,
  mask: Any = None,
  *,
  ignore_index: int | None = IGNORE_INDEX,
  normalization: str = "valid",
) -> Array:
  """Per-pixel softmax cross-entropy with an ignore label.

  Normalisation:

  * ``'valid'`` (default): sum over valid pixels / number of valid pixels — PyTorch
    ``CrossEntropyLoss(ignore_index)`` mean and Caffe ``SoftmaxWithLoss`` ``VALID`` (papers 001 ``L_S``,
    002, docs/model_spec.md §7.2/§7.3).
  * ``'all'``: sum over valid pixels / number of *all* masked pixels (ignored labels count in the
    denominator) — paper 003 code (``reduction='none'`` then ``nanmean``; docs/model_spec.md §7.4).

  Args:
    logits: ``(B, H, W, C)`` float.
    labels: ``(B, H, W)`` (or ``(B, H, W, 1)``) int; ``ignore_index`` and values outside ``[0, C)`` are
      ignored.
    mask: optional bool ``(B, H, W)`` (or ``(B,)``) of pixels that exist at all (e.g. examples with labels).
    ignore_index: label to ignore, or ``None``.
    normalization: ``'valid'`` or ``'all'``.

  Returns:
    float32 scalar (0 if the denominator is 0).

  Raises:
    ValueError: bad shapes or unknown ``normalization``.
  """
  labels_i = _label_map(labels, "labels")
  logits = _check_logits(logits, labels_i.shape)
  safe, valid = _labels_and_valid(labels_i, logits.shape[-1], ignore_index, mask)
  logp = jax.nn.log_softmax(logits, axis=-1)
  nll = -jnp.take_along_axis(logp, safe[..., None], axis=-1)[..., 0]
  total = _masked_sum(nll, valid)
  if normalization == "valid":
    den = jnp.sum(valid)
  elif normalization == "all":
    den = jnp.sum(_pixel_mask(mask, labels_i.shape))
  else:
    raise ValueError(f"losses.py: normalization must be 'valid' or 'all', got {normalization!r}")
  return _safe_div(total, den.astype(jnp.float32))


def one_hot_planes(
  labels: Any,
  num_classes: int,
  *,
  ignore_index: int | None = IGNORE_INDEX,
  ignore_mode: str = "zeros",
) -> Array:
  """One-hot planes ``(B, H, W, C)`` float32 from labels ``(B, H, W)``.

  Args:
    labels: int labels; values outside ``[0, C)`` (``ignore_index`` included) are "unlabelled".
    num_classes: ``C``.
    ignore_index: the ignore label (only documents intent; every out-of-range value is unlabelled).
    ignore_mode: ``'zeros'`` — unlabelled pixels get an all-zero row (paper 003 Dice/FTL code,
      model_spec §7.4); ``'plane0'`` — unlabelled pixels go to plane 0 (paper 000's "Miscellaneous",
      docs/model_spec.md §1.1/§9.1).

  Returns:
    float32 ``(B, H, W, C)``.

  Raises:
    ValueError: unknown ``ignore_mode``.
  """
  del ignore_index  # Every value outside [0, C) is unlabelled, including the ignore label.
  labels = _label_map(labels, "labels")
  inside = (labels >= 0) & (labels < num_classes)
  if ignore_mode == "zeros":
    return jax.nn.one_hot(jnp.where(inside, labels, -1), num_classes, dtype=jnp.float32)
  if ignore_mode == "plane0":
    return jax.nn.one_hot(jnp.where(inside, labels, 0), num_classes, dtype=jnp.float32)
  raise ValueError(f"losses.py: ignore_mode must be 'zeros' or 'plane0', got {ignore_mode!r}")


def binary_cross_entropy(
  pred: Any,
  targets: Any,
  mask: Any = None,
  *,
  from_logits: bool = True,
  keras_clip: bool = False,
  epsilon: float = 1e-7,
) -> Array:
  """Element-wise binary cross-entropy averaged over all (masked) elements.

  ``-[y log p + (1 - y) log(1 - p)]``, mean over every element of the selected pixels (all planes).

  * ``from_logits=True, keras_clip=False`` (default): numerically stable form on logits
    ``max(x, 0) - x y + log(1 + exp(-|x|))`` (no clipping).
  * ``from_logits=False``: ``pred`` are probabilities, clipped to ``[epsilon, 1 - epsilon]`` as Keras
    ``binary_crossentropy`` does (``epsilon`` = Keras ``K.epsilon()`` = 1e-7; the clip bound is evaluated in
    float32) — paper 000 U-Net, docs/model_spec.md §1.1/§7.1.
  * ``from_logits=True, keras_clip=True``: sigmoid, then the exact Keras clipped formula (what R0 computes on
    its sigmoid output).

  Args:
    pred: ``(B, H, W, C)`` logits or probabilities.
    targets: ``(B, H, W, C)`` float in [0, 1].
    mask: optional bool ``(B, H, W)`` (or ``(B,)``) of pixels.
    from_logits: whether ``pred`` holds logits.
    keras_clip: with logits, apply sigmoid + Keras clipping instead of the stable form.
    epsilon: Keras clip epsilon.

  Returns:
    float32 scalar.
  """
  pred = _f32(pred)
  targets = _f32(targets)
  _check_same(pred, targets, "pred", "targets")
  if pred.ndim != 4:
    raise ValueError(f"losses.py: pred must have shape (B, H, W, C), got {tuple(pred.shape)}")
  m = jnp.broadcast_to(_pixel_mask(mask, pred.shape[:3])[..., None], pred.shape)
  targets = jnp.where(m, targets, 0.0)
  if from_logits and not keras_clip:
    per = jnp.maximum(pred, 0.0) - pred * targets + jnp.log1p(jnp.exp(-jnp.abs(pred)))
  else:
    p = jax.nn.sigmoid(pred) if from_logits else jnp.where(m, pred, 0.5)
    p = jnp.clip(p, jnp.float32(epsilon), jnp.float32(1.0 - epsilon))
    per = -(targets * jnp.log(p) + (1.0 - targets) * jnp.log(1.0 - p))
  return _masked_mean(per, m)


def bce_onehot_loss(
  pred: Any,
  labels: Any,
  mask: Any = None,
  *,
  ignore_index: int | None = IGNORE_INDEX,
  ignore_mode: str = "mask",
  from_logits: bool = True,
  keras_clip: bool = False,
  epsilon: float = 1e-7,
) -> Array:
  """Paper 000 U-Net loss: binary cross-entropy over one-hot class planes (model_spec §1.1, §7.1, Eq. 1).

  Targets are one-hot planes of ``labels`` (exactly one plane is 1 per labelled pixel). Unlabelled pixels
  (``ignore_index`` or outside ``[0, C)``):

  * ``ignore_mode='mask'`` (default): left out of the mean;
  * ``ignore_mode='plane0'``: target = plane 0 ("Miscellaneous"), as R0's ``procesar_etiquetas`` does.

  The mean runs over all ``C`` planes of every used pixel (Keras mean over all elements). See
  :func:`binary_cross_entropy` for ``from_logits`` / ``keras_clip`` / ``epsilon``.

  Args:
    pred: ``(B, H, W, C)`` logits (or probabilities with ``from_logits=False``).
    labels: ``(B, H, W)`` int.
    mask: optional bool ``(B, H, W)`` (or ``(B,)``) of pixels that exist (e.g. examples with labels).
    ignore_index: ignore label.
    ignore_mode: ``'mask'`` or ``'plane0'``.
    from_logits: see :func:`binary_cross_entropy`.
    keras_clip: see :func:`binary_cross_entropy`.
    epsilon: see :func:`binary_cross_entropy`.

  Returns:
    float32 scalar.

  Raises:
    ValueError: unknown ``ignore_mode`` or bad shapes.
  """
  labels_i = _label_map(labels, "labels")
  pred = _check_logits(pred, labels_i.shape, "pred")
  C = pred.shape[-1]
  if ignore_mode == "mask":
    _, valid = _labels_and_valid(labels_i, C, ignore_index, mask)
    targets = one_hot_planes(labels_i, C, ignore_mode="zeros")
  elif ignore_mode == "plane0":
    valid = _pixel_mask(mask, labels_i.shape)
    targets = one_hot_planes(labels_i, C, ignore_mode="plane0")
  else:
    raise ValueError(f"losses.py: ignore_mode must be 'mask' or 'plane0', got {ignore_mode!r}")
  return binary_cross_entropy(
    pred, targets, valid, from_logits=from_logits, keras_clip=keras_clip, epsilon=epsilon
  )


def _sigmoid_stats(logits: Any, labels: Any, mask: Any) -> tuple[Array, Array, Array, Array]:
  """Global soft counts of paper 003's Dice/FTL: returns (sum p*t, sum p, sum t, pixel count)."""
  labels_i = _label_map(labels, "labels")
  logits = _check_logits(logits, labels_i.shape)
  m = _pixel_mask(mask, labels_i.shape)
  p = jax.nn.sigmoid(logits)
  t = one_hot_planes(labels_i, logits.shape[-1], ignore_mode="zeros")
  m4 = jnp.broadcast_to(m[..., None], p.shape)
  inter = _masked_sum(p * t, m4)
  psum = _masked_sum(p, m4)
  tsum = _masked_sum(t, m4)
  return inter, psum, tsum, jnp.sum(m)


def dice_loss(
  logits: Any,
  labels: Any,
  mask: Any = None,
  *,
  ignore_index: int | None = IGNORE_INDEX,
  eps: float = 1e-4,
) -> Array:
  """Paper 003 code ``DiceLoss``: one global soft Dice over batch x classes x pixels.

  ``1 - 2 (I + eps) / (P + T + eps)`` with ``I = sum p t``, ``P = sum p``, ``T = sum t``, ``p = sigmoid``
  (not softmax) of the logits, ``t`` one-hot with unlabelled pixels as all-zero rows; unlabelled pixels'
  predictions still enter ``P`` (R3 ``utils/loss_functions.py``; model_spec §7.4; paper Eq. 8 is the same
  in hard form). ``eps = 1e-4``.

  Args:
    logits: ``(B, H, W, C)``.
    labels: ``(B, H, W)`` int; unlabelled = ``ignore_index`` or outside ``[0, C)``.
    mask: optional bool ``(B, H, W)`` (or ``(B,)``); pixels outside it are removed entirely (from P too) —
      used for examples without labels.
    ignore_index: the ignore label (every out-of-range label is unlabelled).
    eps: smoothing constant.

  Returns:
    float32 scalar; 0 if the mask selects no pixel.
  """
  del ignore_index
  inter, psum, tsum, count = _sigmoid_stats(logits, labels, mask)
  loss = 1.0 - 2.0 * (inter + eps) / (psum + tsum + eps)
  return jnp.where(count > 0, loss, 0.0)


def focal_tversky_loss(
  logits: Any,
  labels: Any,
  mask: Any = None,
  *,
  ignore_index: int | None = IGNORE_INDEX,
  alpha: float = 0.8,
  gamma: float = 1.5,
  eps: float = 1e-4,
) -> Array:
  """Paper 003 code ``FocalTverskyLoss`` (global soft counts over batch x classes x pixels).

  ``(1 - (TP + eps) / (TP + alpha FN + (1 - alpha) FP + eps)) ** gamma``, ``TP = sum p t``,
  ``FN = sum (1 - p) t``, ``FP = sum p (1 - t)``, ``p = sigmoid(logits)``, ``t`` one-hot with unlabelled
  pixels as zero rows. Code: ``alpha = 0.8`` (beta = 0.2), ``gamma = 1.5``, ``eps = 1e-4`` (R3
  ``weight_alpha``/``weight_gamma``); paper: ``alpha = 0.7`` (beta = 0.3), ``gamma = 1.5`` — model_spec
  §4.6, §7.4, §11 item 9.

  Args:
    logits: ``(B, H, W, C)``.
    labels: ``(B, H, W)`` int.
    mask: optional bool ``(B, H, W)`` (or ``(B,)``) of pixels that exist.
    ignore_index: the ignore label (every out-of-range label is unlabelled).
    alpha: weight of FN (0.8 code, 0.7 paper).
    gamma: focal exponent.
    eps: smoothing constant.

  Returns:
    float32 scalar; 0 if the mask selects no pixel.
  """
  del ignore_index
  tp, psum, tsum, count = _sigmoid_stats(logits, labels, mask)
  fn = tsum - tp
  fp = psum - tp
  tversky = (tp + eps) / (tp + alpha * fn + (1.0 - alpha) * fp + eps)
  x = 1.0 - tversky
  pos = x > 0
  loss = jnp.where(pos, jnp.power(jnp.where(pos, x, 1.0), gamma), 0.0)
  return jnp.where(count > 0, loss, 0.0)


def dice_ce_loss(
  logits: Any,
  labels: Any,
  mask: Any = None,
  *,
  ignore_index: int | None = IGNORE_INDEX,
  weight_lambda: float = 0.5,
  ce_normalization: str = "all",
  eps: float = 1e-4,
) -> Array:
  """Paper 003 ``Dice_CE``: ``weight_lambda * CE + (1 - weight_lambda) * Dice``, ``weight_lambda = 0.5``.

  Source: R3 ``trainer/triple_loss_trainer.py`` (``weight_lambda`` 0.5; model_spec §4.6/§7.4). The CE uses
  003's ``nanmean`` normalisation (``'all'``) by default; see :func:`softmax_cross_entropy`, :func:`dice_loss`.

  Returns:
    float32 scalar.
  """
  ce = softmax_cross_entropy(
    logits, labels, mask, ignore_index=ignore_index, normalization=ce_normalization
  )
  return weight_lambda * ce + (1.0 - weight_lambda) * dice_loss(logits, labels, mask, eps=eps)


def ftl_ce_loss(
  logits: Any,
  labels: Any,
  mask: Any = None,
  *,
  ignore_index: int | None = IGNORE_INDEX,
  weight_lambda: float = 0.5,
  ce_normalization: str = "all",
  alpha: float = 0.8,
  gamma: float = 1.5,
  eps: float = 1e-4,
) -> Array:
  """Paper 003 ``FTL_CE``: ``weight_lambda * CE + (1 - weight_lambda) * FocalTversky`` (model_spec §7.4).

  See :func:`dice_ce_loss` and :func:`focal_tversky_loss` for the constants.

  Returns:
    float32 scalar.
  """
  ce = softmax_cross_entropy(
    logits, labels, mask, ignore_index=ignore_index, normalization=ce_normalization
  )
  ftl = focal_tversky_loss(logits, labels, mask, alpha=alpha, gamma=gamma, eps=eps)
  return weight_lambda * ce + (1.0 - weight_lambda) * ftl


def hybrid_loss(
  seg_logits: Any,
  labels: Any,
  depth_pred: Any,
  depth_target: Any,
  *,
  seg_mask: Any = None,
  depth_mask: Any = None,
  example_mask: Any = None,
  alpha: float = 1000.0,
  ignore_index: int | None = IGNORE_INDEX,
  mvn_eps: float = 1e-9,
) -> tuple[Array, dict[str, Array]]:
  """Paper 001 hybrid loss ``L_H = alpha * L_S + L_Dabs + L_Dmvn`` with ``alpha = 1000`` (model_spec §7.3).

  ``L_S`` = softmax CE with ignore, VALID normalisation (mean over labelled pixels; the paper's literal "sum"
  would change the balance by ~41^2); ``L_Dabs`` = :func:`euclidean_loss`; ``L_Dmvn`` =
  :func:`mvn_euclidean_loss`. Invalid depth is masked (model_spec's recommendation; Caffe masks nothing).

  Args:
    seg_logits: ``(B, h, w, C)``.
    labels: ``(B, h, w)`` int, 255 ignore.
    depth_pred: ``(B, H, W)`` or ``(B, H, W, 1)`` metres.
    depth_target: ``(B, H, W)`` metres; non-finite ignored.
    seg_mask: optional bool mask for the segmentation pixels.
    depth_mask: optional bool mask of valid depth pixels.
    example_mask: optional bool ``(B,)`` of examples with depth (``B`` of the Euclidean loss).
    alpha: weight of ``L_S``.
    ignore_index: ignore label.
    mvn_eps: MVN epsilon.

  Returns:
    ``(L_H, {'seg': L_S, 'depth_abs': L_Dabs, 'depth_mvn': L_Dmvn})``.
  """
  ls = softmax_cross_entropy(seg_logits, labels, seg_mask, ignore_index=ignore_index)
  labs = euclidean_loss(depth_pred, depth_target, depth_mask, example_mask=example_mask)
  lmvn = mvn_euclidean_loss(
    depth_pred, depth_target, depth_mask, example_mask=example_mask, eps=mvn_eps
  )
  return alpha * ls + labs + lmvn, {"seg": ls, "depth_abs": labs, "depth_mvn": lmvn}


# --------------------------------------------------------------------------------------------------------
# Depth-bin (classification) losses: papers 002 and 004.
# --------------------------------------------------------------------------------------------------------


def sid_cross_entropy(
  depth_logits: Any, bin_ids: Any, mask: Any = None, *, ignore_index: int | None = IGNORE_INDEX
) -> Array:
  """Paper 002: softmax CE over the K SID bins, mean over valid pixels (model_spec §3.2, §7.2).

  Bin ids are computed by the caller (``semdepth_jax.depth_bins``; the composer does it): invalid depth
  (``y <= 0``) and ``y > 80 m`` must already be ``ignore_index``. Also paper 004's "hard-cls" ablation.

  Args:
    depth_logits: ``(B, H, W, K)``.
    bin_ids: ``(B, H, W)`` int in ``[0, K)`` or ``ignore_index``.
    mask: optional bool ``(B, H, W)`` (or ``(B,)``).
    ignore_index: ignore id.

  Returns:
    float32 scalar.
  """
  return softmax_cross_entropy(
    depth_logits, bin_ids, mask, ignore_index=ignore_index, normalization="valid"
  )


def expected_bin_index(depth_logits: Any) -> Array:
  """Paper 004 Eq. 2 soft decoding ``d = sum_j j * softmax(logits)_j`` (expected bin index).

  Args:
    depth_logits: ``(B, H, W, K + 1)`` logits over bin indices ``0 .. K``.

  Returns:
    float32 ``(B, H, W)`` in ``[0, K]`` (bin-index units).
  """
  return depth_bins.expected_index(jax.nn.softmax(_f32(depth_logits), axis=-1))


def smooth_l1(x: Any) -> Array:
  """Smooth-L1 of paper 004 Eq. 2: ``0.5 x^2`` if ``|x| < 1`` else ``|x| - 0.5`` (element-wise)."""
  x = _f32(x)
  ax = jnp.abs(x)
  return jnp.where(ax < 1.0, 0.5 * jnp.square(x), ax - 0.5)


def soft_classification_loss(
  depth_logits: Any,
  bin_index: Any,
  mask: Any = None,
  *,
  ignore_index: int | None = IGNORE_INDEX,
  reduction: str = "mean",
) -> Array:
  """Paper 004 soft-classification loss: smooth-L1 between the expected bin index and the GT bin index.

  ``d_i = sum_j j p_i^j`` over the ``K + 1`` bins (:func:`expected_bin_index`), loss ``smoothL1(d_i - b*_i)``
  in bin-index units (Eq. 2; model_spec §7.5). ``b*`` = ``round((log10 y - log10 alpha) / q)`` is computed
  by the caller (``semdepth_jax.depth_bins``, log10 quantisation of Eq. 1).

  Args:
    depth_logits: ``(B, H, W, K + 1)``.
    bin_index: ``(B, H, W)``, int (``ignore_index`` and values outside ``[0, K]`` ignored) or float (non-finite
      ignored).
    mask: optional bool ``(B, H, W)`` (or ``(B,)``).
    ignore_index: ignore id for integer targets.
    reduction: ``'mean'`` over valid pixels (model_spec's recommendation) or ``'sum'`` (paper Eq. 3's sum).

  Returns:
    float32 scalar.

  Raises:
    ValueError: unknown ``reduction`` or bad shapes.
  """
  b = jnp.asarray(bin_index)
  if b.ndim == 4 and b.shape[-1] == 1:
    b = b[..., 0]
  logits = _check_logits(depth_logits, b.shape, "depth_logits")
  num = logits.shape[-1]
  valid = _pixel_mask(mask, b.shape)
  if jnp.issubdtype(b.dtype, jnp.integer):
    valid = valid & (b >= 0) & (b < num)
    if ignore_index is not None:
      valid = valid & (b != ignore_index)
  bf = _f32(b)
  valid = valid & jnp.isfinite(bf)
  bf = jnp.where(valid, bf, 0.0)
  per = smooth_l1(expected_bin_index(logits) - bf)
  if reduction == "mean":
    return _masked_mean(per, valid)
  if reduction == "sum":
    return _masked_sum(per, valid)
  raise ValueError(f"losses.py: reduction must be 'mean' or 'sum', got {reduction!r}")


def soft_cls_regression_loss(
  depth_logits: Any,
  depth_pred: Any,
  bin_index: Any,
  depth_target: Any,
  mask: Any = None,
  *,
  w1: float = 1.0,
  w2: float = 1.0,
  reduction: str = "mean",
  ignore_index: int | None = IGNORE_INDEX,
) -> Array:
  """Paper 004 total loss (Eq. 3): ``w1 * smoothL1(cls) + w2 * L1(reg)``, ``w1 = w2 = 1``.

  The classification term is :func:`soft_classification_loss` (bin-index units); the regression term is L1
  between the regression branch and the GT depth in metres. ``reduction='mean'`` (default, model_spec §7.5
  recommendation) averages each term over its valid pixels; ``'sum'`` is the paper's ``sum_i``.

  Args:
    depth_logits: ``(B, H, W, K + 1)``.
    depth_pred: ``(B, H, W)`` or ``(B, H, W, 1)`` metres (regression branch).
    bin_index: ``(B, H, W)`` GT bin indices (see :func:`soft_classification_loss`).
    depth_target: ``(B, H, W)`` metres; non-finite ignored.
    mask: optional bool ``(B, H, W)`` of valid depth pixels (KITTI: ``y > 0``).
    w1: classification weight.
    w2: regression weight.
    reduction: ``'mean'`` or ``'sum'``.
    ignore_index: ignore id of ``bin_index``.

  Returns:
    float32 scalar.
  """
  cls = soft_classification_loss(
    depth_logits, bin_index, mask, ignore_index=ignore_index, reduction=reduction
  )
  pred, target, valid = _depth_pair(depth_pred, depth_target, mask)
  err = jnp.abs(pred - target)
  reg = _masked_mean(err, valid) if reduction == "mean" else _masked_sum(err, valid)
  return w1 * cls + w2 * reg


# --------------------------------------------------------------------------------------------------------
# Auxiliary edge heads of paper 003: contour (3-head model) and Sobel edges of GT depth.
# --------------------------------------------------------------------------------------------------------


def contour_target(labels: Any) -> Array:
  """Semantic contour mask of paper 003: ``3x3 dilate(seg) - 3x3 erode(seg) > 0`` on the raw label ids.

  Source: R3 ``utils/conversions.semantic_to_border`` (``cv2.dilate``/``cv2.erode`` with a 3x3 ones kernel;
  model_spec §4.3/§4.4). OpenCV morphology ignores out-of-image neighbours, so a pixel is a contour pixel iff
  its in-image 3x3 neighbourhood holds more than one id (the ignore id counts as an id, as ``-1`` does in R3).

  Args:
    labels: ``(B, H, W)`` (or ``(B, H, W, 1)``) int.

  Returns:
    int32 ``(B, H, W)`` with values in {0, 1}.
  """
  lab = _label_map(labels, "labels")
  H, W = lab.shape[1], lab.shape[2]
  # Edge padding equals "ignore out-of-image neighbours" for max/min over a 3x3 window.
  p = jnp.pad(lab, ((0, 0), (1, 1), (1, 1)), mode="edge")
  shifts = [p[:, i : i + H, j : j + W] for i in range(3) for j in range(3)]
  stack = jnp.stack(shifts, axis=0)
  return (jnp.max(stack, axis=0) - jnp.min(stack, axis=0) > 0).astype(jnp.int32)


_SOBEL_SMOOTH_5 = np.array([1.0, 4.0, 6.0, 4.0, 1.0], np.float32)
_SOBEL_DERIV_5 = np.array([-1.0, -2.0, 0.0, 2.0, 1.0], np.float32)
SOBEL_KERNEL_X5 = np.outer(_SOBEL_SMOOTH_5, _SOBEL_DERIV_5)
"""5x5 Sobel kernel for d/dx (rows = y, columns = x), as ``cv2.Sobel(dx=1, dy=0, ksize=5)`` correlates."""
SOBEL_KERNEL_Y5 = np.outer(_SOBEL_DERIV_5, _SOBEL_SMOOTH_5)
"""5x5 Sobel kernel for d/dy (transpose of :data:`SOBEL_KERNEL_X5`)."""


def _correlate_reflect101(x: Array, kernel: np.ndarray) -> Array:
  """2-D correlation of ``(B, H, W)`` with a square kernel, OpenCV ``BORDER_REFLECT_101`` border."""
  r = kernel.shape[0] // 2
  xp = jnp.pad(x, ((0, 0), (r, r), (r, r)), mode="reflect")  # numpy 'reflect' == REFLECT_101.
  out = jax.lax.conv_general_dilated(
    xp[..., None],
    jnp.asarray(kernel, x.dtype)[:, :, None, None],
    window_strides=(1, 1),
    padding="VALID",
    dimension_numbers=("NHWC", "HWIO", "NHWC"),
    precision=jax.lax.Precision.HIGHEST,
  )
  return out[..., 0]


def sobel_edge_target(
  depth: Any,
  valid: Any = None,
  *,
  depth_norm: float = 15.0,
  value_scale: float = 1.0,
  threshold: float = 20.0,
  combine: str = "or",
  suppress_invalid: bool = True,
) -> Array:
  """Binarised Sobel edges of the GT depth: the target of paper 003's "2-head with Sobel" ablation.

  Source: model_spec §4.4 (R3 ``sobel_loss``: ``cv2.Sobel`` ksize 5 on the normalised depth, ``|.|``
  saturated to uint8 (``convertScaleAbs``), x OR y, ``> 20``). Steps:

  1. ``n = clip(depth, 0, depth_norm) / depth_norm * value_scale`` (003's depth normalisation, 15 m);
  2. ``gx, gy`` = correlation with :data:`SOBEL_KERNEL_X5` / :data:`SOBEL_KERNEL_Y5`, border
     ``BORDER_REFLECT_101`` (cv2's default);
  3. ``ax = min(round(|gx|), 255)``, same for ``ay`` (round half to even, like ``cvRound``);
  4. ``combine='or'``: edge = ``(ax > threshold) | (ay > threshold)``; ``combine='bitwise_or'``: edge =
     ``(ax | ay) > threshold`` (``cv2.bitwise_or`` of the two uint8 maps; the spec's "x OR y" admits both).

  With ``suppress_invalid`` a pixel whose 5x5 window touches invalid depth is never an edge: HyperSim marks
  missing depth NaN and a NaN inside the window turns the cv2 response into NaN, which saturates to 0
  (stored data uses 0 = invalid instead, which would otherwise create edges around every hole).

  Args:
    depth: ``(B, H, W)`` metres.
    valid: optional bool ``(B, H, W)`` of measured pixels; default ``isfinite(depth) & depth > 0``.
    depth_norm: normalisation range in metres.
    value_scale: extra factor on the normalised depth before the Sobel filter (1 = as specified).
    threshold: edge threshold on the uint8 magnitudes.
    combine: ``'or'`` or ``'bitwise_or'``.
    suppress_invalid: see above.

  Returns:
    int32 ``(B, H, W)`` in {0, 1}.

  Raises:
    ValueError: unknown ``combine``.
  """
  d = _depth_map(depth, "depth")
  ok = jnp.isfinite(d) & (d > 0)
  if valid is not None:
    ok = ok & _pixel_mask(valid, d.shape, "valid")
  n = jnp.where(ok, jnp.clip(d, 0.0, depth_norm) / depth_norm, 0.0) * value_scale
  ax = jnp.minimum(jnp.round(jnp.abs(_correlate_reflect101(n, SOBEL_KERNEL_X5))), 255.0)
  ay = jnp.minimum(jnp.round(jnp.abs(_correlate_reflect101(n, SOBEL_KERNEL_Y5))), 255.0)
  if combine == "or":
    edge = (ax > threshold) | (ay > threshold)
  elif combine == "bitwise_or":
    edge = (
      jnp.bitwise_or(ax.astype(jnp.uint8), ay.astype(jnp.uint8)).astype(jnp.float32) > threshold
    )
  else:
    raise ValueError(f"losses.py: combine must be 'or' or 'bitwise_or', got {combine!r}")
  if suppress_invalid:
    bad = (~ok).astype(jnp.float32)
    near_bad = _correlate_reflect101(bad, np.ones((5, 5), np.float32)) > 0
    edge = edge & ~near_bad
  return jax.lax.stop_gradient(edge.astype(jnp.int32))


def contour_cross_entropy(logits: Any, labels: Any, mask: Any = None) -> Array:
  """Paper 003 3-head contour loss: 2-class softmax CE vs :func:`contour_target`, no ignore, mean.

  Source: R3 ``triple_loss_trainer`` (``nn.CrossEntropyLoss(reduction='none')`` + nanmean; model_spec §7.4).

  Args:
    logits: ``(B, H, W, 2)``.
    labels: ``(B, H, W)`` int segmentation labels (raw ids; the ignore id counts as an id).
    mask: optional bool ``(B, H, W)`` (or ``(B,)``) of pixels that take part.

  Returns:
    float32 scalar.
  """
  return softmax_cross_entropy(logits, contour_target(labels), mask, ignore_index=None)


def sobel_edge_cross_entropy(
  logits: Any,
  depth: Any,
  mask: Any = None,
  *,
  depth_valid: Any = None,
  depth_norm: float = 15.0,
  value_scale: float = 1.0,
  threshold: float = 20.0,
  combine: str = "or",
  suppress_invalid: bool = True,
) -> Array:
  """Paper 003 "2-head with Sobel" loss: 2-class softmax CE vs :func:`sobel_edge_target`, no ignore, mean.

  Source: model_spec §4.4/§7.4 (R3 ``sobel_trainer``; weight 1). The paper's Eq. 10 (correlation of predicted
  depth edges with semantic contours) is *not* what the code trains; this follows the code.

  Args:
    logits: ``(B, H, W, 2)``.
    depth: ``(B, H, W)`` GT depth in metres.
    mask: optional bool ``(B, H, W)`` (or ``(B,)``) of pixels that take part.
    depth_valid: optional bool ``(B, H, W)`` of measured depth (see :func:`sobel_edge_target`).
    depth_norm: see :func:`sobel_edge_target`.
    value_scale: see :func:`sobel_edge_target`.
    threshold: see :func:`sobel_edge_target`.
    combine: see :func:`sobel_edge_target`.
    suppress_invalid: see :func:`sobel_edge_target`.

  Returns:
    float32 scalar.
  """
  target = sobel_edge_target(
    depth,
    depth_valid,
    depth_norm=depth_norm,
    value_scale=value_scale,
    threshold=threshold,
    combine=combine,
    suppress_invalid=suppress_invalid,
  )
  return softmax_cross_entropy(logits, target, mask, ignore_index=None)


# --------------------------------------------------------------------------------------------------------
# Depth target transforms.
# --------------------------------------------------------------------------------------------------------

DEPTH_TARGETS = ("metres", "normalised", "inverted_normalised", "log")
"""Target spaces the composer can map GT metres to (see :func:`depth_target_transform`)."""


def depth_target_transform(
  depth: Any, valid: Any, kind: str = "metres", *, depth_norm: float | None = None
) -> tuple[Array, Array]:
  """Maps GT depth in metres to the space a model predicts in.

  * ``'metres'``: unchanged.
  * ``'normalised'``: ``clip(y, 0, depth_norm) / depth_norm`` (paper 003: 15 m; model_spec §4.5).
  * ``'inverted_normalised'``: ``1 - min(y / depth_norm, 1)`` (paper 000's target, near = 1, far = 0;
    model_spec §1.0/§9.1) via :func:`semdepth_jax.depth_bins.to_inverted_normalised` (depth ``<= 0`` maps to
    0, "far", which only matters with ``mask_invalid=False``).
  * ``'log'``: natural log (pixels with ``y <= 0`` become invalid).

  Args:
    depth: ``(B, H, W)`` metres.
    valid: bool ``(B, H, W)``; invalid pixels are set to 0 in the output.
    kind: one of :data:`DEPTH_TARGETS`.
    depth_norm: metres; required for the two normalised kinds.

  Returns:
    ``(target, valid)``: float32 target and the (possibly narrowed) validity mask.

  Raises:
    ValueError: unknown ``kind`` or missing ``depth_norm``.
  """
  y = _f32(depth)
  valid = jnp.asarray(valid, bool) & jnp.isfinite(y)
  y = jnp.where(valid, y, 0.0)
  if kind == "metres":
    t = y
  elif kind in ("normalised", "inverted_normalised"):
    if depth_norm is None or not depth_norm > 0:
      raise ValueError(
        f"losses.py: depth target {kind!r} needs depth_norm > 0 (metres), got {depth_norm!r}"
      )
    if kind == "normalised":
      t = jnp.clip(y, 0.0, depth_norm) / depth_norm
    else:
      t = depth_bins.to_inverted_normalised(y, depth_norm)
  elif kind == "log":
    valid = valid & (y > 0)
    t = jnp.log(jnp.where(valid, y, 1.0))
  else:
    raise ValueError(f"losses.py: depth target must be one of {DEPTH_TARGETS}, got {kind!r}")
  return jnp.where(valid, t, 0.0), valid


# --------------------------------------------------------------------------------------------------------
# Registry and composer.
# --------------------------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class LossTerm:
  """A registry entry: a loss function and how the composer feeds it.

  Attributes:
    fn: the loss function.
    kind: ``'depth'`` (prediction vs transformed GT depth + validity mask), ``'seg'`` (logits vs labels,
      example mask), ``'bins'`` (depth-bin logits vs bin ids of the GT depth, made by ``depth_bins``),
      ``'contour'`` (2-class logits vs contours of the labels) or ``'sobel'`` (2-class logits vs Sobel edges
      of the GT depth).
    default_output: key of ``outputs`` read by default (``'a/b'`` = ``outputs['a']['b']``).
    source: paper / code / model_spec section, for documentation.
  """

  fn: Callable[..., Array]
  kind: str
  default_output: str
  source: str


LOSS_REGISTRY: dict[str, LossTerm] = {
  "l1": LossTerm(l1_loss, "depth", "depth", "003 code nanmean L1 (§7.4); 004 Eq. 3 regression"),
  "l2_mean": LossTerm(l2_mean_loss, "depth", "depth", "000 Eq. 3, 1/(2n) sum (§7.1)"),
  "l2_sum": LossTerm(l2_sum_loss, "depth", "depth", "000 code 0.0005 * sum (§7.1)"),
  "euclidean": LossTerm(euclidean_loss, "depth", "depth", "001 L_Dabs, Caffe EuclideanLoss (§7.3)"),
  "mvn_euclidean": LossTerm(
    mvn_euclidean_loss, "depth", "depth", "001 L_Dmvn, Caffe MVN eps 1e-9 (§7.3)"
  ),
  "gradient": LossTerm(
    gradient_loss, "depth", "aux/gradients", "001 DepthNet gradient net |dD/dx|, |dD/dy| (§2.2)"
  ),
  "berhu": LossTerm(berhu_loss, "depth", "depth", "003 code c = 0.2 max|e| / Eq. 2 (§7.4)"),
  "scale_invariant": LossTerm(
    scale_invariant_loss, "depth", "depth", "Eigen et al. 2014 Eq. 4, lambda 0.5"
  ),
  "softmax_ce": LossTerm(
    softmax_cross_entropy, "seg", "seg_logits", "001 L_S VALID (§7.3); 003 nanmean (§7.4)"
  ),
  "bce_onehot": LossTerm(bce_onehot_loss, "seg", "seg_logits", "000 U-Net Keras BCE (§1.1, §7.1)"),
  "dice": LossTerm(dice_loss, "seg", "seg_logits", "003 code DiceLoss eps 1e-4 (§7.4)"),
  "focal_tversky": LossTerm(
    focal_tversky_loss, "seg", "seg_logits", "003 code FTL a 0.8 g 1.5 (§7.4)"
  ),
  "dice_ce": LossTerm(dice_ce_loss, "seg", "seg_logits", "003 0.5 CE + 0.5 Dice (§7.4)"),
  "ftl_ce": LossTerm(ftl_ce_loss, "seg", "seg_logits", "003 0.5 CE + 0.5 FTL (§7.4)"),
  "sid_ce": LossTerm(sid_cross_entropy, "bins", "depth_logits", "002 SID CE K=71 (§3.2, §7.2)"),
  "soft_cls": LossTerm(
    soft_classification_loss, "bins", "depth_logits", "004 Eq. 2 smooth-L1 on E[bin] (§7.5)"
  ),
  "contour_ce": LossTerm(
    contour_cross_entropy, "contour", "aux/contour_logits", "003 3-head contour CE (§4.4, §7.4)"
  ),
  "sobel_ce": LossTerm(
    sobel_edge_cross_entropy, "sobel", "aux/sobel_logits", "003 Sobel-edge CE (§4.4, §7.4)"
  ),
}
"""Term name -> :class:`LossTerm`. The ``type`` of a term in :func:`build_loss`'s spec is one of these keys."""

# Keys the composer consumes itself (per kind); every other key of a term goes to the loss function.
_COMMON_KEYS = ("type", "weight", "output")
_KIND_KEYS = {
  "depth": ("target", "depth_norm", "mask_invalid", "min_depth", "max_depth"),
  "seg": (),
  "bins": ("bins", "min_depth", "max_depth"),
  "contour": (),
  "sobel": ("min_depth",),
}
# Function arguments the composer fills in (never taken from the spec).
_FED_ARGS = ("ignore_index", "example_mask", "depth_valid")

PRESETS: dict[str, dict[str, dict[str, Any]]] = {
  # Paper 000 U-Net: Keras BCE on one-hot planes, void -> plane 0 (R0), exact Keras clip on sigmoid.
  "000_unet": {
    "seg": {"type": "bce_onehot", "ignore_mode": "plane0", "keras_clip": True},
  },
  # Paper 000 depth nets: code scaling on inverted normalised depth, no masking (R0). depth_norm: §9.1.
  "000_depth": {
    "depth": {
      "type": "l2_sum",
      "target": "inverted_normalised",
      "depth_norm": 256.0,
      "mask_invalid": False,
    },
  },
  # Paper 001 HybridNet: L_H = 1000 L_S + L_Dabs + L_Dmvn (Caffe semantics, masked).
  "001_hybrid": {
    "seg": {"type": "softmax_ce", "weight": 1000.0},
    "depth_abs": {"type": "euclidean"},
    "depth_mvn": {"type": "mvn_euclidean"},
  },
  # Paper 002: SID CE over 71 bins, alpha 1 m, beta 80 m; y > 80 m ignored.
  "002_sid": {
    "depth_cls": {
      "type": "sid_ce",
      "bins": {"kind": "sid", "alpha": 1.0, "beta": 80.0, "num_bins": 71},
      "max_depth": 80.0,
    },
  },
  # Paper 003 2-head: L1 on depth normalised by 15 m + 0.07 CE (nanmean normalisation).
  "003_multi": {
    "depth": {"type": "l1", "target": "normalised", "depth_norm": 15.0, "min_depth": 0.0},
    "seg": {"type": "softmax_ce", "weight": 0.07, "normalization": "all"},
  },
  # Paper 003 3-head: + 0.1 contour CE (code weight; the paper implies 0.07).
  "003_triple": {
    "depth": {"type": "l1", "target": "normalised", "depth_norm": 15.0, "min_depth": 0.0},
    "seg": {"type": "softmax_ce", "weight": 0.07, "normalization": "all"},
    "contour": {"type": "contour_ce", "weight": 0.1},
  },
  # Paper 003 "2-head with Sobel": L1 + 1.0 * Sobel-edge CE.
  "003_sobel": {
    "depth": {"type": "l1", "target": "normalised", "depth_norm": 15.0, "min_depth": 0.0},
    "sobel": {"type": "sobel_ce", "weight": 1.0},
  },
  # Paper 004 (low range, DORN NYU-like range 0.7-10 m, K = 68): smooth-L1 soft cls + L1 regression.
  "004_soft_cls": {
    "depth_cls": {
      "type": "soft_cls",
      "bins": {"kind": "log10", "alpha": 0.7, "beta": 10.0, "num_bins": 68},
    },
    "depth_reg": {"type": "l1"},
  },
}
"""Paper recipes usable as ``build_loss('<name>')`` (values from model_spec §7; see each comment)."""


def _get_output(outputs: Mapping[str, Any], path: str) -> Any:
  node: Any = outputs
  for part in path.split("/"):
    if not isinstance(node, Mapping) or part not in node:
      known = sorted(node.keys()) if isinstance(node, Mapping) else []
      raise KeyError(
        f"losses.py: model output {path!r} not found (missing {part!r}; available here: {known})"
      )
    node = node[part]
  return node


def _example_mask(batch: Mapping[str, Any], flag: str, batch_size: int) -> Array:
  em = jnp.ones((batch_size,), bool)
  for key in (flag, "mask"):
    if key in batch and batch[key] is not None:
      v = jnp.asarray(batch[key], bool).reshape(-1)
      if v.shape[0] != batch_size:
        raise ValueError(
          f"losses.py: batch[{key!r}] has {v.shape[0]} entries, expected batch size {batch_size}"
        )
      em = em & v
  return em


def _batch_item(batch: Mapping[str, Any], key: str, term: str) -> Any:
  if key not in batch:
    raise KeyError(f"losses.py: loss term {term!r} needs batch[{key!r}]; batch has {sorted(batch)}")
  return batch[key]


def _fn_kwargs(fn: Callable[..., Array]) -> tuple[str, ...]:
  return tuple(
    name
    for name, p in inspect.signature(fn).parameters.items()
    if p.kind == inspect.Parameter.KEYWORD_ONLY
  )


def _to_plain(spec: Any) -> Any:
  if hasattr(spec, "to_dict"):
    spec = spec.to_dict()
  if isinstance(spec, Mapping):
    return {k: _to_plain(v) for k, v in spec.items()}
  return spec


def build_loss(
  spec: Mapping[str, Any] | str,
  *,
  ignore_index: int = IGNORE_INDEX,
  min_depth: float = 1e-3,
  max_depth: float | None = None,
) -> Callable[[Mapping[str, Any], Mapping[str, Any]], tuple[Array, dict[str, Array]]]:
  """Builds a weighted multi-task loss ``loss_fn(outputs, batch) -> (total, aux)`` from a config.

  Schema. ``spec`` is a preset name from :data:`PRESETS` or a mapping (dict or ``ConfigDict``)
  ``{term_name: term_config}``; ``term_name`` is free (it names the entry in ``aux``). Each ``term_config``:

  * ``type`` (required): a key of :data:`LOSS_REGISTRY`.
  * ``weight`` (float, default 1.0): the term's weight in the total.
  * ``output`` (str): model output to read, ``'a/b'`` for ``outputs['a']['b']``; default per type —
    ``'depth'`` (depth terms), ``'seg_logits'`` (segmentation), ``'depth_logits'`` (``sid_ce``,
    ``soft_cls``), ``'aux/contour_logits'`` (``contour_ce``), ``'aux/sobel_logits'`` (``sobel_ce``),
    ``'aux/gradients'`` (``gradient``).
  * depth terms (``l1``, ``l2_mean``, ``l2_sum``, ``euclidean``, ``mvn_euclidean``, ``gradient``, ``berhu``,
    ``scale_invariant``): ``target`` in :data:`DEPTH_TARGETS` (default ``'metres'``), ``depth_norm``
    (metres, for the normalised targets), ``mask_invalid`` (default True: use only ``y > min_depth`` and
    ``y < max_depth``; False: every finite pixel, as paper 000's code), ``min_depth``, ``max_depth``
    (override the builder's defaults).
  * bin terms (``sid_ce``, ``soft_cls``): ``bins`` = kwargs of ``semdepth_jax.depth_bins.make_bins``
    (e.g. ``{'kind': 'sid', 'alpha': 1.0, 'beta': 80.0, 'num_bins': 71}``); ``min_depth``, ``max_depth``.
    If ``batch['depth_bin_ids']`` exists it is used instead of encoding ``batch['depth']``.
  * ``sobel_ce``: ``min_depth`` (measured-depth threshold for the target).
  * every other key is passed to the loss function as a keyword argument (the keyword-only arguments of the
    registered function, e.g. ``normalization`` of ``softmax_ce``, ``threshold`` of ``berhu``); unknown keys
    raise ``ValueError`` listing the allowed ones.

  What ``loss_fn`` does (``outputs``/``batch`` follow the common conventions: ``outputs['depth']``
  ``(B,h,w,1)``, ``outputs['seg_logits']`` ``(B,h,w,C)``, optional ``outputs['depth_logits']`` and
  ``outputs['aux']``; ``batch['depth']`` ``(B,H,W)`` metres with 0 = invalid, ``batch['segmentation']``
  ``(B,H,W)`` int with ``ignore_index``, optional ``has_depth``, ``has_segmentation``, ``mask`` ``(B,)`` bool):

  * resizes each target to its prediction's spatial size with :func:`resize_nearest` (labels and depth alike;
    depth is never interpolated across invalid zeros);
  * depth validity = finite & ``has_depth`` & ``mask`` (& ``min_depth < y`` (& ``y < max_depth``) when
    ``mask_invalid``); then applies the ``target`` transform;
  * segmentation: pixels of examples with ``has_segmentation`` False or ``mask`` False are removed (the
    example mask is passed as ``mask``; label ignore handling is the loss's own);
  * returns ``total = sum_t weight_t * value_t`` and ``aux = {term_name: unweighted value, 'total': total}``.

  Args:
    spec: preset name or mapping as above.
    ignore_index: label ignore value (255).
    min_depth: default lower validity bound in metres (exclusive).
    max_depth: default upper validity bound in metres (exclusive), ``None`` for none.

  Returns:
    A jittable ``loss_fn(outputs, batch) -> (total float32 scalar, aux dict of float32 scalars)``.

  Raises:
    KeyError: unknown preset or term ``type`` (the message lists the known names), a term config without
      ``type``.
    ValueError: unknown keys in a term config, bad ``weight``.
    TypeError: ``spec`` is neither a string nor a mapping.
  """
  if isinstance(spec, str):
    if spec not in PRESETS:
      raise KeyError(f"losses.py: unknown loss preset {spec!r}; known presets: {sorted(PRESETS)}")
    spec = copy.deepcopy(PRESETS[spec])
  spec = _to_plain(spec)
  if not isinstance(spec, Mapping) or not spec:
    raise TypeError(
      "losses.py: build_loss spec must be a non-empty mapping {term_name: {type: ..., ...}} or a preset "
      f"name, got {spec!r}"
    )

  terms = []
  for name, cfg in spec.items():
    if not isinstance(cfg, Mapping):
      raise TypeError(f"losses.py: loss term {name!r} config must be a mapping, got {cfg!r}")
    if "type" not in cfg:
      raise KeyError(
        f"losses.py: loss term {name!r} has no 'type'; known types: {sorted(LOSS_REGISTRY)}"
      )
    ltype = cfg["type"]
    if ltype not in LOSS_REGISTRY:
      raise KeyError(
        f"losses.py: unknown loss type {ltype!r} for term {name!r}; known types: "
        f"{sorted(LOSS_REGISTRY)}"
      )
    entry = LOSS_REGISTRY[ltype]
    fn_keys = tuple(k for k in _fn_kwargs(entry.fn) if k not in _FED_ARGS)
    allowed = _COMMON_KEYS + _KIND_KEYS[entry.kind] + fn_keys
    unknown = sorted(set(cfg) - set(allowed))
    if unknown:
      raise ValueError(
        f"losses.py: loss term {name!r} (type {ltype!r}) has unknown keys {unknown}; allowed: "
        f"{sorted(allowed)}"
      )
    weight = cfg.get("weight", 1.0)
    if not isinstance(weight, int | float) or not np.isfinite(weight):
      raise ValueError(
        f"losses.py: loss term {name!r} weight must be a finite number, got {weight!r}"
      )
    opts = {k: cfg[k] for k in _KIND_KEYS[entry.kind] if k in cfg}
    kwargs = {k: cfg[k] for k in fn_keys if k in cfg}
    if entry.kind == "depth" and opts.get("target", "metres") not in DEPTH_TARGETS:
      raise ValueError(
        f"losses.py: loss term {name!r} target must be one of {DEPTH_TARGETS}, got {opts['target']!r}"
      )
    if (
      entry.kind == "depth"
      and opts.get("target") in ("normalised", "inverted_normalised")
      and opts.get("depth_norm") is None
    ):
      raise ValueError(f"losses.py: loss term {name!r} target {opts['target']!r} needs depth_norm")
    bins = None
    if entry.kind == "bins":
      if "bins" not in opts:
        raise ValueError(
          f"losses.py: loss term {name!r} (type {ltype!r}) needs 'bins' (kwargs of "
          "depth_bins.make_bins, e.g. {'kind': 'sid', 'alpha': 1.0, 'beta': 80.0, 'num_bins': 71})"
        )
      bins = depth_bins.make_bins(**opts["bins"])
    terms.append(
      _Term(
        name=name,
        entry=entry,
        weight=float(weight),
        output=cfg.get("output", entry.default_output),
        opts=opts,
        kwargs=kwargs,
        bins=bins,
        ignore_index=ignore_index,
        min_depth=min_depth,
        max_depth=max_depth,
      )
    )

  def loss_fn(
    outputs: Mapping[str, Any], batch: Mapping[str, Any]
  ) -> tuple[Array, dict[str, Array]]:
    total = jnp.float32(0.0)
    aux: dict[str, Array] = {}
    for term in terms:
      value = term(outputs, batch)
      aux[term.name] = value
      total = total + term.weight * value
    aux["total"] = total
    return total, aux

  return loss_fn


@dataclasses.dataclass(frozen=True)
class _Term:
  """One configured term of :func:`build_loss` (internal)."""

  name: str
  entry: LossTerm
  weight: float
  output: str
  opts: dict[str, Any]
  kwargs: dict[str, Any]
  bins: Any
  ignore_index: int
  min_depth: float
  max_depth: float | None

  def _depth(self, batch, hw, *, masked: bool) -> tuple[Array, Array, Array]:
    """Resized GT depth (invalid -> 0), its validity mask and the (B,) example mask."""
    y = _depth_map(_batch_item(batch, "depth", self.name), "batch['depth']")
    y = resize_nearest(y, hw)
    ex = _example_mask(batch, "has_depth", y.shape[0])
    valid = jnp.isfinite(y) & ex[:, None, None]
    if masked:
      lo = self.opts.get("min_depth", self.min_depth)
      hi = self.opts.get("max_depth", self.max_depth)
      if lo is not None:
        valid = valid & (y > lo)
      if hi is not None:
        valid = valid & (y < hi)
    return jnp.where(valid, y, 0.0), valid, ex

  def _labels(self, batch, hw) -> tuple[Array, Array]:
    lab = _label_map(_batch_item(batch, "segmentation", self.name), "batch['segmentation']")
    lab = resize_nearest(lab, hw)
    ex = _example_mask(batch, "has_segmentation", lab.shape[0])
    return lab, jnp.broadcast_to(ex[:, None, None], lab.shape)

  def __call__(self, outputs, batch) -> Array:
    pred = _get_output(outputs, self.output)
    hw = tuple(jnp.shape(pred)[1:3])
    fn, kind, kw = self.entry.fn, self.entry.kind, dict(self.kwargs)
    accepts = _fn_kwargs(fn)
    if "ignore_index" in accepts:
      kw["ignore_index"] = self.ignore_index
    if kind == "depth":
      y, valid, ex = self._depth(batch, hw, masked=self.opts.get("mask_invalid", True))
      target, valid = depth_target_transform(
        y, valid, self.opts.get("target", "metres"), depth_norm=self.opts.get("depth_norm")
      )
      if "example_mask" in accepts:
        kw["example_mask"] = ex
      return fn(pred, target, valid, **kw)
    if kind == "seg":
      lab, m = self._labels(batch, hw)
      return fn(pred, lab, m, **kw)
    if kind == "contour":
      lab, m = self._labels(batch, hw)
      return fn(pred, lab, m, **kw)
    if kind == "sobel":
      y, valid, ex = self._depth(batch, hw, masked=True)
      m = jnp.broadcast_to(ex[:, None, None], y.shape)
      return fn(pred, y, m, depth_valid=valid, **kw)
    if kind == "bins":
      y, valid, _ = self._depth(batch, hw, masked=True)
      if "depth_bin_ids" in batch:
        ids = resize_nearest(_label_map(batch["depth_bin_ids"], "batch['depth_bin_ids']"), hw)
      else:
        ids = depth_bins.encode(self.bins, y, ignore_index=self.ignore_index)
      if jnp.shape(pred)[-1] != self.bins.num_classes:
        raise ValueError(
          f"losses.py: loss term {self.name!r}: output {self.output!r} has {jnp.shape(pred)[-1]} "
          f"channels but {self.bins!r} has {self.bins.num_classes} classes"
        )
      ids = jnp.where(valid, ids, self.ignore_index)
      return fn(pred, ids, valid, **kw)
    raise AssertionError(f"unhandled loss kind {kind!r}")  # pragma: no cover
