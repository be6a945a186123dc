"""Semantic-MD (paper 003, Charyyev et al.; code R3): EfficientNet U-Nets with semantic inputs or heads.

One family, :class:`SemanticMD`, covers every model of the paper's Tables 1 and 2 by configuration
(docs/model_spec.md §4):

================== =========================================================================================
paper name         configuration
================== =========================================================================================
baseline (l1)      ``input_encoding='none'``, ``tasks=('depth',)``, sigmoid depth head (§4.2)
concat             ``input_encoding='concat'``: one plane ``(id + 1) / C``, ignored pixels 0 (§4.3)
1hot-N             ``input_encoding='onehot'``, ``onehot_classes=top_classes(N)`` (N = 40, 20, 3; §4.3)
contour            ``input_encoding='contour'``: one plane, 3x3 dilate - erode of the ids > 0 (§4.3)
sem. conv.         ``input_encoding='semconv'``: :class:`SemanticConv` on the raw ids, 3 planes (§4.3)
2-head             ``tasks=('depth', 'semantic')``, linear depth head, PyTorch-default init (§4.4)
3-head             ``tasks=('depth', 'semantic', 'contour')`` (§4.4)
2-head + Sobel     ``tasks=('depth', 'sobel')`` (§4.4, the code's Sobel-edge head)
DeepLab            ``architecture='deeplabv3'``: encoder at output stride 8, one DeepLabV3 decoder per task
semantic only      ``tasks=('semantic',)`` (R3 ``semantic_model``; a predictor for predicted semantics)
================== =========================================================================================

Architecture (§4.1): the encoder is a registered backbone (default ``efficientnet_b4`` = timm
``efficientnet_b4`` ``features_only``; features at strides 2 .. 32), fed the RGB image normalised with the
backbone's preprocessing. U-Net decoder (smp ``UnetDecoder``; :class:`UnetDecoder`): five blocks of
``channels`` (256, 128, 64, 32, 16), each nearest upsampling to the next skip's size (the input size for the
last), concatenation of the skip (strides 16, 8, 4, 2, none), then [conv 3x3 without bias -> BN -> ReLU] x 2;
no centre block. Head (smp ``SegmentationHead``): conv k x k with bias (k = 3; 1 for the single-task
DeepLab), then for DeepLab bilinear x8 upsampling with aligned corners. DeepLabV3 decoder
(:class:`DeepLabV3Decoder`): ASPP [1x1; 3x3 at rates 12, 24, 36; image pooling], each conv-BN-ReLU with
256 channels -> concat -> 1x1 conv-BN-ReLU -> dropout 0.5 -> conv 3x3 -> BN -> ReLU. Every task has its own
decoder and head on the shared encoder.

Extra input planes (multi-input models) enter through the encoder's first convolution, "extended" as in R3
(``model_utils.extend_first_convolution``): the stem is ``conv_stem(rgb) + stem_extra(planes)``, exactly one
convolution over ``[rgb, planes]`` whose kernel is the concatenation of the two. The pretrained
``encoder/conv_stem`` keeps its path and shape, so ``config.model_init`` (``prefix='encoder'``) loads it
strictly and bit-exactly; ``stem_extra`` keeps its fresh PyTorch-default initialisation,
U(+-1 / sqrt(9 (3 + E))) over the extended convolution's fan-in, as R3's new slices do.

Semantic inputs come from :mod:`semdepth_jax.models.semantic_source`: ground truth (``labels=``, the paper),
a trained segmentation run's predictions (``semantic_source={'source': 'predicted', 'workdir': W}``), or
none. Raw ids (concat, contour, sem. conv.) are NYU-40 ids ``training id + 1`` with ignored pixels -1
(HyperSim's convention; R3 clips them to 0 for concat); predicted semantics give the arg-max ids.

Depth is predicted in paper 003's normalised units (``depth_output='normalised'``: ``d / depth_norm``, 15 m,
§4.5; the model's ``decode`` multiplies back); the baseline and the multi-input models squash it with a
sigmoid, the multi-task models leave it unbounded (§4.4). ``depth_output='log'`` with a linear head is the
fast recipe's alternative. Initialisation (§4.1): ``init_scheme='smp'`` (smp's ``Unet`` / ``DeepLabV3``: decoder convs
Kaiming-uniform fan-in ReLU, zero biases, head Xavier-uniform) for the single-task models; ``'torch'``
(PyTorch's default conv init, U(+-1/sqrt(fan_in)) for weights and biases) for the multi-task ones, which R3
builds from ``UnetDecoder`` / ``SegmentationHead`` directly. BatchNorm: PyTorch constants (eps 1e-5).

Outputs: ``depth`` (B, H, W, 1) (task ``depth``), ``seg_logits`` (B, H, W, C) (``semantic``), and ``aux``
with ``contour_logits`` / ``sobel_logits`` (B, H, W, 2) and ``semantic_input`` (the extra planes).
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Mapping, Sequence
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from semdepth_jax import resize
from semdepth_jax.models import backbones, layers
from semdepth_jax.models import ohess as ohess_lib
from semdepth_jax.models import semantic_source as source_lib
from semdepth_jax.models.backbones import efficientnet as effnet
from semdepth_jax.models.contract import DepthSegModel
from semdepth_jax.weights.keymap import Rule

Array = jax.Array

NYU40_PREVALENCE = (
  1, 2, 22, 9, 38, 5, 3, 40, 7, 6, 13, 8, 35, 20, 4, 14, 39, 18, 11, 12,
  10, 23, 19, 36, 15, 25, 34, 17, 24, 21, 32, 16, 27, 29, 26, 33, 30, 31, 37, 28,
)  # fmt: skip
"""NYU-40 ids (1..40) in order of prevalence in HyperSim (R3 ``conversions.simplified_encode``; §4.3)."""

ARCHITECTURES = ("unet", "deeplabv3")
INPUT_ENCODINGS = ("none", "concat", "onehot", "contour", "semconv")
TASKS = ("depth", "semantic", "contour", "sobel")
INITS = ("smp", "torch")
DEPTH_ACTIVATIONS = ("sigmoid", "linear")

DEFAULT_ENCODER = "efficientnet_b4"
DEEPLAB_UPSAMPLING = 8
"""DeepLab heads upsample by the encoder's output stride 8 (smp ``DeepLabV3`` / R3 ``get_head``)."""


