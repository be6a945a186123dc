"""3-D depth CNNs of paper 000: 3D CNN-S and 3D CNN-UP (paper §3.2, Fig. 7-8; model_spec §1.3, §1.4).

Both read the RGB image and its OHESS planes stacked along the *depth* axis of a one-channel volume,
(B, D, H, W, 1) NDHWC with D = 3 + P (17 in the paper: R, G, B, then 14 class planes; see
:func:`semdepth_jax.models.ohess.rgb_ohess_volume`). All kernels are 3x3x3; every convolution has a bias;
Keras layer order ``Conv3D(..., activation='relu')`` then ``BatchNormalization()``.

3D CNN-S (reference ``Depth estimation CNNs/3D CNN-S``), 17x192x320 input:

=========================================================================== ==================
layers                                                                      out (D, H, W, C)
=========================================================================== ==================
conv 64 ReLU -> conv 64 ReLU -> BN -> maxpool 2x2x2                         8x96x160x64
conv 64 ReLU -> conv 64 ReLU -> BN -> maxpool 2x2x2                         4x48x80x64
conv 128 ReLU -> conv 128 ReLU                                              4x48x80x128
conv 1 **'valid'**, final activation (sigmoid; "relu" variant)               2x46x78x1
maxpool over the remaining depth (code: pool (2, 1, 1))                     1x46x78x1
=========================================================================== ==================

3D CNN-UP (reference ``3D CNN-UP``; the code's 7 conv + 3 deconv, docs/model_spec.md §11 item 3):

==== ====================================================================== ==================
#    layer                                                                   out (D, H, W, C)
==== ====================================================================== ==================
c1-2 2 x (conv 64 'same' ReLU, BN); maxpool 2x2x2                            8x96x160x64
c3-4 2 x (conv 64 'same' ReLU, BN); maxpool 2x2x2                            4x48x80x64
c5-6 2 x (conv 64 'same' ReLU, BN)                                           4x48x80x64
c7   conv 64 **'valid'** ReLU; maxpool (depth: all remaining; H, W: 2); BN    1x23x39x64
d1   ConvTranspose 64, k3, strides (1, 2, 2), 'same', ReLU, BN               1x46x78x64
d2   ConvTranspose 64, strides (1, 2, 2), 'same', ReLU, BN                   1x92x156x64
d3   ConvTranspose 1, strides (1, 2, 2), 'same', final activation (ReLU)     1x184x312x1
==== ====================================================================== ==================

Generalisations (identical to the code for D = 17): the last depth pooling takes the maximum over all
remaining planes (the code pools 2 planes into 1), so any D >= 12 works and the output always has one
plane; volumes with D < 12 (fewer than 9 OHESS planes) are padded with all-zero planes to D = 12
(:data:`MIN_VOLUME_DEPTH`), a zero plane being exactly what an absent class looks like.

Deviations: per-channel BatchNorm (the reference's Keras BN on channels-first tensors normalises per
column; model_spec §1.0); the paper's bilinear upsampling to the input size (model_spec §11 items 2-3) is
the ``paper_output_size`` option, off by default like the code.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from semdepth_jax.models import layers
from semdepth_jax.models import ohess as ohess_lib
from semdepth_jax.models.contract import DepthSegModel

Array = jax.Array

MIN_VOLUME_DEPTH = 12
"""Smallest RGB+OHESS volume depth both 3-D nets accept; shallower volumes are zero-padded to it."""

DROPOUT_PLACEMENTS = ("after_pool", "after_conv")
"""Where 3D CNN-UP's optional dropout goes (the paper does not say; docs/model_spec.md §1.4)."""


def _volume(module: nn.Module, image, labels, ohess, where: str) -> Array:
  ohess_lib.check_image(image, where)
  planes = ohess_lib.resolve_planes(
    image,
    labels,
    ohess,
    num_classes=module.num_classes,
    classes=module.ohess_classes,
    ignore_mode=module.ohess_ignore,
    initializing=module.is_initializing(),
    where=where,
    source=module.semantic_source,
  )
  vol = ohess_lib.rgb_ohess_volume(image.astype(jnp.float32), planes, MIN_VOLUME_DEPTH)
  return vol.astype(module.dtype)


