"""SSegDep-Net: U-Net -> OHESS -> 3D CNN-UP (paper 000 §3.3, Fig. 9; docs/model_spec.md §1.5).

The paper trains the two modules separately and only composes them for inference. One module,
:class:`SSegDepNet`, covers every stage with a single, fixed parameter tree: top-level submodules ``unet``
(:class:`~semdepth_jax.models.unet.UNet`) and ``depth_net`` (:class:`~semdepth_jax.models.cnn3d.CNN3DUP`).
``init`` always creates both subtrees (in ``params`` and ``batch_stats``), whatever the stage, so a
checkpoint of one stage restores into the next and an optax mask on the top-level names freezes a part.

=================== ==================================== ============================================
stage               configuration                        what runs / outputs
=================== ==================================== ============================================
1 segmentation      ``stage='seg'``                      U-Net only: ``seg_logits``, ``aux.seg_probs``
2 depth (paper)     ``ohess_source='gt'``, ``labels``    3D CNN-UP on ground-truth OHESS; U-Net not run:
                                                         ``depth``, ``aux.ohess``
inference (paper)   ``ohess_source='unet'`` (default),   U-Net -> per-class sigmoid > 0.5 -> 3D CNN-UP:
                    ``ohess_mode='threshold'``           ``depth``, ``seg_logits``, ``aux``
end-to-end (option) ``ohess_source='unet'``,             same path with differentiable softmax (or
                    ``ohess_mode='softmax'``             sigmoid) planes, so depth gradients reach the
                                                         U-Net
=================== ==================================== ============================================

Freezing: with the optax mask ``{'unet': ..., 'depth_net': ...}`` on the top-level keys of ``params``
(e.g. ``optax.multi_transform({'train': tx, 'freeze': optax.set_to_zero()}, labels)``). Stage 1 can
equally train the registered ``'unet'`` model: its parameter tree is exactly ``params['unet']`` (and
``batch_stats['unet']``) of this model with the same ``num_classes`` / widths, so it can be inserted.
In the stages where a submodule does not run, its gradients are zero and its BatchNorm statistics are
returned unchanged.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from semdepth_jax.models import ohess as ohess_lib
from semdepth_jax.models import semantic_source as source_lib
from semdepth_jax.models.cnn3d import CNN3DUP
from semdepth_jax.models.contract import DepthSegModel
from semdepth_jax.models.unet import UNet

Array = jax.Array

STAGES = ("full", "seg")
OHESS_SOURCES = ("unet", "gt")

# Submodule attributes SSegDepNet sets itself (not accepted in the nested sub-configs).
_UNET_OWN = ("num_classes", "dtype", "name", "parent")
_DEPTH_NET_OWN = (
  "num_classes",
  "ohess_classes",
  "ohess_ignore",
  "final_activation",
  "depth_output",
  "max_depth",
  "depth_norm",
  "depth_prior",
  "dtype",
  "name",
  "parent",
)
# Flat attributes of configs written before the nested sub-configs -> (sub-config, attribute).
_LEGACY_ATTRIBUTES = {
  "unet_base_width": ("unet", "base_width"),
  "unet_dropout_rate": ("unet", "dropout_rate"),
  "depth_widths": ("depth_net", "widths"),
  "depth_bottleneck_width": ("depth_net", "bottleneck_width"),
  "depth_up_widths": ("depth_net", "up_widths"),
  "depth_dropout_rate": ("depth_net", "dropout_rate"),
  "depth_dropout_placement": ("depth_net", "dropout_placement"),
  "paper_output_size": ("depth_net", "paper_output_size"),
  "depth_conv_transpose_impl": ("depth_net", "conv_transpose_impl"),
}


def _sub_config(
  key: str, values: Mapping[str, Any] | None, cls: type, own: Sequence[str]
) -> dict[str, Any]:
  """``values`` checked against ``cls``'s attributes; lists become tuples (JSON round trips)."""
  values = dict(values or {})
  valid = sorted(f.name for f in dataclasses.fields(cls) if f.name not in own)
  unknown = sorted(set(values) - set(valid))
  if unknown:
    raise TypeError(f"ssegdepnet.{key}: unknown attribute(s) {unknown}; valid: {valid}")
  return {k: tuple(v) if isinstance(v, list) else v for k, v in values.items()}