def top_classes(n: int, num_classes: int = 40) -> tuple[int, ...]:
  """Training ids (NYU-40 id - 1) of the ``n`` most prevalent HyperSim classes, most prevalent first.

  1hot-N's planes (§4.3): ``top_classes(3)`` = (0, 1, 21) = wall, floor, ceiling.

  Raises:
    ValueError: ``n`` outside 1..40 or a label set other than NYU-40.
  """
  if num_classes != len(NYU40_PREVALENCE):
    raise ValueError(
      f"semantic_md.top_classes: the prevalence order is for the 40 NYU-40 classes, got {num_classes}"
    )
  if not 1 <= n <= num_classes:
    raise ValueError(f"semantic_md.top_classes: n must be in 1..{num_classes}, got {n}")
  return tuple(i - 1 for i in NYU40_PREVALENCE[:n])


# ---------------------------------------------------------------------------------------------------------
# Initialisers and small helpers.
# ---------------------------------------------------------------------------------------------------------
_KAIMING_RELU_FAN_IN = nn.initializers.variance_scaling(2.0, "fan_in", "uniform")
"""PyTorch ``kaiming_uniform_(mode='fan_in', nonlinearity='relu')``: U(+-sqrt(6 / fan_in)) (smp decoders)."""

_TORCH_DEFAULT = nn.initializers.variance_scaling(1.0 / 3.0, "fan_in", "uniform")
"""PyTorch's default conv weight init, ``kaiming_uniform_(a=sqrt(5))`` = U(+-1 / sqrt(fan_in))."""


def _uniform(bound: float) -> layers.Initializer:
  def init(key, shape, dtype=jnp.float32):
    return jax.random.uniform(key, shape, dtype, -bound, bound)

  return init


def _conv_inits(init: str, fan_in: int, *, head: bool = False) -> dict[str, Any]:
  """``kernel_init`` / ``bias_init`` of one conv under ``init`` ('smp' decoder / head, or 'torch')."""
  if init == "torch":
    return {"kernel_init": _TORCH_DEFAULT, "bias_init": _uniform(1.0 / math.sqrt(fan_in))}
  if head:
    return {"kernel_init": nn.initializers.glorot_uniform(), "bias_init": nn.initializers.zeros}
  return {"kernel_init": _KAIMING_RELU_FAN_IN, "bias_init": nn.initializers.zeros}


def _bn(train: bool, name: str, dtype: Any) -> nn.Module:
  return layers.batch_norm(train, layers.TORCH_BN, dtype=dtype, name=name)


def upsample_bilinear_align_corners(x: Array, size: Sequence[int]) -> Array:
  """Bilinear x-up of smp's ``SegmentationHead`` (docs/model_spec.md §4.4), aligned corners.

  ``resize.bilinear_align_corners`` in ``x``'s dtype.
  """
  return resize.bilinear_align_corners(x, size).astype(x.dtype)


def upsample_nearest(x: Array, size: Sequence[int]) -> Array:
  """Nearest upsampling of smp's ``UnetDecoderBlock`` (docs/model_spec.md §4.1), PyTorch's rule.

  ``resize.nearest_floor`` (``F.interpolate(mode='nearest')``).
  """
  return resize.nearest_floor(x, size)


