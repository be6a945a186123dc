r"""``semdepth evaluate``: compiled, sharded evaluation of a training workdir on a whole dataset split.

::

  semdepth evaluate --workdir runs/x [--config configs/ssegdepnet.py:...] [--step N] [--split S] \
      [--protocol P] [--tta flip] [--tile [--tile_size H,W] [--tile_combine max]] [--batch_size B] \
      [--image_size H,W] [--data_dir D]

What runs: the checkpoint's base model (``semdepth_jax.predict.load_trained``) wrapped in
``predict.InferenceModel`` (model input = the training size; ``--tile`` = sliding windows of the training
size, overlaps averaged; ``--tta flip`` = horizontal-flip averaging), fed by the padded eval iterator of the
input pipeline and evaluated by the training code's compiled, sharded ``loop.make_evaluate_fn``: every
batch is split over the mesh's ``data`` axis and the metric sums are accumulated inside ``jit``; padding
examples (``mask`` False) count zero times, so every example of the split counts exactly once.

Resolution: by default batches keep the stored size of the split and predictions are made at that size
(the image is resized to the model input inside ``jit`` and the outputs back: bilinear for depth, class
probabilities bilinear before the argmax), i.e. metrics are computed at the ground-truth resolution, as the
field does. ``--image_size H,W`` instead resizes images and ground truth (nearest) to H x W first, like the
training loop's periodic evaluation.

Protocol (depth): ``--protocol`` names a standard-kind entry of ``semdepth_jax.metrics.PROTOCOLS`` (crop,
depth caps, prediction clamp, per-image or pooled averaging). Default: the registered protocol matching the
dataset's meta info (``min_depth``, ``max_depth``, ``eval_crop``; e.g. ``nyu_eigen`` for NYUv2), else
``dataset:<name>`` with those settings, per image. Paper 000's and 003's script protocols (``r0_*``,
``clean_000``, ``r3_*``) work on saved prediction files: use ``semdepth predict`` + ``semdepth score``.

Outputs in ``DIR/eval/<split>/`` (or ``--out``): ``metrics.json`` with the depth keys of the protocol
(``metrics.DEPTH_METRIC_KEYS`` for the field protocols), the segmentation metrics with per-class IoU and
accuracy *by class name*, the depth error per semantic class (pixels grouped by their ground-truth label:
pooled abs_rel, rmse, mae, delta1 and pixel count per class), the protocol, step, number of examples and the
settings; and ``metrics.md``, the same as Markdown tables.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import math
import os
import sys
from collections.abc import Mapping, Sequence
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from semdepth_jax import metrics, resize
from semdepth_jax.models import contract

_log = logging.getLogger(__name__)

PER_CLASS_DEPTH_KEYS = ("abs_rel", "rmse", "mae", "delta1")
"""Depth errors reported per semantic class (pooled over the class's valid pixels of the whole split)."""

_PER_CLASS_TERMS = ("n", "abs_rel", "sq", "abs", "delta1")


# ----------------------------------------------------------------------------------------------------------
# Protocol selection.


dataset_protocol = metrics.dataset_protocol


def resolve_protocol(name: str | None, meta: Any) -> metrics.Protocol:
  """``--protocol`` value (or None = :func:`dataset_protocol`) -> a standard-kind ``Protocol``.

  Raises:
    KeyError: unknown protocol name (lists the known ones).
    ValueError: a protocol of another kind (paper scripts on saved files; the message says what to use).
  """
  if not name:
    return dataset_protocol(meta)
  proto = metrics.get_protocol(name)
  if proto.kind != "standard":
    standard = sorted(k for k, p in metrics.PROTOCOLS.items() if p.kind == "standard")
    raise ValueError(
      f"protocol {name!r} reproduces a published script (kind {proto.kind!r}) on saved predictions; "
      f"run `semdepth predict` and `semdepth score --protocol {name}` instead. evaluate supports: "
      f"{', '.join(standard)}"
    )
  return proto


# ----------------------------------------------------------------------------------------------------------
# Accumulators (inside jit).


def _kahan_add(acc: Mapping[str, jax.Array], x: jax.Array) -> dict[str, jax.Array]:
  """Compensated float32 summation (``sum``, ``comp``), so long runs do not lose small batch sums."""
  y = x - acc["comp"]
  t = acc["sum"] + y
  return {"sum": t, "comp": (t - acc["sum"]) - y}


def per_class_depth_terms(
  pred: jax.Array, gt: jax.Array, valid: jax.Array, labels: jax.Array, num_classes: int
) -> dict[str, jax.Array]:
  """Per-class sums of depth error terms over the pixels of each ground-truth class (jittable).

  Args:
    pred: float32 (B, H, W) prediction in metres, already clamped (> 0 where valid).
    gt: float32 (B, H, W) ground truth in metres.
    valid: bool (B, H, W) pixels to use (depth validity, crop, example mask, labelled).
    labels: int (B, H, W) ground-truth class ids; only ids in [0, num_classes) are used.
    num_classes: C.

  Returns:
    float32 (C,) sums: ``n`` (pixels), ``abs_rel`` (sum |p - y| / y), ``sq`` (sum (p - y)^2), ``abs``
    (sum |p - y|), ``delta1`` (pixels with max(p/y, y/p) < 1.25).
  """
  lab = jnp.asarray(labels, jnp.int32)
  ok = valid & (lab >= 0) & (lab < num_classes)
  seg = jnp.where(ok, lab, 0).reshape(-1)
  w = ok.astype(jnp.float32).reshape(-1)
  p = jnp.where(ok, pred, 1.0).reshape(-1)
  y = jnp.where(ok, gt, 1.0).reshape(-1)
  d = p - y
  values = {
    "n": w,
    "abs_rel": jnp.abs(d) / y * w,
    "sq": d * d * w,
    "abs": jnp.abs(d) * w,
    "delta1": (jnp.maximum(p / y, y / p) < 1.25).astype(jnp.float32) * w,
  }
  return {k: jax.ops.segment_sum(v, seg, num_segments=int(num_classes)) for k, v in values.items()}


def per_class_depth_metrics(
  sums: Mapping[str, np.ndarray], class_names: Sequence[str]
) -> dict[str, dict[str, float]]:
  """Turns per-class sums (:func:`per_class_depth_terms`, accumulated) into metrics, classes with pixels only.

  Returns:
    ``{class name: {num_pixels, abs_rel, rmse, mae, delta1}}`` (pooled over the class's pixels).
  """
  n = np.asarray(sums["n"], np.float64)
  out = {}
  for c, name in enumerate(class_names):
    if n[c] <= 0:
      continue
    out[name] = {
      "num_pixels": int(round(n[c])),
      "abs_rel": float(sums["abs_rel"][c] / n[c]),
      "rmse": float(math.sqrt(max(sums["sq"][c] / n[c], 0.0))),
      "mae": float(sums["abs"][c] / n[c]),
      "delta1": float(sums["delta1"][c] / n[c]),
    }
  return out


class JointEvaluator:
  """Streaming depth (under a protocol), segmentation and per-class depth metrics; ``loop.Evaluator`` API.

  Depth and segmentation reuse ``semdepth_jax.train.step.StreamingEvaluator`` (argmax labels resized
  nearest, ``metrics.DepthAccumulator`` / ``SegAccumulator``), with the protocol's accumulator (crop,
  caps, clamp, median scaling); depth is resized to the ground truth by the protocol's ``resize`` rule
  (half-pixel or align-corners bilinear). The per-class depth error groups the protocol's
  valid depth pixels of examples that have both depth and labels by their ground-truth class.

  Args:
    protocol: a standard-kind ``metrics.Protocol``.
    num_classes: segmentation classes C.
    class_names: names of the ids ``0 .. C - 1``.
    ignore_index: ignored label value.
    depth_output: units of the outputs' ``depth`` (``'metres'`` for ``predict.InferenceModel``).
    depth_norm: metres, for ``'inverted_normalised'`` outputs.

  Raises:
    ValueError: a protocol that is not of the standard kind, or class names that do not match C.
  """

  def __init__(
    self,
    protocol: metrics.Protocol,
    *,
    num_classes: int,
    class_names: Sequence[str],
    ignore_index: int = 255,
    depth_output: str = "metres",
    depth_norm: float | None = None,
  ):
    from semdepth_jax.train import step as step_lib

    if protocol.kind != "standard":
      raise ValueError(f"JointEvaluator needs a standard-kind protocol, got {protocol.name!r}")
    if len(class_names) != num_classes:
      raise ValueError(f"{len(class_names)} class names for {num_classes} classes")
    self.protocol = protocol
    self.num_classes = int(num_classes)
    self.class_names = tuple(class_names)
    self.ignore_index = int(ignore_index)
    self.base = step_lib.StreamingEvaluator(
      num_classes=num_classes,
      ignore_index=ignore_index,
      min_depth=protocol.min_depth,
      max_depth=protocol.max_depth,
      crop=protocol.crop,
      depth_output=depth_output,
      depth_norm=depth_norm,
    )
    # The protocol's accumulator also carries its prediction clamp.
    self.base.depth_acc = protocol.accumulator()

  def init(self) -> dict[str, Any]:
    """Zero accumulators."""
    zeros = {"sum": jnp.zeros((self.num_classes,), jnp.float32)}
    zeros["comp"] = zeros["sum"]
    return {
      **self.base.init(),
      "per_class": {k: dict(zeros) for k in _PER_CLASS_TERMS},
      "num_examples": jnp.zeros((), jnp.int32),
    }

  def update(self, acc: Any, outputs: Mapping[str, Any], batch: Mapping[str, Any]) -> Any:
    """Adds one batch (jittable; respects ``mask``, ``has_depth``, ``has_segmentation``)."""
    mask = batch.get("mask")
    if mask is None:
      mask = jnp.ones(batch["image"].shape[:1], bool)
    # Segmentation through the base evaluator; depth here, resized by the protocol's rule.
    seg_only = {k: v for k, v in outputs.items() if k != "depth"}
    new = dict(self.base.update({"depth": acc["depth"], "seg": acc["seg"]}, seg_only, batch))
    new["num_examples"] = acc["num_examples"] + jnp.sum(mask.astype(jnp.int32))
    new["per_class"] = acc["per_class"]
    if "depth" in outputs:
      gt = batch["depth"]
      pred = resize.bilinear(
        self.base.depth_in_metres(outputs["depth"]),
        gt.shape[1:3],
        align_corners=self.protocol.resize == "bilinear_align_corners",
      )
      ones = jnp.ones_like(mask)
      m_depth = mask & batch.get("has_depth", ones)
      new["depth"] = self.base.depth_acc.update(acc["depth"], pred, gt, m_depth)
      m = mask & batch.get("has_depth", ones) & batch.get("has_segmentation", ones)
      pred, gt, valid = self.base.depth_acc.prepare(pred, gt, m)
      labels = batch["segmentation"]
      valid &= labels != self.ignore_index
      sums = per_class_depth_terms(pred, gt, valid, labels, self.num_classes)
      new["per_class"] = {k: _kahan_add(acc["per_class"][k], sums[k]) for k in _PER_CLASS_TERMS}
    return new

  def finish(self, acc: Any) -> dict[str, Any]:
    """Host-side results: ``depth`` (protocol keys), ``segmentation``, ``depth_per_class``, counts."""
    acc = jax.device_get(acc)
    out: dict[str, Any] = {"num_examples": int(acc["num_examples"])}
    depth_acc = self.base.depth_acc
    counts = depth_acc.counts(acc["depth"])
    if counts["num_images"] > 0:
      values = depth_acc.finish(acc["depth"], per_image=self.protocol.per_image)
      out["depth"] = {key: float(values[src]) * f for key, src, f in self.protocol.outputs}
      out["depth_counts"] = counts
    seg = acc["seg"]
    if int(np.asarray(seg.num_examples)) > 0:
      s = self.base.seg_acc.finish(seg)
      if s["num_pixels"] > 0:
        res = {k: float(s[k]) for k in metrics.SEG_METRIC_KEYS}
        res["iou_per_class"] = _by_name(s["iou_per_class"], self.class_names)
        res["class_acc"] = _by_name(s["class_acc"], self.class_names)
        res["num_pixels"] = int(s["num_pixels"])
        res["num_examples"] = int(np.asarray(seg.num_examples))
        out["segmentation"] = res
    sums = {k: np.asarray(v["sum"], np.float64) for k, v in acc["per_class"].items()}
    if sums["n"].sum() > 0:
      out["depth_per_class"] = per_class_depth_metrics(sums, self.class_names)
    return out


def _by_name(values: np.ndarray, names: Sequence[str]) -> dict[str, float | None]:
  return {n: (None if not np.isfinite(v) else float(v)) for n, v in zip(names, values, strict=True)}


# ----------------------------------------------------------------------------------------------------------
# The evaluation.


def _split_base(split: str) -> str:
  return split.split("[")[0]


PROTOCOL_DATASETS: dict[str, tuple[str, ...]] = {
  "nyu_": ("nyu_depth_v2_labeled", "nyu_depth_v2", "sun_rgbd", "scannet"),
  "kitti_": ("kitti_depth",),
  "p1_hybridnet": ("cityscapes", "sun_rgbd"),
}
"""Protocol name prefix -> the datasets it was defined for (crops and caps are tied to their cameras)."""


def depth_source_note(protocol: metrics.Protocol, meta: Any) -> str | None:
  """A warning when an NYU protocol scores the in-painted depth of ``nyu_depth_v2_labeled``, else None.

  The field's NYU tables (README "Metrics and protocols") score the raw Kinect depth (``rawDepths``);
  configs ``40`` / ``13`` store the dense in-painted ``depths``, ``40_raw`` / ``13_raw`` the raw one.
  """
  name = getattr(meta, "name", "")
  if (
    protocol.name.startswith("nyu_")
    and name.startswith("nyu_depth_v2_labeled/")
    and not name.endswith("_raw")
  ):
    return (
      f"protocol {protocol.name!r} on {name!r} scores the in-painted `depths`; the published NYU numbers "
      f"use the raw Kinect depth: build {name}_raw (rawDepths; `semdepth evaluate` then scores it by "
      "default) to compare with them"
    )
  return None


def raw_depth_twin(protocol: metrics.Protocol, meta: Any) -> str | None:
  """``nyu_depth_v2_labeled/<c>_raw`` when an NYU protocol would score in-painted config ``<c>``, else None."""
  if depth_source_note(protocol, meta) is None:
    return None
  return f"{meta.name}_raw"


def raw_twin_built(dataset: str, data_dir: str | None) -> bool:
  """Whether ``dataset`` is built in ``data_dir`` (False for an unknown name or config)."""
  from semdepth_jax.data import pipeline

  try:
    return bool(pipeline.get_builder(dataset, data_dir).is_prepared())
  except (KeyError, ValueError):
    return False


def protocol_mismatch(protocol: metrics.Protocol, dataset: str) -> str | None:
  """A warning when ``protocol`` belongs to other datasets than ``dataset``, else None.

  E.g. ``nyu_eigen`` on ``synthetic_city``: its crop and 10 m cap describe the NYU Kinect frames.
  """
  base = dataset.split(":")[0].split("/")[0]
  for prefix, datasets in PROTOCOL_DATASETS.items():
    if protocol.name.startswith(prefix) and base not in datasets:
      return (
        f"protocol {protocol.name!r} was defined for {', '.join(datasets)}, not {base!r}: its crop, depth "
        f"caps and clamp may not fit this data (the default protocol of {base!r} is "
        f"{metrics.dataset_protocol(_meta_of(dataset)).name!r})"
      )
  return None


def _meta_of(dataset: str):
  from semdepth_jax.data.meta import get_meta

  return get_meta(dataset)


@dataclasses.dataclass(frozen=True)
class EvalSettings:
  """What one evaluation measures: which data, how predictions are made, how they are scored.

  Attributes:
    split: split name or TFDS split expression (``test``, ``train[:10]``).
    dataset: TFDS name (None = the training config's dataset).
    protocol: standard-kind depth protocol name (None = the dataset's default, ``metrics.dataset_protocol``).
    mode: ``'resize'`` (the image resized to the model input) or ``'tile'`` (tiles at training scale).
    tile_size: (h, w) tile in image pixels for ``mode='tile'`` (None = the training scale,
      ``predict.training_tile_size``; paper 001 tiles Cityscapes into 321 x 321).
    tile_combine: overlapping class scores in ``mode='tile'``: ``'mean'`` or ``'max'`` (paper 001).
    tta: ``None`` or ``'flip'`` (horizontal-flip averaging).
    image_size: (H, W) to resize images and ground truth to first; None = the stored size (default: metrics
      at the ground-truth resolution, as the field reports them).
    batch_size: global batch (None = ``config.eval.batch_size``), rounded up to the mesh's data axis.
    max_batches: stop after this many batches (0 = the whole split).
    pointwise_conv: 1x1 convolution switch (None: the config's, ``predict.conv_switches``).
    volume_conv: 3-D convolution switch (None: the config's). Neither changes the output folder: the
      results agree to float rounding.
  """

  split: str
  dataset: str | None = None
  protocol: str | None = None
  mode: str = "resize"
  tta: str | None = None
  image_size: tuple[int, int] | None = None
  batch_size: int | None = None
  max_batches: int = 0
  tile_size: tuple[int, int] | None = None
  tile_combine: str = "mean"
  pointwise_conv: str | None = None
  volume_conv: str | None = None

  def folder(self, protocol_name: str) -> str:
    """Relative output folder, unique per setting: ``<split>/<protocol>/<mode>[+flip][@HxW][_first<N>]``."""
    variant = self.mode
    if self.mode == "tile" and self.tile_size is not None:
      variant += f"{int(self.tile_size[0])}x{int(self.tile_size[1])}"
    if self.mode == "tile" and self.tile_combine != "mean":
      variant += f"-{self.tile_combine}"
    variant += "+flip" if self.tta == "flip" else ""
    if self.image_size is not None:
      variant += f"@{int(self.image_size[0])}x{int(self.image_size[1])}"
    if self.max_batches:
      variant += f"_first{int(self.max_batches)}batches"
    parts = [_safe(self.split), _safe(protocol_name), variant]
    if self.dataset:
      parts.insert(0, _safe(self.dataset))
    return os.path.join(*parts)


class Evaluation:
  """The one evaluation path: a model on a dataset split under a protocol, compiled once, run many times.

  Training-time evaluation (``semdepth_jax.train.loop``), ``semdepth evaluate`` (:func:`evaluate_workdir`),
  the quickstart (model and trivial baselines) and the notebook all run this class, so a checkpoint gets the
  same numbers everywhere. Predictions come from ``predict.InferenceModel`` (the model's ``decode`` gives
  metres and class probabilities, which are resized to the evaluated image size); the metrics are the
  jitted, sharded accumulators of :class:`JointEvaluator` (every example counts once; padding zero times).

  Args:
    model: a registered model (model-family contract), or any module with the same call convention.
    config: the training config (input size, dataset, data/eval settings, training augmentation).
    settings: :class:`EvalSettings`.
    mesh: the mesh to run on.
    data_dir: TFDS data dir (None = ``config.data_dir`` or TFDS's default).
    variables_shardings: shardings of the variables dict (default replicated).

  Raises:
    KeyError: unknown dataset or protocol.
    ValueError: a split the dataset does not have, a non-standard protocol, bad settings.
  """

  def __init__(
    self,
    model: Any,
    config: Any,
    settings: EvalSettings,
    *,
    mesh: Any,
    data_dir: str | None = None,
    variables_shardings: Any = None,
  ):
    from semdepth_jax import predict
    from semdepth_jax.train import loop

    dataset = settings.dataset or config.dataset
    meta = _meta_of(dataset)
    if _split_base(settings.split) not in meta.splits:
      raise ValueError(
        f"dataset {meta.name!r} has no split {settings.split!r}; splits: {', '.join(meta.splits)}"
      )
    self.protocol = resolve_protocol(settings.protocol, meta)
    self.warnings: list[str] = []
    raw = raw_depth_twin(self.protocol, meta)
    if raw and not settings.dataset and raw_twin_built(raw, data_dir or config.data_dir or None):
      # The field's NYU numbers score rawDepths: by default score the raw twin of the training data
      # (same frames, labels and splits) when it is built.
      _log.info(
        "depth protocol %s: scoring %s (rawDepths) instead of %s", self.protocol.name, raw, dataset
      )
      dataset, meta = raw, _meta_of(raw)
    for note in (protocol_mismatch(self.protocol, dataset), depth_source_note(self.protocol, meta)):
      if note:
        self.warnings.append(note)
    if settings.tta == "flip" and not bool(config.augment.get("flip", False)):
      self.warnings.append(
        "flip TTA on a model trained without horizontal-flip augmentation (config.augment.flip=False): "
        "on scenes that are not left-right symmetric it can lower the scores"
      )
    for w in self.warnings:
      _log.warning("%s", w)
    self.settings = settings
    self.config = config
    self.dataset = dataset
    self.meta = meta
    self.data_dir = data_dir or config.data_dir or None
    n_data = mesh.shape["data"]
    bs = int(settings.batch_size or config.eval.batch_size)
    self.batch_size = max(n_data, math.ceil(bs / n_data) * n_data)
    self.inference = predict.InferenceModel(
      model,
      input_size=tuple(config.image_size),
      mode=settings.mode,
      tta=settings.tta,
      train_resize=config.augment.get("resize", "cover"),
      tile_size=None if settings.tile_size is None else tuple(settings.tile_size),
      tile_combine=settings.tile_combine,
      **predict.conv_switches(
        config, pointwise_conv=settings.pointwise_conv, volume_conv=settings.volume_conv
      ),
    )
    self.num_classes = loop.resolved_num_classes(config)
    class_names = (
      meta.class_names
      if len(meta.class_names) == self.num_classes
      else tuple(f"class_{i}" for i in range(self.num_classes))
    )
    evaluator = JointEvaluator(
      self.protocol,
      num_classes=self.num_classes,
      class_names=class_names,
      ignore_index=meta.ignore_index,
    )
    self._run = loop.make_evaluate_fn(
      self.inference, evaluator, mesh, variables_shardings=variables_shardings
    )

  def iterator(self):
    """A fresh padded eval iterator over the split (``pipeline.make_eval_iterator``)."""
    from semdepth_jax.data import pipeline

    size = self.settings.image_size
    return pipeline.make_eval_iterator(
      self.dataset,
      data_dir=self.data_dir,
      split=self.settings.split,
      batch_size=self.batch_size,
      image_size=None if size is None else tuple(size),
      mode="resize",
      num_threads=int(self.config.data.num_threads),
      prefetch=int(self.config.data.prefetch),
    )

  def scalars(self, report: Mapping[str, Any]) -> dict[str, float]:
    """:func:`report_scalars` (the training loop logs these)."""
    return report_scalars(report)

  def run(self, variables: Any) -> dict[str, Any]:
    """Evaluates ``variables``; returns the report (see :func:`evaluate_workdir`) without run metadata."""
    iterator = self.iterator()
    try:
      results = self._run(variables, iterator, int(self.settings.max_batches))
    finally:
      close = getattr(iterator, "close", None)
      if callable(close):
        close()
    p = self.protocol
    warnings = list(self.warnings)
    empty = empty_split_warning(self.dataset, self.settings.split, p.name, results)
    if empty:
      _log.warning("%s", empty)
      warnings.append(empty)
    return {
      "dataset": self.dataset,
      "split": self.settings.split,
      "num_examples": results.pop("num_examples"),
      "protocol": {
        "name": p.name,
        "description": p.description,
        "reproduces": p.reproduces,
        "averaging": p.averaging,
        "min_depth": p.min_depth,
        "max_depth": p.max_depth,
        "crop": p.crop,
        "clip": list(p.accumulator().clip_range),
        "median_scaling": p.median_scaling,
        "resize": p.resize,
        "units": dict(p.units or {}),
      },
      "settings": {
        "model": type(self.inference.model).__name__,
        "model_input_size": list(self.inference.input_size),
        "mode": self.inference.mode,
        "tta": self.inference.tta or "none",
        "eval_image_size": None
        if self.settings.image_size is None
        else list(self.settings.image_size),
        "batch_size": self.batch_size,
        "max_batches": int(self.settings.max_batches),
        "tile_size": None if self.inference.tile_size is None else list(self.inference.tile_size),
        "tile_combine": self.inference.tile_combine,
        "pointwise_conv": self.inference.pointwise_conv,
        "volume_conv": self.inference.volume_conv,
      },
      "warnings": warnings,
      **results,
    }


def empty_split_warning(
  dataset: str, split: str, protocol: str, results: Mapping[str, Any]
) -> str | None:
  """A warning naming the split when an evaluation found nothing to score, else None.

  ``JointEvaluator.finish`` leaves out ``depth`` when no image had a pixel inside the protocol's range
  and ``segmentation`` when no pixel was labelled; with both missing the report would be an empty line.

  Args:
    dataset: TFDS name.
    split: the evaluated split.
    protocol: depth protocol name (its range decides which pixels count).
    results: ``JointEvaluator.finish`` output (``num_examples`` may be popped already).
  """
  if "depth" in results or "segmentation" in results:
    return None
  n = results.get("num_examples")
  seen = f"{n} example(s)" if n is not None else "the examples"
  return (
    f"evaluation of {dataset} [{split}]: no valid pixels in {seen} (no depth inside protocol "
    f"{protocol!r}'s range, no labelled pixel): nothing to report; check the split and the protocol"
  )


def report_scalars(report: Mapping[str, Any]) -> dict[str, float]:
  """The report's headline numbers as one flat dict.

  The protocol's depth keys and the segmentation metrics (``metrics.SEG_METRIC_KEYS``); heads that were not
  evaluated are left out.
  """
  out = {k: float(v) for k, v in report.get("depth", {}).items() if v is not None}
  seg = report.get("segmentation", {})
  out.update({k: float(seg[k]) for k in metrics.SEG_METRIC_KEYS if k in seg})
  return out


class ConstantModel(nn.Module, contract.DepthSegModel):
  """A trivial baseline: the same depth (metres) and the same class for every pixel.

  Follows the model-family contract, so it is evaluated through exactly the same :class:`Evaluation` as a
  trained model (the quickstart's "mean training depth" / "majority class" baselines).

  Attributes:
    depth: metres, predicted everywhere.
    label: class id predicted everywhere.
    num_classes: C.
  """

  depth: float
  label: int
  num_classes: int
  depth_output: str = "metres"

  @nn.compact
  def __call__(self, image: jax.Array, labels: jax.Array | None = None, *, train: bool = False):
    """(B, H, W, 3) -> ``{'depth': (B, H, W, 1), 'seg_logits': (B, H, W, C) one-hot * 10}``."""
    del labels, train
    b, h, w = image.shape[:3]
    onehot = jax.nn.one_hot(jnp.full((b, h, w), self.label), self.num_classes, dtype=jnp.float32)
    return {"depth": jnp.full((b, h, w, 1), self.depth, jnp.float32), "seg_logits": 10.0 * onehot}


def evaluate_workdir(
  workdir: str | os.PathLike,
  *,
  config: Any = None,
  step: int | None = None,
  split: str | None = None,
  protocol: str | None = None,
  tta: str | None = None,
  tile: bool = False,
  batch_size: int | None = None,
  image_size: tuple[int, int] | None = None,
  data_dir: str | None = None,
  max_batches: int = 0,
  tile_size: tuple[int, int] | None = None,
  tile_combine: str = "mean",
  out_dir: str | os.PathLike | None = None,
  write: bool = True,
  pointwise_conv: str | None = None,
  volume_conv: str | None = None,
) -> dict[str, Any]:
  """Evaluates a training workdir's checkpoint on a dataset split (:class:`Evaluation`).

  Args:
    workdir: training workdir.
    config: config override (``ConfigDict`` or ``PATH[:ARGS]``); default the workdir's ``config.json``.
    step: checkpoint step (default latest).
    split: split name or TFDS split expression (default ``config.eval.split``).
    protocol: standard-kind protocol name (default :func:`dataset_protocol`).
    tta: ``None``/``'none'`` or ``'flip'``.
    tile: tiles at the training scale instead of resizing the whole image to the model input.
    batch_size: global eval batch (default ``config.eval.batch_size``), rounded up to a multiple of the
      mesh's data axis.
    image_size: (H, W) to resize images and ground truth to before evaluating (default: stored size).
    data_dir: TFDS data dir (default ``config.data_dir`` or TFDS's).
    max_batches: stop after this many batches (0 = the whole split).
    tile_size: (h, w) tiles in image pixels with ``tile`` (default: the training scale); paper 001's
      Cityscapes protocol uses (321, 321) with ``tile_combine='max'`` (docs/model_spec.md §2.6).
    tile_combine: overlapping class scores with ``tile``: ``'mean'`` or ``'max'``.
    out_dir: where to write ``metrics.json`` / ``metrics.md`` (default
      ``workdir/eval/<EvalSettings.folder>``, one folder per split, protocol, mode, TTA and size).
    write: write the files (False: only return the report).
    pointwise_conv: 1x1 convolution switch (None: the config's; ``predict.conv_switches``).
    volume_conv: 3-D convolution switch (None: the config's).

  Returns:
    The report dict written to ``metrics.json`` (plus ``files``: paths written).

  Raises:
    FileNotFoundError: workdir without config/checkpoint, or the dataset is not built (with the command).
    KeyError: unknown protocol or dataset.
    ValueError: bad split, a non-standard protocol, bad sizes.
  """
  from semdepth_jax import predict
  from semdepth_jax.train import mesh as mesh_lib

  cfg = predict.load_config_for(workdir, config)
  try:
    mesh = mesh_lib.make_mesh(tuple(cfg.mesh_shape))
  except ValueError as e:
    _log.info(
      "config.mesh_shape %s does not fit this machine (%s); using (-1, 1)", cfg.mesh_shape, e
    )
    mesh = mesh_lib.make_mesh((-1, 1))
  trained = predict.load_trained(workdir, step=step, config=cfg, mesh=mesh)
  resolve_protocol(protocol, trained.meta)  # a bad --protocol is named before anything else
  split = split or cfg.eval.split
  if not split:
    raise ValueError("no split given and config.eval.split is empty; pass --split")
  settings = EvalSettings(
    split=split,
    protocol=protocol,
    mode="tile" if tile else "resize",
    tta=None if tta in (None, "none") else tta,
    image_size=None if image_size is None else tuple(image_size),
    batch_size=batch_size,
    max_batches=int(max_batches),
    tile_size=None if tile_size is None else tuple(tile_size),
    tile_combine=tile_combine,
    pointwise_conv=pointwise_conv,
    volume_conv=volume_conv,
  )
  evaluation = Evaluation(trained.model, cfg, settings, mesh=mesh, data_dir=data_dir)
  results = evaluation.run(trained.variables)
  results["settings"].update(
    model=cfg.model.name, depth_output=trained.depth_output, depth_norm=trained.depth_norm
  )
  report = {"workdir": trained.workdir, "step": trained.step, **results}
  if write:
    out = (
      os.fspath(out_dir)
      if out_dir
      else os.path.join(trained.workdir, "eval", settings.folder(evaluation.protocol.name))
    )
    report["files"] = write_report(report, out)
  return report


def write_report(report: Mapping[str, Any], out_dir: str | os.PathLike) -> list[str]:
  """Writes ``metrics.json`` and ``metrics.md`` into ``out_dir``; returns their paths."""
  out = os.fspath(out_dir)
  os.makedirs(out, exist_ok=True)
  jpath, mpath = os.path.join(out, "metrics.json"), os.path.join(out, "metrics.md")
  with open(jpath, "w", encoding="utf-8") as f:
    json.dump(_jsonable({k: v for k, v in report.items() if k != "files"}), f, indent=2)
    f.write("\n")
  with open(mpath, "w", encoding="utf-8") as f:
    f.write(format_markdown(report))
  return [jpath, mpath]


def _safe(split: str) -> str:
  """A folder name for a split expression (``train[:10]`` -> ``train_10``)."""
  keep = "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in split)
  return keep.strip("_") or "split"


def _jsonable(x: Any) -> Any:
  if isinstance(x, Mapping):
    return {str(k): _jsonable(v) for k, v in x.items()}
  if isinstance(x, list | tuple):
    return [_jsonable(v) for v in x]
  if isinstance(x, np.ndarray):
    return _jsonable(x.tolist())
  if isinstance(x, np.integer):
    return int(x)
  if isinstance(x, float | np.floating):
    x = float(x)
    return x if math.isfinite(x) else None
  return x


def _fmt(v: Any) -> str:
  if v is None:
    return "-"
  if isinstance(v, float):
    return "nan" if not math.isfinite(v) else f"{v:.4f}"
  return str(v)


def format_markdown(report: Mapping[str, Any]) -> str:
  """The report as Markdown: header, depth table, segmentation table, per-class tables."""
  p = report["protocol"]
  s = report["settings"]
  lines = [
    f"# Evaluation of {report['workdir']}",
    "",
    f"- step {report['step']}, dataset `{report['dataset']}`, split `{report['split']}`, "
    f"{report['num_examples']} examples",
    f"- model `{s['model']}` at {s['model_input_size'][0]}x{s['model_input_size'][1]}, mode "
    f"`{s['mode']}`, TTA `{s['tta']}`",
    f"- depth protocol `{p['name']}` ({p['averaging']}): {p['description']}",
    "",
  ]
  if "depth" in report:
    keys = list(report["depth"])
    units = p.get("units") or {}
    lines += ["## Depth", "", "| " + " | ".join(keys) + " |", "|" + "---|" * len(keys)]
    lines.append("| " + " | ".join(_fmt(report["depth"][k]) for k in keys) + " |")
    lines.append("")
    shown = [f"{k}: {units[k]}" for k in keys if k in units]
    if shown:
      lines += ["Units: " + ", ".join(shown) + ".", ""]
  if "segmentation" in report:
    seg = report["segmentation"]
    keys = list(metrics.SEG_METRIC_KEYS)
    lines += ["## Segmentation", "", "| " + " | ".join(keys) + " |", "|" + "---|" * len(keys)]
    lines.append("| " + " | ".join(_fmt(seg[k]) for k in keys) + " |")
    lines += ["", "| class | IoU | accuracy |", "|---|---|---|"]
    for name, iou in seg["iou_per_class"].items():
      acc = seg["class_acc"].get(name)
      if iou is None and acc is None:
        continue
      lines.append(f"| {name} | {_fmt(iou)} | {_fmt(acc)} |")
    lines.append("")
  if report.get("depth_per_class"):
    lines += [
      "## Depth error per semantic class (pooled over the class's pixels)",
      "",
      "| class | pixels | " + " | ".join(PER_CLASS_DEPTH_KEYS) + " |",
      "|---|---|" + "---|" * len(PER_CLASS_DEPTH_KEYS),
    ]
    for name, vals in report["depth_per_class"].items():
      row = " | ".join(_fmt(vals[k]) for k in PER_CLASS_DEPTH_KEYS)
      lines.append(f"| {name} | {vals['num_pixels']} | {row} |")
    lines.append("")
  return "\n".join(lines)


# ----------------------------------------------------------------------------------------------------------
# CLI.


def _parse_size(text: str) -> tuple[int, int]:
  try:
    h, w = (int(v) for v in text.replace("x", ",").split(","))
  except ValueError:
    raise argparse.ArgumentTypeError(f"expected H,W (two integers), got {text!r}") from None
  if h < 1 or w < 1:
    raise argparse.ArgumentTypeError(f"sizes must be positive, got {text!r}")
  return h, w


def add_parser(subparsers) -> argparse.ArgumentParser:
  """Registers the ``evaluate`` sub-command (see ``semdepth_jax.main``)."""
  p = subparsers.add_parser(
    "evaluate",
    help="evaluate a trained workdir on a dataset split",
    description=(
      "Compiled, sharded evaluation of a training workdir's checkpoint on a whole dataset split: depth "
      "metrics under a protocol, segmentation metrics with per-class IoU, depth error per semantic class."
    ),
    epilog="Depth protocols: "
    + ", ".join(sorted(k for k, v in metrics.PROTOCOLS.items() if v.kind == "standard"))
    + ". Writes metrics.json and metrics.md to DIR/eval/<split>/<protocol>/<mode>[+flip][@HxW]/.",
  )
  p.add_argument("--workdir", default=None, help="training workdir (config.json + checkpoints/)")
  p.add_argument("--config", default=None, help="config PATH[:ARGS] (default: the workdir's)")
  p.add_argument("--step", type=int, default=None, help="checkpoint step (default: latest)")
  p.add_argument("--split", default=None, help="split (default: config.eval.split)")
  p.add_argument("--protocol", default=None, help="depth protocol (default: the dataset's)")
  p.add_argument("--tta", choices=("none", "flip"), default="none", help="test-time augmentation")
  p.add_argument("--tile", action="store_true", help="sliding-window tiles of the training size")
  p.add_argument(
    "--tile_size", type=_parse_size, default=None, help="with --tile: tiles of H,W image pixels"
  )
  p.add_argument(
    "--tile_combine",
    choices=("mean", "max"),
    default="mean",
    help="with --tile: overlapping class scores averaged (default) or their maximum (paper 001)",
  )
  p.add_argument("--batch_size", type=int, default=None, help="global batch (default: config's)")
  p.add_argument(
    "--image_size", type=_parse_size, default=None, help="resize images and GT to H,W first"
  )
  p.add_argument("--data_dir", default=None, help="TFDS data dir (default: config's or TFDS's)")
  p.add_argument("--max_batches", type=int, default=0, help="stop after N batches (0 = all)")
  p.add_argument(
    "--out", default=None, help="output folder (default: DIR/eval/<split>/<protocol>/<mode>...)"
  )
  from semdepth_jax import predict, routed

  predict.add_conv_arguments(p)
  routed.add_arguments(p, evaluate=True)
  p.set_defaults(func=run)
  return p


def run(args: argparse.Namespace) -> int:
  """Handler of ``semdepth evaluate``: 0 on success, 2 on a user error (message on stderr)."""
  if args.router is not None:
    from semdepth_jax import routed

    return routed.run_evaluate(args)
  if not args.workdir:
    print(
      "semdepth evaluate: error: --workdir is required (or --router with --low, --high)",
      file=sys.stderr,
    )
    return 2
  from semdepth_jax.train.checkpoint import CheckpointDamagedError

  try:
    report = evaluate_workdir(
      args.workdir,
      config=args.config,
      step=args.step,
      split=args.split,
      protocol=args.protocol,
      tta=args.tta,
      tile=args.tile,
      batch_size=args.batch_size,
      image_size=args.image_size,
      data_dir=args.data_dir,
      max_batches=args.max_batches,
      tile_size=args.tile_size,
      tile_combine=args.tile_combine,
      out_dir=args.out,
      pointwise_conv=args.pointwise_conv,
      volume_conv=args.volume_conv,
    )
  except (FileNotFoundError, KeyError, ValueError, CheckpointDamagedError) as e:
    msg = e.args[0] if isinstance(e, KeyError) and e.args else str(e)
    print(f"semdepth evaluate: error: {msg}", file=sys.stderr)
    return 2
  print(format_markdown(report))
  for f in report.get("files", []):
    print(f"wrote {f}")
  return 0