class SSegDepNet(nn.Module, DepthSegModel):
  """SSegDep-Net (paper 000; docs/model_spec.md §1.5), staged as described in the module docstring.

  Call: ``model.apply(variables, image, labels=None, train=..., mutable=['batch_stats'],
  rngs={'dropout': key})``. Parameter count at the defaults: 35,415,887 trainable (U-Net 34,525,966 +
  3D CNN-UP 889,921) + 12,928 batch statistics.

  Attributes:
    num_classes: segmentation classes = U-Net outputs (dataset meta info; 14 in paper 000).
    ohess_classes: class ids that get an OHESS plane (e.g. top-N); ``None`` = all. Sets the depth net's
      input depth 3 + P.
    stage: ``'full'`` (depth path; default) or ``'seg'`` (stage 1: U-Net only, no depth output).
    ohess_source: ``'unet'`` (OHESS from the U-Net; inference / fine-tuning) or ``'gt'`` (from ``labels``;
      stage-2 training, the U-Net is skipped).
    ohess_mode: how U-Net logits become planes: ``'threshold'`` (reference: sigmoid > 0.5 per class),
      ``'argmax'``, ``'softmax'`` or ``'sigmoid'`` (differentiable); see
      :func:`semdepth_jax.models.ohess.ohess_from_logits`.
    ohess_ignore: ground-truth OHESS of ignored pixels, ``'zero'`` or ``'plane0'``.
    unet: attributes of the :class:`~semdepth_jax.models.unet.UNet` submodule (nested sub-config), e.g.
      ``{'base_width': 64, 'dropout_rate': 0.05}`` (the defaults); ``num_classes`` and the transposed-conv
      implementation come from this model.
    depth_net: attributes of the :class:`~semdepth_jax.models.cnn3d.CNN3DUP` submodule (nested
      sub-config), e.g. ``{'widths': (64, 64, 64), 'bottleneck_width': 64, 'up_widths': (64, 64),
      'dropout_rate': 0.0, 'dropout_placement': 'after_pool', 'paper_output_size': False,
      'conv_transpose_impl': 'resize_conv'}`` (its own defaults otherwise); classes, OHESS options and the
      depth-head attributes below come from this model.
    final_activation: depth head activation (``'relu'``, code).
    depth_output: ``'metres'`` (default) or ``'inverted_normalised'`` (paper 000's target convention).
    max_depth: metres scale of a sigmoid depth head when ``depth_output='metres'``.
    depth_norm: metres, saturation distance of ``'inverted_normalised'`` output (paper 000: the dataset's
      ``max_depth``); read by ``decode`` (docs/model_spec.md §1.0).
    depth_prior: metres, typical depth of the data; ``'log'`` heads are offset by its log (see
      ``layers.depth_head_output``).
    conv_transpose_impl: transposed-conv implementation of both submodules (see ``layers``); a
      ``depth_net['conv_transpose_impl']`` overrides it for the 3D CNN-UP (the small / tiny presets use
      ``'resize_conv'`` there and keep the U-Net's).
    dtype: computation dtype.
  """

  INPUTS = ("image", "labels")
  OUTPUTS = ("depth", "seg_logits", "aux")

  num_classes: int = 14
  ohess_classes: tuple[int, ...] | None = None
  stage: str = "full"
  ohess_source: str = "unet"
  ohess_mode: str = "threshold"
  ohess_ignore: str = "zero"
  unet: Mapping[str, Any] | None = None
  depth_net: Mapping[str, Any] | None = None
  final_activation: str = "relu"
  depth_output: str = "metres"
  max_depth: float | None = None
  depth_norm: float | None = None
  depth_prior: float | None = None
  conv_transpose_impl: str = "depth_to_space"
  dtype: Any = jnp.float32

  @classmethod
  def upgrade_kwargs(cls, kwargs: dict[str, Any]) -> dict[str, Any]:
    """Moves the flat ``unet_*`` / ``depth_*`` attributes of earlier configs into the nested sub-configs.

    Workdirs written before the sub-configs existed keep loading (``semdepth evaluate`` / ``predict``).
    """
    kwargs = dict(kwargs)
    for old, (sub, new) in _LEGACY_ATTRIBUTES.items():
      if old in kwargs:
        value = kwargs.pop(old)
        if value is not None:
          kwargs[sub] = {**(kwargs.get(sub) or {}), new: value}
    return kwargs

  def setup(self):
    """Validates the options and creates the ``unet`` and ``depth_net`` submodules."""
    if self.stage not in STAGES:
      raise ValueError(f"ssegdepnet: stage must be one of {STAGES}, got {self.stage!r}")
    if self.ohess_source not in OHESS_SOURCES:
      raise ValueError(
        f"ssegdepnet: ohess_source must be one of {OHESS_SOURCES}, got {self.ohess_source!r}"
      )
    if self.ohess_mode not in ohess_lib.OHESS_MODES:
      raise ValueError(
        f"ssegdepnet: ohess_mode must be one of {ohess_lib.OHESS_MODES}, got {self.ohess_mode!r}"
      )
    ohess_lib.check_classes(self.ohess_classes, self.num_classes, "ssegdepnet")
    unet = _sub_config("unet", self.unet, UNet, _UNET_OWN)
    depth_net = _sub_config("depth_net", self.depth_net, CNN3DUP, _DEPTH_NET_OWN)
    self.unet_module = UNet(
      num_classes=self.num_classes,
      conv_transpose_impl=self.conv_transpose_impl,
      dtype=self.dtype,
      name="unet",
      **unet,
    )
    self.depth_net_module = CNN3DUP(
      **{"conv_transpose_impl": self.conv_transpose_impl, **depth_net},
      num_classes=self.num_classes,
      ohess_classes=self.ohess_classes,
      ohess_ignore=self.ohess_ignore,
      final_activation=self.final_activation,
      depth_output=self.depth_output,
      max_depth=self.max_depth,
      depth_norm=self.depth_norm,
      depth_prior=self.depth_prior,
      dtype=self.dtype,
      name="depth_net",
    )

  def __call__(self, image: Array, labels: Array | None = None, *, train: bool = False) -> dict:
    """Runs the configured stage.

    Args:
      image: (B, H, W, 3) float32 RGB in [0, 1]; H, W divisible by 16 (192x320 in the paper).
      labels: (B, H, W) int32 training ids (255 = ignore); required for ``ohess_source='gt'`` outside
        ``init``.
      train: training mode (dropout, BatchNorm batch statistics) for the submodules that run.

    Returns:
      ``stage='seg'``: ``{'seg_logits': (B, H, W, C), 'aux': {'seg_probs'}}``.
      ``ohess_source='unet'``: ``{'depth': (B, h, w, 1), 'seg_logits', 'aux': {'seg_probs', 'ohess'}}``.
      ``ohess_source='gt'``: ``{'depth', 'aux': {'ohess'}}``. ``depth`` is float32, 184x312 for 192x320
      input (or H x W with ``paper_output_size``), units per ``depth_output``; ``aux['ohess']`` is the
      (B, H, W, P) planes fed to the depth net.

    Raises:
      ValueError: unknown options, bad shapes, or missing ``labels`` with ``ohess_source='gt'``.
    """
    ohess_lib.check_image(image, "ssegdepnet")
    init = self.is_initializing()
    seg = None
    if init or self.stage == "seg" or self.ohess_source == "unet":
      seg = self.unet_module(image, train=train)
    if self.stage == "seg" and not init:
      return seg

    # The planes come through the library's one semantic-source mechanism: ground truth ('gt') or the
    # U-Net's own scores ('unet' = source 'predicted' with this model's logits).
    gt = self.ohess_source == "gt"
    if gt and labels is None and not init:
      raise ValueError(
        "ssegdepnet: ohess_source='gt' (stage-2 training) needs labels=(B, H, W) int32 training ids"
      )
    source = source_lib.SemanticSource("gt" if gt else "predicted", mode=self.ohess_mode)
    sem = source.resolve(
      image,
      labels if gt else None,
      logits=None if gt else seg["seg_logits"],
      num_classes=self.num_classes,
      initializing=init,
      where="ssegdepnet",
    )
    planes = source.planes(sem, self.num_classes, self.ohess_classes, ignore_mode=self.ohess_ignore)
    out = self.depth_net_module(image, train=train, ohess=planes)
    if self.stage == "seg":  # Only reached in init: both subtrees exist, the output is stage 1's.
      return seg
    aux = {"ohess": planes}
    if self.ohess_source == "gt":
      return {"depth": out["depth"], "aux": aux}
    aux["seg_probs"] = seg["aux"]["seg_probs"]
    return {"depth": out["depth"], "seg_logits": seg["seg_logits"], "aux": aux}