# ---------------------------------------------------------------------------------------------------------
# Decoders and heads.
# ---------------------------------------------------------------------------------------------------------
class UnetDecoder(nn.Module):
  """smp ``UnetDecoder`` without centre block or attention (docs/model_spec.md §4.1).

  Submodules ``block{i}`` (i = 0 .. 4) with ``conv1``, ``bn1``, ``conv2``, ``bn2``.

  Attributes:
    channels: output channels of the blocks, deepest first ((256, 128, 64, 32, 16) in the paper).
    init_scheme: ``'smp'`` (Kaiming-uniform fan-in ReLU) or ``'torch'`` (PyTorch default) conv initialisation.
    dtype: computation dtype.
  """

  channels: Sequence[int] = (256, 128, 64, 32, 16)
  init_scheme: str = "smp"
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(
    self, features: Sequence[Array], out_size: Sequence[int], train: bool = False
  ) -> Array:
    """Decodes encoder features.

    Args:
      features: encoder features from stride 2 to the deepest level (B, h_s, w_s, C_s), e.g. the
        backbone's ``stride2`` .. ``stride32``; ``len(channels)`` levels.
      out_size: (H, W) of the last block (the input image).
      train: BatchNorm batch statistics.

    Returns:
      (B, H, W, channels[-1]).

    Raises:
      ValueError: a feature count that does not match ``channels``.
    """
    if len(features) != len(self.channels):
      raise ValueError(
        f"UnetDecoder: {len(self.channels)} blocks need {len(self.channels)} encoder levels, got "
        f"{len(features)}"
      )
    skips = list(features[:-1])[::-1] + [None]
    x = features[-1]
    for i, (ch, skip) in enumerate(zip(self.channels, skips, strict=True)):
      size = out_size if skip is None else skip.shape[1:3]
      x = upsample_nearest(x, size)
      if skip is not None:
        x = jnp.concatenate([x, skip.astype(x.dtype)], axis=-1)
      for j in (1, 2):
        x = layers.Conv(
          ch,
          (3, 3),
          padding=((1, 1), (1, 1)),
          use_bias=False,
          kernel_init=_conv_inits(self.init_scheme, 9 * x.shape[-1])["kernel_init"],
          dtype=self.dtype,
          name=f"block{i}_conv{j}",
        )(x)
        x = nn.relu(_bn(train, f"block{i}_bn{j}", self.dtype)(x))
    return x


class DeepLabV3Decoder(nn.Module):
  """smp ``DeepLabV3Decoder`` (docs/model_spec.md §4.4): ASPP + 3x3 conv-BN-ReLU.

  Submodules: ``aspp0`` (1x1), ``aspp1`` .. ``aspp3`` (3x3 atrous), ``aspp_pool`` (image pooling), each
  ``*_conv`` + ``*_bn``; ``project_conv`` / ``project_bn``; ``conv`` / ``bn``. Convolutions have no bias.

  Attributes:
    channels: ASPP / output channels (256).
    rates: atrous rates of the three 3x3 branches ((12, 24, 36)).
    dropout_rate: dropout after the projection (0.5).
    init_scheme: ``'smp'`` or ``'torch'`` conv initialisation.
    dtype: computation dtype.
  """

  channels: int = 256
  rates: Sequence[int] = (12, 24, 36)
  dropout_rate: float = 0.5
  init_scheme: str = "smp"
  dtype: Any = jnp.float32

  def _conv(self, x, k: int, name: str, dilation: int = 1) -> Array:
    pad = dilation * (k // 2)
    return layers.Conv(
      self.channels,
      (k, k),
      padding=((pad, pad), (pad, pad)),
      kernel_dilation=dilation,
      use_bias=False,
      kernel_init=_conv_inits(self.init_scheme, k * k * x.shape[-1])["kernel_init"],
      dtype=self.dtype,
      name=name,
    )(x)

  @nn.compact
  def __call__(self, x: Array, train: bool = False) -> Array:
    """(B, h, w, C_in) deepest encoder features -> (B, h, w, channels).

    Dropout draws from the ``'dropout'`` rng in training.
    """
    if len(self.rates) != 3:
      raise ValueError(f"DeepLabV3Decoder: rates must hold 3 atrous rates, got {self.rates}")

    def cbr(y, k, conv_name, bn_name, dilation=1):
      y = self._conv(y, k, conv_name, dilation)
      return nn.relu(_bn(train, bn_name, self.dtype)(y))

    branches = [cbr(x, 1, "aspp0_conv", "aspp0_bn")]
    branches += [
      cbr(x, 3, f"aspp{i + 1}_conv", f"aspp{i + 1}_bn", r) for i, r in enumerate(self.rates)
    ]
    pooled = jnp.mean(x.astype(jnp.float32), axis=(1, 2), keepdims=True).astype(x.dtype)
    pooled = cbr(pooled, 1, "aspp_pool_conv", "aspp_pool_bn")
    # Bilinear upsampling of a 1x1 map (align_corners=False) is a broadcast.
    branches.append(jnp.broadcast_to(pooled, (*x.shape[:3], self.channels)))
    y = jnp.concatenate(branches, axis=-1)
    y = cbr(y, 1, "project_conv", "project_bn")
    y = nn.Dropout(self.dropout_rate, deterministic=not train)(y)
    return cbr(y, 3, "conv", "bn")


class SegmentationHead(nn.Module):
  """smp ``SegmentationHead``: conv k x k (bias) -> optional bilinear upsampling (aligned corners).

  Submodule ``conv``. The activation is the caller's (the depth head's sigmoid, or none for logits).

  Attributes:
    features: output channels.
    kernel: kernel size (3; 1 for smp's single-task DeepLabV3).
    upsampling: integer scale of the bilinear upsampling (1 = none; 8 for DeepLab).
    init_scheme: ``'smp'`` (Xavier-uniform, zero bias) or ``'torch'`` (PyTorch default).
    dtype: computation dtype.
  """

  features: int
  kernel: int = 3
  upsampling: int = 1
  init_scheme: str = "smp"
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x: Array) -> Array:
    """(B, h, w, C) -> (B, h * upsampling, w * upsampling, features) float32."""
    p = self.kernel // 2
    y = layers.Conv(
      self.features,
      (self.kernel, self.kernel),
      padding=((p, p), (p, p)),
      dtype=self.dtype,
      name="conv",
      **_conv_inits(self.init_scheme, self.kernel * self.kernel * x.shape[-1], head=True),
    )(x)
    y = y.astype(jnp.float32)
    if self.upsampling > 1:
      y = upsample_bilinear_align_corners(
        y, (y.shape[1] * self.upsampling, y.shape[2] * self.upsampling)
      )
    return y


