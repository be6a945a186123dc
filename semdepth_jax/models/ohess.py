"""One-Hot Encoded Semantic Segmentation (OHESS) planes and the RGB+OHESS input volume (paper 000).

Paper 000 (Valdez-Rodríguez et al. 2022, §3 and Fig. 1/3) feeds the depth networks with the RGB image
followed by one binary plane per semantic class (model_spec §1.0, §1.5). These pure functions build the
planes from ground-truth labels (stage-2 training, "given OHESS") or from the U-Net's outputs (inference),
and stack RGB + planes into the input of the 2-D (channels) or 3-D (depth axis) networks. The training code
uses them as well.

Plane selection: ``classes=None`` gives one plane per class ``0 .. num_classes - 1``; a tuple of class ids
(e.g. the top-N most frequent classes, like paper 003's "1hot-N", model_spec §4.3) gives one plane per
listed id, in that order, and every other class becomes all-zero planes. This keeps the 3-D nets tractable
for datasets with many classes.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp

from semdepth_jax.data.meta import IGNORE_INDEX

Array = jax.Array

OHESS_MODES = ("threshold", "argmax", "softmax", "sigmoid")
"""How :func:`ohess_from_logits` turns U-Net logits into planes."""

IGNORE_MODES = ("zero", "plane0")
"""How :func:`ohess_from_labels` encodes ``ignore_index`` pixels."""


def check_classes(
  classes: Sequence[int] | None, num_classes: int, where: str = "ohess"
) -> tuple[int, ...]:
  """Validates a plane selection and returns it as a tuple (all classes when ``None``).

  Raises:
    ValueError: ``num_classes < 1``, an empty selection, ids outside ``[0, num_classes)`` or repeated ids.
  """
  if num_classes < 1:
    raise ValueError(f"{where}: num_classes must be >= 1, got {num_classes}")
  if classes is None:
    return tuple(range(num_classes))
  sel = tuple(int(c) for c in classes)
  if not sel:
    raise ValueError(f"{where}: ohess_classes must name at least one class id, got ()")
  bad = [c for c in sel if not 0 <= c < num_classes]
  if bad:
    raise ValueError(
      f"{where}: ohess_classes ids must be in [0, {num_classes}), got {bad} in {sel}"
    )
  if len(set(sel)) != len(sel):
    raise ValueError(f"{where}: ohess_classes has repeated ids: {sel}")
  return sel


def num_planes(num_classes: int, classes: Sequence[int] | None = None) -> int:
  """Number of OHESS planes: ``len(classes)`` or ``num_classes``."""
  return len(check_classes(classes, num_classes))


def ohess_from_labels(
  labels: Array,
  num_classes: int,
  classes: Sequence[int] | None = None,
  *,
  ignore_index: int = IGNORE_INDEX,
  ignore_mode: str = "zero",
  dtype=jnp.float32,
) -> Array:
  """Ground-truth OHESS: one binary plane per selected class (paper 000 Fig. 1; model_spec §1.1, §9.1).

  Args:
    labels: (B, H, W) integer training ids ``0 .. num_classes - 1``, ``ignore_index`` for unlabelled pixels.
    num_classes: number of training ids (from the dataset meta info).
    classes: class ids that get a plane, in plane order; ``None`` = all classes.
    ignore_index: label value of unlabelled pixels (255 in every stored dataset).
    ignore_mode: ``'zero'`` (default): ignored pixels are all-zero in every plane (no class known).
      ``'plane0'``: ignored pixels are set in plane 0, reproducing the reference code, which maps "void"
      onto the 14-class set's class 0 "Miscellaneous" (model_spec §1.1, §9.1); only meaningful when plane 0 is
      a catch-all class.
    dtype: output dtype.

  Returns:
    (B, H, W, P) with P = ``len(classes)`` or ``num_classes``; values exactly 0 or 1. Label values that are
    neither a selected class nor ``ignore_index`` (unselected classes, out-of-range ids) give all-zero
    pixels. No gradient flows through labels.

  Raises:
    ValueError: bad ``classes`` / ``ignore_mode`` or non-integer ``labels`` of the wrong rank.
  """
  sel = check_classes(classes, num_classes, "ohess_from_labels")
  if ignore_mode not in IGNORE_MODES:
    raise ValueError(
      f"ohess_from_labels: ignore_mode must be one of {IGNORE_MODES}, got {ignore_mode!r}"
    )
  labels = jnp.asarray(labels)
  if labels.ndim != 3 or not jnp.issubdtype(labels.dtype, jnp.integer):
    raise ValueError(
      f"ohess_from_labels: labels must be integer (B, H, W), got {labels.dtype} {labels.shape}"
    )
  planes = labels[..., None] == jnp.asarray(sel, labels.dtype)
  if ignore_mode == "plane0":
    planes = planes.at[..., 0].set(planes[..., 0] | (labels == ignore_index))
  return planes.astype(dtype)


def ohess_from_logits(
  seg_logits: Array,
  mode: str = "threshold",
  classes: Sequence[int] | None = None,
  *,
  threshold: float = 0.5,
  dtype=jnp.float32,
) -> Array:
  """OHESS from the U-Net's per-class logits (SSegDep-Net inference; docs/model_spec.md §1.1, §1.5).

  Args:
    seg_logits: (B, H, W, C) pre-sigmoid logits of the U-Net (its output activation is a per-class
      sigmoid trained with binary cross-entropy).
    mode: ``'threshold'``: ``sigmoid(logits) > threshold`` per class independently (the reference code;
      multi-hot, possibly empty). ``'argmax'``: one-hot of the arg-max class (exactly one class per pixel,
      before the selection). ``'softmax'``: softmax probabilities over the C classes (differentiable, for
      end-to-end fine-tuning). ``'sigmoid'``: the sigmoid probabilities themselves (the differentiable
      relaxation of ``'threshold'``).
    classes: class ids that get a plane, in plane order; ``None`` = all C.
    threshold: probability threshold of ``'threshold'`` (0.5 in the reference code).
    dtype: output dtype.

  Returns:
    (B, H, W, P) in ``dtype``; {0, 1} for ``'threshold'`` / ``'argmax'`` (zero gradient), [0, 1] otherwise.

  Raises:
    ValueError: unknown ``mode``, bad ``classes`` or wrong rank.
  """
  if mode not in OHESS_MODES:
    raise ValueError(f"ohess_from_logits: mode must be one of {OHESS_MODES}, got {mode!r}")
  if seg_logits.ndim != 4:
    raise ValueError(f"ohess_from_logits: seg_logits must be (B, H, W, C), got {seg_logits.shape}")
  sel = check_classes(classes, seg_logits.shape[-1], "ohess_from_logits")
  logits = seg_logits.astype(jnp.float32)
  if mode == "threshold":
    planes = jax.lax.stop_gradient((jax.nn.sigmoid(logits) > threshold).astype(jnp.float32))
  elif mode == "argmax":
    planes = jax.lax.stop_gradient(
      jax.nn.one_hot(jnp.argmax(logits, axis=-1), logits.shape[-1], dtype=jnp.float32)
    )
  elif mode == "softmax":
    planes = jax.nn.softmax(logits, axis=-1)
  else:
    planes = jax.nn.sigmoid(logits)
  if sel != tuple(range(logits.shape[-1])):
    planes = jnp.take(planes, jnp.asarray(sel), axis=-1)
  return planes.astype(dtype)


def rgb_ohess_channels(image: Array, planes: Array) -> Array:
  """Stacks RGB and OHESS planes along channels: (B, H, W, 3) + (B, H, W, P) -> (B, H, W, 3 + P).

  The 2-D input of SCRX RGB+OHESS (docs/model_spec.md §1.2).
  """
  _check_image_planes(image, planes)
  return jnp.concatenate([image, planes.astype(image.dtype)], axis=-1)


def rgb_ohess_volume(image: Array, planes: Array, min_depth: int = 0) -> Array:
  """Stacks RGB then OHESS planes as the *depth* axis of a 1-channel volume (model_spec §1.3, §1.4).

  Args:
    image: (B, H, W, 3) float RGB in [0, 1].
    planes: (B, H, W, P) OHESS planes.
    min_depth: if ``3 + P < min_depth``, all-zero planes are appended (a zero plane is what an absent class
      looks like) so that the 3-D nets' pooling has enough depth.

  Returns:
    (B, D, H, W, 1) NDHWC with D = max(3 + P, min_depth): planes R, G, B, OHESS 0 .. P-1, zero padding.
  """
  _check_image_planes(image, planes)
  vol = jnp.concatenate([image, planes.astype(image.dtype)], axis=-1)
  vol = jnp.moveaxis(vol, -1, 1)[..., None]
  if vol.shape[1] < min_depth:
    pad = [(0, 0), (0, min_depth - vol.shape[1]), (0, 0), (0, 0), (0, 0)]
    vol = jnp.pad(vol, pad)
  return vol


def _check_image_planes(image: Array, planes: Array) -> None:
  if image.ndim != 4 or planes.ndim != 4 or image.shape[:3] != planes.shape[:3]:
    raise ValueError(
      f"ohess: image (B, H, W, 3) and planes (B, H, W, P) must share B, H, W; got {image.shape} and "
      f"{planes.shape}"
    )


def resolve_planes(
  image: Array,
  labels: Array | None,
  ohess: Array | None,
  *,
  num_classes: int,
  classes: Sequence[int] | None,
  ignore_mode: str,
  initializing: bool,
  where: str,
  source: Any = None,
) -> Array:
  """The OHESS planes a depth model should use: given planes, else from its semantic source.

  Used by the models' ``__call__``: precomputed ``ohess`` (e.g. from the U-Net inside SSegDep-Net) wins,
  then the model's semantic source (``semdepth_jax.models.semantic_source``): ground truth from ``labels``
  (the default, paper 000's training and testing of SCRX / the 3-D nets) or a trained segmentation run's
  predictions; during ``init`` without labels all-zero planes stand in (only shapes matter there), so
  ``model.init(rng, image, train=False)`` works without labels.

  Args:
    image: (B, H, W, 3) float RGB in [0, 1].
    labels: (B, H, W) integer training ids, or None.
    ohess: precomputed (B, H, W, P) planes, or None.
    num_classes: training ids of the dataset.
    classes: class ids that get a plane (None = all).
    ignore_mode: ``'zero'`` or ``'plane0'`` (:func:`ohess_from_labels`).
    initializing: inside ``model.init``.
    where: model name for error messages.
    source: a ``SemanticSource`` (or its config mapping); None = ground truth.

  Returns:
    (B, H, W, P) float32, P = ``num_planes(num_classes, classes)``.

  Raises:
    ValueError: neither ``labels`` nor ``ohess`` outside ``init`` with a ground-truth source, a source
      ``'none'``, or shapes that do not match the image.
  """
  from semdepth_jax.models import semantic_source as source_lib

  n = num_planes(num_classes, classes)
  if ohess is not None:
    if ohess.shape != (*image.shape[:3], n):
      raise ValueError(
        f"{where}: ohess must be {(*image.shape[:3], n)} (B, H, W, planes), got {ohess.shape}"
      )
    return ohess.astype(jnp.float32)
  src = source_lib.SemanticSource.from_config(source, where=where)
  if not src.active:
    raise ValueError(f"{where}: this model reads OHESS planes but its semantic_source is 'none'")
  if src.source == "gt" and labels is None:
    if initializing:
      return jnp.zeros((*image.shape[:3], n), jnp.float32)
    raise ValueError(
      f"{where}: this model reads RGB + OHESS planes; pass labels=(B, H, W) int32 training ids "
      "(ground-truth OHESS) or ohess=(B, H, W, planes)"
    )
  sem = src.resolve(image, labels, num_classes=num_classes, initializing=initializing, where=where)
  return src.planes(sem, num_classes, classes, ignore_mode=ignore_mode)


def check_image(image: Array, where: str) -> None:
  """Raises ValueError unless ``image`` is float (B, H, W, 3) (NHWC RGB in [0, 1])."""
  if image.ndim != 4 or image.shape[-1] != 3 or not jnp.issubdtype(image.dtype, jnp.floating):
    raise ValueError(
      f"{where}: image must be float (B, H, W, 3) in [0, 1], got {image.dtype} {image.shape}"
    )
