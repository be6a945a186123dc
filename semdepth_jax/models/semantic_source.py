"""Where a depth model's semantic input comes from: ground truth, a trained segmentation model, or nothing.

Papers 000 and 003 feed semantics into depth networks: paper 000 stacks one-hot planes (OHESS) after the RGB
image (ground truth while training, its U-Net's output at inference; docs/model_spec.md §1.2-§1.5), paper 003
extends the encoder's first convolution by one-hot, id, contour or convolved id planes built from the
ground-truth labels (§4.3). This module is the one place that decides where those semantics come from; the
models only encode them (:meth:`SemanticSource.planes` for one-hot planes, :attr:`Semantics.labels` for
per-pixel ids).

========== =========================================================================================
source     what the model receives
========== =========================================================================================
``gt``     the batch's ground-truth labels (``labels=`` of the model call; the training loop and the
           evaluation pass ``batch['segmentation']``, resized nearest to the model input)
``predicted`` the class scores of a segmentation network: the owning model's own network when it passes
           ``logits=`` (SSegDep-Net's U-Net), else a trained run loaded from ``workdir`` (any registered
           model with a ``seg_logits`` output and the same label set; restored with
           ``semdepth_jax.predict.load_trained``, run in inference mode, no gradient)
``none``   no semantic input (paper 003's baseline, paper 000's RGB-only SCRX)
========== =========================================================================================

A frozen predictor's variables are closed over by the model (constants of the compiled step), not stored in
its parameters: the same trained depth model can therefore be evaluated with ground-truth or predicted
semantics by changing only ``config.model``'s source, and its checkpoint never holds the predictor. The
predictor's workdir must stay readable; its restored variables are cached per (workdir, step) in the
process.

Predicted scores become one-hot planes by ``mode`` (``semdepth_jax.models.ohess.ohess_from_logits``:
``'argmax'`` one-hot of the best class, paper 000's ``'threshold'`` on per-class sigmoids, or the
differentiable ``'softmax'`` / ``'sigmoid'``); ids come from the arg-max. Ground-truth planes follow
``ohess_from_labels`` (ignored pixels all-zero, or paper 000's ``'plane0'``).
"""

from __future__ import annotations

import dataclasses
import functools
import os
from collections.abc import Mapping, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from semdepth_jax.data.meta import IGNORE_INDEX
from semdepth_jax.models import ohess as ohess_lib

Array = jax.Array

SOURCES = ("gt", "predicted", "none")
"""Accepted ``source`` values (see the module docstring)."""

CONFIG_KEYS = ("source", "workdir", "step", "mode", "threshold")
"""Keys of a semantic-source config mapping (the fields of :class:`SemanticSource`)."""


@dataclasses.dataclass(frozen=True)
class Semantics:
  """Semantic evidence for one batch.

  Attributes:
    labels: (B, H, W) int32 training ids ``0 .. C - 1`` (``IGNORE_INDEX`` = unknown); the arg-max of
      ``logits`` for predicted semantics.
    logits: (B, H, W, C) float32 class scores for predicted semantics, else None.
    source: ``'gt'`` or ``'predicted'``.
  """

  labels: Array
  logits: Array | None
  source: str