class SemanticConv(nn.Module):
  """R3's semantic-convolution CNN on the raw id map (docs/model_spec.md §4.3, "sem. conv.").

  ``conv 3x3 1 -> width (no bias) -> BN -> MBConv -> conv 1x1 width -> out (no bias) -> BN -> sigmoid``,
  with torchvision's ``MBConv`` (width 8 -> expansion 6 = 48 -> depthwise 3x3 -> squeeze-excitation with
  ``se`` = 2 channels (SiLU, sigmoid gate) -> project to 8, BN after every conv, SiLU after the first two,
  stochastic depth ("row", 0.2) on the residual branch). Every convolution has PyTorch's default init; BN
  PyTorch defaults. Submodules ``conv_in``, ``bn_in``, ``mb_expand``, ``mb_expand_bn``, ``mb_dw``,
  ``mb_dw_bn``, ``mb_se_fc1``, ``mb_se_fc2``, ``mb_project``, ``mb_project_bn``, ``conv_out``, ``bn_out``.

  Attributes:
    width: channels of the block (8 = ``adjust_channels(1 and 3, width_mult 1.4)``).
    out_channels: planes produced (3).
    expansion: MBConv expansion (6).
    se: squeeze channels (``max(1, width // 4)`` = 2).
    drop_path: stochastic-depth probability (0.2).
    dtype: computation dtype.
  """

  width: int = 8
  out_channels: int = 3
  expansion: int = 6
  se: int = 2
  drop_path: float = 0.2
  dtype: Any = jnp.float32

  def _conv(self, x, features, k, name, groups=1, bias=False):
    p = k // 2
    fan_in = k * k * x.shape[-1] // groups
    kw = {"kernel_init": _TORCH_DEFAULT, "bias_init": _uniform(1.0 / math.sqrt(fan_in))}
    return layers.Conv(
      features,
      (k, k),
      padding=((p, p), (p, p)),
      feature_group_count=groups,
      use_bias=bias,
      dtype=self.dtype,
      name=name,
      **kw,
    )(x)

  @nn.compact
  def __call__(self, ids: Array, train: bool = False) -> Array:
    """(B, H, W, 1) float raw ids -> (B, H, W, out_channels) in (0, 1).

    Stochastic depth draws from the ``'dropout'`` rng in training.
    """
    x = _bn(train, "bn_in", self.dtype)(
      self._conv(ids.astype(self.dtype), self.width, 3, "conv_in")
    )
    mid = self.width * self.expansion
    y = nn.silu(_bn(train, "mb_expand_bn", self.dtype)(self._conv(x, mid, 1, "mb_expand")))
    y = nn.silu(_bn(train, "mb_dw_bn", self.dtype)(self._conv(y, mid, 3, "mb_dw", groups=mid)))
    s = jnp.mean(y, axis=(1, 2), keepdims=True)
    s = nn.silu(self._conv(s, self.se, 1, "mb_se_fc1", bias=True))
    y = y * nn.sigmoid(self._conv(s, mid, 1, "mb_se_fc2", bias=True))
    y = _bn(train, "mb_project_bn", self.dtype)(self._conv(y, self.width, 1, "mb_project"))
    rng = self.make_rng("dropout") if train and self.drop_path > 0 else None
    x = effnet.drop_path(y, self.drop_path, train=train, rng=rng) + x
    x = _bn(train, "bn_out", self.dtype)(self._conv(x, self.out_channels, 1, "conv_out"))
    return nn.sigmoid(x.astype(jnp.float32))