def _conv3(features: int, dtype, name: str, padding: str = "same") -> layers.Conv:
  return layers.Conv(features, (3, 3, 3), padding=padding, dtype=dtype, name=name)


class CNN3DS(nn.Module, DepthSegModel):
  """3D CNN-S: a LeNet-like 3-D depth CNN on the RGB+OHESS volume (paper 000; model_spec §1.3).

  Call: ``model.apply(variables, image, labels, train=..., mutable=['batch_stats'])``; OHESS planes come
  from ``labels`` (ground truth, as the paper trains and tests the 3-D nets) or from ``ohess=``.

  Submodules: ``conv1`` .. ``conv6``, ``bn1``, ``bn2``, ``out``. Parameter count at the defaults:
  1,001,281 trainable + 256 batch statistics.

  Attributes:
    num_classes: training ids of the dataset (meta info); 14 in paper 000.
    ohess_classes: class ids that get a plane; ``None`` = all ``num_classes``.
    ohess_ignore: ``'zero'`` or ``'plane0'``, see :func:`semdepth_jax.models.ohess.ohess_from_labels`.
    semantic_source: where the OHESS planes come from (``semdepth_jax.models.semantic_source``; None =
      ground-truth ``labels``, as the paper; ``{'source': 'predicted', 'workdir': W}`` = a trained
      segmentation run's predictions).
    widths: widths of the three two-conv stages (64, 64, 128).
    final_activation: ``'sigmoid'`` (code; paper's 3D CNN-S^sigm, default) or ``'relu'`` (3D CNN-S^relu).
    depth_output: ``'inverted_normalised'`` (default; paper 000's [0, 1] target) or ``'metres'`` (a
      sigmoid head then needs ``max_depth``).
    max_depth: metres scale of a sigmoid head when ``depth_output='metres'``.
    depth_norm: metres, saturation distance of ``'inverted_normalised'`` output (paper 000: the dataset's
      ``max_depth``); read by ``decode`` (docs/model_spec.md §1.0).
    depth_prior: metres, typical depth of the data; ``'log'`` heads are offset by its log (see
      ``layers.depth_head_output``).
    paper_output_size: bilinearly upsample the output to the input size (paper) instead of 46x78 (code).
    dtype: computation dtype.
  """

  INPUTS = ("image", "labels")
  OUTPUTS = ("depth", "aux")

  num_classes: int = 14
  ohess_classes: tuple[int, ...] | None = None
  ohess_ignore: str = "zero"
  semantic_source: Mapping[str, Any] | str | None = None
  widths: Sequence[int] = (64, 64, 128)
  final_activation: str = "sigmoid"
  depth_output: str = "inverted_normalised"
  max_depth: float | None = None
  depth_norm: float | None = None
  depth_prior: float | None = None
  paper_output_size: bool = False
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(
    self,
    image: Array,
    labels: Array | None = None,
    *,
    train: bool = False,
    ohess: Array | None = None,
  ) -> dict:
    """Predicts depth.

    Args:
      image: (B, H, W, 3) float32 RGB in [0, 1] (192x320 in the paper).
      labels: (B, H, W) int32 training ids (255 = ignore) for ground-truth OHESS (not needed in ``init``).
      train: training mode (BatchNorm batch statistics).
      ohess: optional precomputed (B, H, W, P) planes.

    Returns:
      ``{'depth': (B, H/4 - 2, W/4 - 2, 1) float32 (46x78), 'aux': {}}``, or (B, H, W, 1) with
      ``paper_output_size``.

    Raises:
      ValueError: bad shapes, missing labels, unknown options.
    """
    if len(self.widths) != 3:
      raise ValueError(f"cnn3d_s: widths must have 3 entries (stages), got {self.widths}")
    x = _volume(self, image, labels, ohess, "cnn3d_s")
    n = 0
    for stage, w in enumerate(self.widths):
      for _ in range(2):
        n += 1
        x = nn.relu(_conv3(w, self.dtype, f"conv{n}")(x))
      if stage < 2:
        x = layers.keras_batch_norm(train, dtype=self.dtype, name=f"bn{stage + 1}")(x)
        x = layers.max_pool(x, (2, 2, 2))
    x = _conv3(1, self.dtype, "out", padding="valid")(x)
    x = jnp.max(x, axis=1)  # (B, H', W', 1): the code's (2, 1, 1) pool of its 2 remaining planes.
    depth = layers.depth_head_output(
      x,
      final_activation=self.final_activation,
      depth_output=self.depth_output,
      max_depth=self.max_depth,
      depth_prior=self.depth_prior,
      out_size=image.shape[1:3] if self.paper_output_size else None,
      where="cnn3d_s",
    )
    return {"depth": depth, "aux": {}}