@dataclasses.dataclass(frozen=True)
class SemanticSource:
  """Configuration of a model's semantic input (see the module docstring).

  Models take it as a nested config mapping (``config.model.semantic_source = {'source': 'predicted',
  'workdir': ..., 'mode': 'argmax'}``) and call :meth:`from_config`.

  Attributes:
    source: one of :data:`SOURCES`.
    workdir: training workdir of the segmentation model (``source='predicted'`` without an owner network).
    step: checkpoint step of ``workdir`` (None = the latest).
    mode: how predicted scores become one-hot planes (``ohess.OHESS_MODES``).
    threshold: probability threshold of ``mode='threshold'``.

  Raises:
    ValueError: unknown ``source`` / ``mode``.
  """

  source: str = "gt"
  workdir: str | None = None
  step: int | None = None
  mode: str = "argmax"
  threshold: float = 0.5

  def __post_init__(self):
    if self.source not in SOURCES:
      raise ValueError(f"semantic_source.source must be one of {SOURCES}, got {self.source!r}")
    if self.mode not in ohess_lib.OHESS_MODES:
      raise ValueError(
        f"semantic_source.mode must be one of {ohess_lib.OHESS_MODES}, got {self.mode!r}"
      )

  @classmethod
  def from_config(
    cls, cfg: Mapping[str, Any] | SemanticSource | str | None, *, default: str = "gt", where: str
  ) -> SemanticSource:
    """Builds a source from a model attribute: a mapping, a source name, an instance or None.

    Args:
      cfg: ``{'source': ..., 'workdir': ..., ...}`` (keys :data:`CONFIG_KEYS`), a source name, a
        :class:`SemanticSource`, or None for ``SemanticSource(default)``.
      default: the source of ``None``.
      where: model name for error messages.

    Raises:
      ValueError: unknown keys or values (the message names ``where`` and the valid choices).
    """
    if cfg is None:
      return cls(source=default)
    if isinstance(cfg, SemanticSource):
      return cfg
    if isinstance(cfg, str):
      cfg = {"source": cfg}
    cfg = dict(cfg)
    unknown = sorted(set(cfg) - set(CONFIG_KEYS))
    if unknown:
      raise ValueError(
        f"{where}: semantic_source has unknown keys {unknown}; known: {', '.join(CONFIG_KEYS)}"
      )
    try:
      return cls(**cfg)
    except ValueError as e:
      raise ValueError(f"{where}: {e}") from None

  @property
  def active(self) -> bool:
    """Whether the model receives semantics at all (``source != 'none'``)."""
    return self.source != "none"

  def resolve(
    self,
    image: Array,
    labels: Array | None = None,
    *,
    logits: Array | None = None,
    num_classes: int,
    initializing: bool = False,
    where: str,
  ) -> Semantics | None:
    """The batch's semantics from the configured source.

    Args:
      image: (B, H, W, 3) float RGB in [0, 1] (the predictor's input).
      labels: (B, H, W) integer training ids (``source='gt'``).
      logits: (B, h, w, C) scores of the owning model's own segmentation network (``'predicted'``);
        without them ``workdir``'s model predicts.
      num_classes: the label set size C the consumer expects.
      initializing: inside ``model.init``: missing ground truth becomes all-ignored labels (only shapes
        matter there).
      where: model name for error messages.

    Returns:
      :class:`Semantics` at (B, H, W), or None for ``source='none'``.

    Raises:
      ValueError: missing labels / predictor, a predictor with another class count, or bad shapes.
    """
    if self.source == "none":
      return None
    B, H, W = image.shape[:3]
    if self.source == "gt":
      if labels is None:
        if not initializing:
          raise ValueError(
            f"{where}: semantic_source 'gt' needs labels=(B, H, W) int32 training ids (the batch's "
            "ground truth); or use source 'predicted' with a segmentation workdir"
          )
        labels = jnp.full((B, H, W), IGNORE_INDEX, jnp.int32)
      labels = jnp.asarray(labels)
      if tuple(labels.shape) != (B, H, W):
        raise ValueError(f"{where}: labels must be (B, H, W) = {(B, H, W)}, got {labels.shape}")
      if not jnp.issubdtype(labels.dtype, jnp.integer):
        raise ValueError(
          f"{where}: labels must be integer (B, H, W) training ids, got {labels.dtype} {labels.shape}"
        )
      return Semantics(labels.astype(jnp.int32), None, "gt")
    if logits is None:
      if not self.workdir:
        raise ValueError(
          f"{where}: semantic_source 'predicted' needs workdir= (a trained segmentation run) when the "
          "model has no segmentation network of its own"
        )
      logits = predict_logits(self.workdir, image, step=self.step, where=where)
    logits = jnp.asarray(logits, jnp.float32)
    if logits.ndim != 4 or logits.shape[0] != B or logits.shape[-1] != num_classes:
      raise ValueError(
        f"{where}: predicted semantics must be (B, h, w, {num_classes}) class scores, got "
        f"{logits.shape}" + (f" from {self.workdir}" if self.workdir else "")
      )
    if tuple(logits.shape[1:3]) != (H, W):
      logits = jax.image.resize(logits, (B, H, W, num_classes), method="bilinear", antialias=False)
    return Semantics(jnp.argmax(logits, axis=-1).astype(jnp.int32), logits, "predicted")

  def planes(
    self,
    sem: Semantics,
    num_classes: int,
    classes: Sequence[int] | None = None,
    *,
    ignore_mode: str = "zero",
  ) -> Array:
    """One-hot planes (B, H, W, P) of ``sem`` for the selected classes (P = len(classes) or C).

    Ground truth: ``ohess.ohess_from_labels`` with ``ignore_mode``; predicted: ``ohess.ohess_from_logits``
    with this source's ``mode`` / ``threshold``.
    """
    if sem.logits is not None:
      return ohess_lib.ohess_from_logits(sem.logits, self.mode, classes, threshold=self.threshold)
    return ohess_lib.ohess_from_labels(sem.labels, num_classes, classes, ignore_mode=ignore_mode)