def encode_semantics(
  encoding: str,
  sem: source_lib.Semantics,
  source: source_lib.SemanticSource,
  num_classes: int,
  onehot_classes: Sequence[int] | None = None,
) -> Array:
  """Paper 003's transformation ``T(x_semantic)`` of the multi-input models (docs/model_spec.md §4.3).

  Args:
    encoding: ``'onehot'`` (one plane per class of ``onehot_classes``, other classes and ignored pixels
      all-zero; predicted semantics by ``source.mode``), ``'concat'`` (one plane: raw id ``id + 1`` / C,
      ignored pixels 0), ``'contour'`` (one plane: 3x3 dilation - erosion of the ids > 0, the ignore id
      counting as an id, as R3's -1) or ``'semconv'`` (the raw id plane ``id + 1``, ignored -1, for
      :class:`SemanticConv`).
    sem: the batch's semantics (``SemanticSource.resolve``).
    source: the source (its ``mode`` turns predicted scores into one-hot planes).
    num_classes: C.
    onehot_classes: training ids with a plane, in plane order (None = all).

  Returns:
    (B, H, W, E) float32.

  Raises:
    ValueError: an unknown encoding.
  """
  if encoding == "onehot":
    return source.planes(sem, num_classes, onehot_classes)
  ids = sem.labels
  valid = (ids >= 0) & (ids < num_classes)
  if encoding == "concat":
    # R3: raw ids -1..40, clipped at 0, divided by the number of classes.
    return jnp.where(valid, ids + 1, 0).astype(jnp.float32)[..., None] / num_classes
  if encoding == "contour":
    from semdepth_jax.losses import contour_target

    return contour_target(ids).astype(jnp.float32)[..., None]
  if encoding == "semconv":
    return jnp.where(valid, ids + 1, -1).astype(jnp.float32)[..., None]
  raise ValueError(
    f"encode_semantics: encoding must be one of {INPUT_ENCODINGS[1:]}, got {encoding!r}"
  )