class CNN3DUP(nn.Module, DepthSegModel):
  """3D CNN-UP: 3-D conv encoder + 3-D transposed-conv decoder (paper 000's best; model_spec §1.4).

  Call: ``model.apply(variables, image, labels, train=..., mutable=['batch_stats'],
  rngs={'dropout': key})`` (the rng only with ``dropout_rate > 0``); OHESS planes come from ``labels``
  (ground truth) or ``ohess=`` (SSegDep-Net passes the U-Net's).

  Submodules: ``conv1`` .. ``conv7``, ``bn1`` .. ``bn6`` (after conv1-6), ``bn_pool`` (after the third
  pooling), ``deconv1`` .. ``deconv3``, ``bn_d1``, ``bn_d2``. Parameter count at the defaults: 889,921
  trainable + 1,152 batch statistics.

  Dropout (3D CNN-UP^do, rate 0.5 in the paper): the reference code imports ``Dropout`` but never uses it.
  ``dropout_placement='after_pool'`` (default, model_spec §1.4 recommendation, the authors' U-Net style)
  applies it right after each of the three max-poolings; ``'after_conv'`` after every conv / deconv layer
  except the output one (after its BN where it has one).

  Attributes:
    num_classes: training ids of the dataset (meta info); 14 in paper 000.
    ohess_classes: class ids that get a plane; ``None`` = all ``num_classes``.
    ohess_ignore: ``'zero'`` or ``'plane0'``, see :func:`semdepth_jax.models.ohess.ohess_from_labels`.
    semantic_source: where the OHESS planes come from (``semdepth_jax.models.semantic_source``; None =
      ground-truth ``labels``, as the paper; ``{'source': 'predicted', 'workdir': W}`` = a trained
      segmentation run's predictions).
    widths: widths of the three two-conv stages (64, 64, 64).
    bottleneck_width: width of the 'valid' conv7 (64).
    up_widths: widths of deconv1, deconv2 (64, 64); deconv3 has 1 output channel.
    dropout_rate: 0 (3D CNN-UP, default) or 0.5 (3D CNN-UP^do).
    dropout_placement: ``'after_pool'`` or ``'after_conv'``.
    final_activation: ``'relu'`` (code: "relu gives better results"; default), ``'sigmoid'`` or
      ``'linear'``.
    depth_output: ``'metres'`` (default; fine with the ReLU head) or ``'inverted_normalised'`` (paper 000's
      target convention; its ReLU output is clipped to [0, 1] at evaluation as in the reference).
    max_depth: metres scale of a sigmoid head when ``depth_output='metres'``.
    depth_norm: metres, saturation distance of ``'inverted_normalised'`` output (paper 000: the dataset's
      ``max_depth``); read by ``decode`` (docs/model_spec.md §1.0).
    depth_prior: metres, typical depth of the data; ``'log'`` heads are offset by its log (see
      ``layers.depth_head_output``).
    paper_output_size: bilinearly upsample the 184x312 output to the input size (paper's 320x192).
    conv_transpose_impl: implementation of the (1, 2, 2)-strided 3-D transposed convolutions,
      see :data:`semdepth_jax.models.layers.CONV_TRANSPOSE_IMPLS`; ``'depth_to_space'`` (default) ran the
      upsampling stage ~5x faster than ``'input_dilation'`` on CPU (benchmarks/bench_cnn3d_up.py); the
      whole step is dominated by the 3-D encoder.
    dtype: computation dtype.
  """

  INPUTS = ("image", "labels")
  OUTPUTS = ("depth", "aux")

  num_classes: int = 14
  ohess_classes: tuple[int, ...] | None = None
  ohess_ignore: str = "zero"
  semantic_source: Mapping[str, Any] | str | None = None
  widths: Sequence[int] = (64, 64, 64)
  bottleneck_width: int = 64
  up_widths: Sequence[int] = (64, 64)
  dropout_rate: float = 0.0
  dropout_placement: str = "after_pool"
  final_activation: str = "relu"
  depth_output: str = "metres"
  max_depth: float | None = None
  depth_norm: float | None = None
  depth_prior: float | None = None
  paper_output_size: bool = False
  conv_transpose_impl: str = "depth_to_space"
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(
    self,
    image: Array,
    labels: Array | None = None,
    *,
    train: bool = False,
    ohess: Array | None = None,
  ) -> dict:
    """Predicts depth.

    Args:
      image: (B, H, W, 3) float32 RGB in [0, 1] (192x320 in the paper).
      labels: (B, H, W) int32 training ids (255 = ignore) for ground-truth OHESS (not needed in ``init``).
      train: training mode (dropout, BatchNorm batch statistics).
      ohess: optional precomputed (B, H, W, P) planes.

    Returns:
      ``{'depth': (B, 8 * floor((H/4 - 2) / 2), 8 * floor((W/4 - 2) / 2), 1) float32 (184x312), 'aux': {}}``,
      or (B, H, W, 1) with ``paper_output_size``.

    Raises:
      ValueError: bad shapes, missing labels, unknown options.
    """
    if len(self.widths) != 3 or len(self.up_widths) != 2:
      raise ValueError(
        f"cnn3d_up: widths needs 3 entries and up_widths 2, got {self.widths} and {self.up_widths}"
      )
    if self.dropout_placement not in DROPOUT_PLACEMENTS:
      raise ValueError(
        f"cnn3d_up: dropout_placement must be one of {DROPOUT_PLACEMENTS}, got {self.dropout_placement!r}"
      )
    x = _volume(self, image, labels, ohess, "cnn3d_up")

    def drop(y: Array, where: str) -> Array:
      if where != self.dropout_placement:
        return y
      return nn.Dropout(self.dropout_rate, deterministic=not train)(y)

    def bn(y: Array, name: str) -> Array:
      return layers.keras_batch_norm(train, dtype=self.dtype, name=name)(y)

    n = 0
    for stage, w in enumerate(self.widths):
      for _ in range(2):
        n += 1
        x = bn(nn.relu(_conv3(w, self.dtype, f"conv{n}")(x)), f"bn{n}")
        x = drop(x, "after_conv")
      if stage < 2:
        x = drop(layers.max_pool(x, (2, 2, 2)), "after_pool")
    x = nn.relu(_conv3(self.bottleneck_width, self.dtype, "conv7", padding="valid")(x))
    x = drop(x, "after_conv")
    # Code: MaxPooling3D(2) of the 2 remaining planes; here all remaining planes (same for D = 17).
    x = layers.max_pool(x, (x.shape[1], 2, 2))
    x = bn(drop(x, "after_pool"), "bn_pool")
    for i, w in enumerate(self.up_widths):
      x = layers.ConvTranspose(
        w,
        (3, 3, 3),
        strides=(1, 2, 2),
        impl=self.conv_transpose_impl,
        dtype=self.dtype,
        name=f"deconv{i + 1}",
      )(x)
      x = drop(bn(nn.relu(x), f"bn_d{i + 1}"), "after_conv")
    x = layers.ConvTranspose(
      1,
      (3, 3, 3),
      strides=(1, 2, 2),
      impl=self.conv_transpose_impl,
      dtype=self.dtype,
      name="deconv3",
    )(x)
    depth = layers.depth_head_output(
      x[:, 0],
      final_activation=self.final_activation,
      depth_output=self.depth_output,
      max_depth=self.max_depth,
      depth_prior=self.depth_prior,
      out_size=image.shape[1:3] if self.paper_output_size else None,
      where="cnn3d_up",
    )
    return {"depth": depth, "aux": {}}