# ---------------------------------------------------------------------------------------------------------
# A trained segmentation model as the source.
# ---------------------------------------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class Predictor:
  """A restored segmentation model (numpy variables) used as a semantic source.

  Attributes:
    model: the workdir's base model.
    variables: ``{'params', 'batch_stats'}`` as numpy arrays (closed over as constants).
    num_classes: its segmentation classes.
    workdir: absolute path.
    step: the restored checkpoint step.
  """

  model: Any
  variables: Any
  num_classes: int
  workdir: str
  step: int


@functools.lru_cache(maxsize=8)
def _load_predictor(workdir: str, step: int | None) -> Predictor:
  from semdepth_jax import predict

  # The first load may happen while a model is being traced (init inside jit); restore eagerly.
  with jax.ensure_compile_time_eval():
    trained = predict.load_trained(workdir, step=step)
    variables = jax.tree.map(np.asarray, jax.device_get(trained.variables))
  model = trained.model
  if "seg_logits" not in getattr(model, "OUTPUTS", ("seg_logits",)):
    raise ValueError(
      f"{workdir}: its model {type(model).__name__} has no seg_logits output, so it cannot supply "
      "predicted semantics"
    )
  return Predictor(model, variables, trained.num_classes, workdir, trained.step)


def load_predictor(workdir: str | os.PathLike, step: int | None = None) -> Predictor:
  """The segmentation model of a training workdir, restored once per process (cached).

  The predictor only ever sees the image (never ``labels=``); a model that needs ground truth to run
  fails with its own error when it is applied.

  Raises:
    FileNotFoundError: not a workdir / no checkpoint (from ``predict.load_trained``).
    ValueError: the model has no ``seg_logits`` output.
  """
  return _load_predictor(os.path.abspath(os.fspath(workdir)), None if step is None else int(step))


def predict_logits(
  workdir: str | os.PathLike, image: Array, *, step: int | None = None, where: str = "model"
) -> Array:
  """Class scores (B, h, w, C) float32 of ``workdir``'s model on ``image`` (inference mode, no gradient).

  The image is used at its own size (the segmentation models are fully convolutional); the caller resizes
  the scores if the model's output size differs.
  """
  pred = load_predictor(workdir, step)
  out = pred.model.apply(pred.variables, image.astype(jnp.float32), train=False)
  if "seg_logits" not in out:
    raise ValueError(f"{where}: {workdir}'s model returned no seg_logits (outputs {sorted(out)})")
  return jax.lax.stop_gradient(jnp.asarray(out["seg_logits"], jnp.float32))