# ---------------------------------------------------------------------------------------------------------
# The model.
# ---------------------------------------------------------------------------------------------------------
class SemanticMD(nn.Module, DepthSegModel):
  """Semantic-MD model family (paper 003; see the module docstring for the variants).

  Call: ``model.apply(variables, image, labels=None, train=..., mutable=['batch_stats'],
  rngs={'dropout': key})`` with ``image`` (B, H, W, 3) in [0, 1] and ``labels`` (B, H, W) int32 training
  ids (255 = ignore), read only by a ground-truth semantic source. H, W: any size (the U-Net decoder
  upsamples to each skip's size); divisible by 32 as in the paper (256 x 256) gives smp's exact
  geometry, and DeepLab's x8 head returns (8 ceil(H / 8), 8 ceil(W / 8)).

  Trainable parameters at the paper's widths (EfficientNet-B4 encoder 16,742,216 = timm
  ``efficientnet_b4`` without its head; one U-Net decoder 2,670,016; BN running statistics not counted):
  baseline 19,412,377; 1hot-40 19,429,657; sem. conv. 19,415,441; 2-head 22,088,193; 3-head 24,758,499;
  DeepLab (single task) 20,989,513; DeepLab 2-head 25,330,801. R3's multi-task PyTorch models hold an extra,
  unused ``smp.Unet`` (``self.test``), which inflates their own counts; it is not reproduced.

  Attributes:
    num_classes: label set of the semantic input and of the semantic head (dataset meta; 40 NYU-40).
    encoder: ``{'name': backbone registry name, **attributes}`` (``efficientnet_b4`` by default; the
      classifier is always dropped, ``num_classes=0``; DeepLab sets ``output_stride=8`` unless given).
    architecture: ``'unet'`` or ``'deeplabv3'``.
    decoder_channels: U-Net decoder widths.
    aspp_channels: DeepLab decoder width (256).
    atrous_rates: DeepLab ASPP rates ((12, 24, 36)).
    aspp_dropout: DeepLab dropout (0.5).
    input_encoding: extra input planes, one of :data:`INPUT_ENCODINGS`.
    onehot_classes: training ids that get a plane with ``'onehot'``, in plane order (1hot-N:
      :func:`top_classes`); None = all classes in id order.
    semantic_source: where the semantics come from (``semantic_source.SemanticSource.from_config``; None =
      ground truth when an input encoding is set).
    semconv_width: width of :class:`SemanticConv` (8).
    semconv_channels: planes of :class:`SemanticConv` (3).
    semconv_drop_path: stochastic depth of :class:`SemanticConv` (0.2).
    tasks: heads, a subset of :data:`TASKS` (each gets its own decoder).
    head_kernel: kernel of the heads (3; smp's single-task DeepLabV3 uses 1).
    depth_activation: ``'sigmoid'`` (baseline, multi-input) or ``'linear'`` (multi-task; log depth).
    depth_output: ``'normalised'`` (paper: d / depth_norm) or ``'log'`` / ``'metres'``
      (``semdepth_jax.models.contract``).
    depth_norm: metres, 15 in the paper (``'normalised'``).
    depth_prior: metres, offset of a ``'log'`` head (``layers.depth_head_output``).
    init_scheme: ``'smp'`` or ``'torch'`` initialisation of decoders and heads (module docstring).
    dtype: computation dtype.
  """

  INPUTS = ("image", "labels")
  OUTPUTS = ("depth", "seg_logits", "aux")

  num_classes: int = 40
  encoder: Mapping[str, Any] | None = None
  architecture: str = "unet"
  decoder_channels: Sequence[int] = (256, 128, 64, 32, 16)
  aspp_channels: int = 256
  atrous_rates: Sequence[int] = (12, 24, 36)
  aspp_dropout: float = 0.5
  input_encoding: str = "none"
  onehot_classes: Sequence[int] | None = None
  semantic_source: Mapping[str, Any] | str | None = None
  semconv_width: int = 8
  semconv_channels: int = 3
  semconv_drop_path: float = 0.2
  tasks: Sequence[str] = ("depth",)
  head_kernel: int = 3
  depth_activation: str = "sigmoid"
  depth_output: str = "normalised"
  depth_norm: float | None = 15.0
  depth_prior: float | None = None
  init_scheme: str = "smp"
  dtype: Any = jnp.float32

  # ------------------------------------------------------------------------------------------------
  # Static structure.
  # ------------------------------------------------------------------------------------------------
  def _check(self) -> None:
    where = "semantic_md"
    for name, value, allowed in (
      ("architecture", self.architecture, ARCHITECTURES),
      ("input_encoding", self.input_encoding, INPUT_ENCODINGS),
      ("init_scheme", self.init_scheme, INITS),
      ("depth_activation", self.depth_activation, DEPTH_ACTIVATIONS),
    ):
      if value not in allowed:
        raise ValueError(f"{where}: {name} must be one of {allowed}, got {value!r}")
    tasks = tuple(self.tasks)
    bad = [t for t in tasks if t not in TASKS]
    if not tasks or bad or len(set(tasks)) != len(tasks):
      raise ValueError(f"{where}: tasks must be distinct names from {TASKS}, got {tasks}")
    if self.input_encoding == "onehot":
      ohess_lib.check_classes(self.onehot_classes, self.num_classes, f"{where} onehot_classes")
    source = self.source()
    if self.input_encoding == "none" and source.active and self.semantic_source is not None:
      raise ValueError(
        f"{where}: semantic_source {source.source!r} is set but input_encoding is 'none' (the model "
        "reads no semantics); choose an input_encoding or drop semantic_source"
      )
    if self.input_encoding != "none" and not source.active:
      raise ValueError(
        f"{where}: input_encoding {self.input_encoding!r} needs semantics, but semantic_source is 'none'"
      )

  def source(self) -> source_lib.SemanticSource:
    """The configured :class:`~semdepth_jax.models.semantic_source.SemanticSource`."""
    default = "none" if self.input_encoding == "none" else "gt"
    return source_lib.SemanticSource.from_config(
      self.semantic_source, default=default, where="semantic_md"
    )

  def extra_planes(self) -> int:
    """Number of extra input planes E of the extended first convolution."""
    if self.input_encoding == "none":
      return 0
    if self.input_encoding == "onehot":
      return ohess_lib.num_planes(self.num_classes, self.onehot_classes)
    if self.input_encoding == "semconv":
      return self.semconv_channels
    return 1

  def encoder_entry(self) -> tuple[str, dict[str, Any]]:
    """``(backbone name, attributes)`` of the encoder (classifier dropped, DeepLab at stride 8)."""
    cfg = dict(self.encoder or {})
    name = cfg.pop("name", DEFAULT_ENCODER)
    cfg.setdefault("num_classes", 0)
    if self.architecture == "deeplabv3":
      cfg.setdefault("output_stride", 8)
    return name, {k: (tuple(v) if isinstance(v, list) else v) for k, v in cfg.items()}

  def build_encoder(self, name: str | None = None) -> nn.Module:
    """The encoder module (unbound; ``name`` its submodule name)."""
    arch, attrs = self.encoder_entry()
    entry = backbones.get_backbone_entry(arch)
    return entry.build(**attrs, dtype=self.dtype, name=name)

  def preprocessing(self) -> backbones.Preprocessing:
    """The encoder's input normalisation (ImageNet for timm ``efficientnet_b4``)."""
    arch, attrs = self.encoder_entry()
    return backbones.get_backbone_entry(arch).preprocessing(**attrs)

  # ------------------------------------------------------------------------------------------------
  def _semantic_input(self, image, labels, train) -> Array | None:
    """The extra planes (B, H, W, E) float32, or None without an input encoding."""
    if self.input_encoding == "none":
      return None
    source = self.source()
    sem = source.resolve(
      image,
      labels,
      num_classes=self.num_classes,
      initializing=self.is_initializing(),
      where="semantic_md",
    )
    planes = encode_semantics(
      self.input_encoding, sem, source, self.num_classes, self.onehot_classes
    )
    if self.input_encoding != "semconv":
      return planes
    return SemanticConv(
      width=self.semconv_width,
      out_channels=self.semconv_channels,
      drop_path=self.semconv_drop_path,
      dtype=self.dtype,
      name="semconv",
    )(planes, train)

  @nn.compact
  def __call__(self, image: Array, labels: Array | None = None, *, train: bool = False) -> dict:
    """Runs the configured variant.

    Args:
      image: (B, H, W, 3) float32 RGB in [0, 1].
      labels: (B, H, W) int32 training ids (255 = ignore) for a ground-truth semantic source (the
        training loop and evaluation pass the batch's labels; ``init`` works without them).
      train: BatchNorm batch statistics, dropout and stochastic depth (``rngs={'dropout': key}``).

    Returns:
      ``{'depth': (B, H, W, 1) float32, 'seg_logits': (B, H, W, C) float32, 'aux': {...}}`` with the keys
      of the configured tasks (module docstring).

    Raises:
      ValueError: bad attributes or shapes, missing labels for a ground-truth source, an encoder that
        cannot take extra input planes.
    """
    self._check()
    ohess_lib.check_image(image, "semantic_md")
    H, W = image.shape[1:3]
    x = backbones.normalise(image, self.preprocessing()).astype(self.dtype)
    planes = self._semantic_input(image, labels, train)
    encoder = self.build_encoder("encoder")
    kwargs: dict[str, Any] = {}
    if planes is not None:
      if "stem_extra" not in inspect.signature(type(encoder).__call__).parameters:
        raise ValueError(
          f"semantic_md: encoder {self.encoder_entry()[0]!r} cannot take extra input planes (only "
          "EfficientNet encoders extend their first convolution)"
        )
      e = planes.shape[-1]
      pad = effnet.torch_padding(3, 2, 1)
      kwargs["stem_extra"] = layers.Conv(
        encoder.stem_channels(),
        (3, 3),
        strides=2,
        padding=((pad, pad), (pad, pad)),
        use_bias=False,
        kernel_init=_uniform(1.0 / math.sqrt(9 * (3 + e))),
        dtype=self.dtype,
        name="stem_extra",
      )(planes.astype(self.dtype))
    feats = encoder(x, train, **kwargs)["features"]
    levels = [feats[k] for k in sorted(feats, key=lambda s: int(s[len("stride") :]))]
    levels = [f for f in levels if f is not None]

    out: dict[str, Any] = {}
    aux: dict[str, Any] = {}
    for task in self.tasks:
      if self.architecture == "unet":
        y = UnetDecoder(
          tuple(self.decoder_channels),
          init_scheme=self.init_scheme,
          dtype=self.dtype,
          name=f"decoder_{task}",
        )(levels[-len(self.decoder_channels) :], (H, W), train)
        up = 1
      else:
        y = DeepLabV3Decoder(
          self.aspp_channels,
          tuple(self.atrous_rates),
          self.aspp_dropout,
          init_scheme=self.init_scheme,
          dtype=self.dtype,
          name=f"decoder_{task}",
        )(levels[-1], train)
        up = DEEPLAB_UPSAMPLING
      features = {"depth": 1, "semantic": self.num_classes, "contour": 2, "sobel": 2}[task]
      y = SegmentationHead(
        features,
        self.head_kernel,
        up,
        init_scheme=self.init_scheme,
        dtype=self.dtype,
        name=f"head_{task}",
      )(y)
      if task == "depth":
        out["depth"] = layers.depth_head_output(
          y,
          final_activation=self.depth_activation,
          depth_output=self.depth_output,
          max_depth=self.depth_norm,
          out_size=None,
          where="semantic_md",
          depth_prior=self.depth_prior,
        )
      elif task == "semantic":
        out["seg_logits"] = y
      else:
        aux[f"{task}_logits"] = y
    if planes is not None:
      aux["semantic_input"] = planes
    out["aux"] = aux
    return out


# ---------------------------------------------------------------------------------------------------------
# Key table: smp / R3 state dicts -> SemanticMD variables.
# ---------------------------------------------------------------------------------------------------------
def _unet_rules(src: str, dst: str, n: int) -> list[Rule]:
  out = []
  for i in range(n):
    for j in (1, 2):
      out += [
        Rule(f"{src}.blocks.{i}.conv{j}.0.weight", f"{dst}/block{i}_conv{j}/kernel", "conv"),
        Rule(f"{src}.blocks.{i}.conv{j}.1", f"{dst}/block{i}_bn{j}", "bn"),
      ]
  return out


def _deeplab_rules(src: str, dst: str) -> list[Rule]:
  out = []
  for i in range(4):
    out += [
      Rule(f"{src}.aspp.convs.{i}.0.weight", f"{dst}/aspp{i}_conv/kernel", "conv"),
      Rule(f"{src}.aspp.convs.{i}.1", f"{dst}/aspp{i}_bn", "bn"),
    ]
  out += [
    Rule(f"{src}.aspp.convs.4.1.weight", f"{dst}/aspp_pool_conv/kernel", "conv"),
    Rule(f"{src}.aspp.convs.4.2", f"{dst}/aspp_pool_bn", "bn"),
    Rule(f"{src}.aspp.project.0.weight", f"{dst}/project_conv/kernel", "conv"),
    Rule(f"{src}.aspp.project.1", f"{dst}/project_bn", "bn"),
    Rule(f"{src}.conv.weight", f"{dst}/conv/kernel", "conv"),
    Rule(f"{src}.bn", f"{dst}/bn", "bn"),
  ]
  return out


R3_TASK_NAMES = {"depth": "depth", "semantic": "semantic", "contour": "contours", "sobel": "sobel"}
"""R3 module suffix of each task's decoder / head (``decoder_contours``, ``head_contours``)."""


def smp_key_table(model: SemanticMD) -> list[Rule]:
  """Key table from the PyTorch reference of ``model``'s configuration onto its variables.

  * single-task depth U-Net: ``smp.Unet(encoder_name='tu-<backbone>', classes=1)`` (``encoder.model.*``,
    ``decoder.blocks.*``, ``segmentation_head.0``);
  * single-task DeepLab: ``smp.DeepLabV3(encoder_name='tu-<backbone>', classes=1)`` (``decoder.aspp.*``,
    ``decoder.conv``, ``decoder.bn``);
  * multi-task models: R3's ``MultiLossModel`` / ``TripleLossModel`` / ``SobelLossModel`` /
    ``ContourModel`` (``encoder.model.*``, ``decoder_<task>.*``, ``head_<task>.0``; R3's unused ``test.``
    submodule is dropped by passing ``allow_unused=('test.',)``).

  Only EfficientNet encoders (timm names, ``efficientnet.key_table``). Multi-input models are not covered:
  R3 stores the extended ``conv_stem`` as one (48, 3 + E, 3, 3) tensor, which this library keeps as
  ``encoder/conv_stem`` + ``stem_extra`` (split it along axis 1 before converting).

  Raises:
    ValueError: a multi-input model or a non-EfficientNet encoder.
  """
  if model.input_encoding != "none":
    raise ValueError(
      "smp_key_table: multi-input models store one extended conv_stem; split it into conv_stem "
      "(first 3 input channels) and stem_extra first"
    )
  arch, attrs = model.encoder_entry()
  if not arch.startswith("efficientnet_"):
    raise ValueError(f"smp_key_table: only EfficientNet encoders are covered, got {arch!r}")
  enc_attrs = {k: v for k, v in attrs.items() if k in ("width_multiplier", "depth_multiplier")}
  enc = effnet.key_table(variant=arch.split("_")[1], num_classes=0, **enc_attrs)
  table = [Rule(f"encoder.model.{r.source}", f"encoder/{r.target}", r.kind) for r in enc]
  single = tuple(model.tasks) == ("depth",)
  n = len(model.decoder_channels)
  for task in model.tasks:
    src_dec = "decoder" if single else f"decoder_{R3_TASK_NAMES[task]}"
    src_head = "segmentation_head.0" if single else f"head_{R3_TASK_NAMES[task]}.0"
    if model.architecture == "unet":
      table += _unet_rules(src_dec, f"decoder_{task}", n)
    else:
      table += _deeplab_rules(src_dec, f"decoder_{task}")
    table += [
      Rule(f"{src_head}.weight", f"head_{task}/conv/kernel", "conv"),
      Rule(f"{src_head}.bias", f"head_{task}/conv/bias", "copy"),
    ]
  return table
