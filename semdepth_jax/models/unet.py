"""U-Net semantic segmentation module of SSegDep-Net (paper 000; docs/model_spec.md §1.1).

Layer table (reference code ``Semantic segmentation CNN/U-Net``, ``get_unet(n_filters=64, dropout=0.05)``),
192x320 input, widths ``w = base_width * 2**i``:

====== =========================================================================== ==============
stage  layers (3x3 'same' convs, he_normal kernels, conv -> BN -> ReLU)             out (H, W, C)
====== =========================================================================== ==============
c1     2 x conv64-BN-ReLU; maxpool 2; dropout 0.5 * rate                           96x160x64
c2-c4  2 x conv(128/256/512)-BN-ReLU; maxpool 2; dropout rate                      12x20x512
c5     2 x conv1024-BN-ReLU (bottleneck)                                           12x20x1024
u6-u9  ConvTranspose 3x3 s2 'same' (bias, linear, glorot); concat skip; dropout;   192x320x64
       2 x conv-BN-ReLU (c6-c9)
out    conv 1x1 -> num_classes (bias), sigmoid                                     192x320x14
====== =========================================================================== ==============

Deviation: BatchNorm normalises per channel. The reference code applies Keras ``BatchNormalization()``
(axis -1) to channels-first tensors, i.e. per image column (model_spec §1.0 quirk 1); that is not
reproduced.
"""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from semdepth_jax.models import layers
from semdepth_jax.models.contract import DepthSegModel
from semdepth_jax.models.ohess import check_image

Array = jax.Array


class UNetBlock(nn.Module):
  """U-Net ``conv2d_block``: 2 x (conv3x3 'same' he_normal -> BN -> ReLU). Submodules ``conv1``, ``conv2``.

  Attributes:
    features: output channels of both convolutions.
    dtype: computation dtype.
  """

  features: int
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x: Array, train: bool = False) -> Array:
    """(B, H, W, C_in) -> (B, H, W, features)."""
    for i in (1, 2):
      x = layers.ConvBNAct(
        self.features,
        (3, 3),
        order="conv_bn_act",
        kernel_init=layers.he_normal,
        dtype=self.dtype,
        name=f"conv{i}",
      )(x, train)
    return x


class UNet(nn.Module, DepthSegModel):
  """U-Net with sigmoid per-class outputs (paper 000 §3.1, Fig. 2; docs/model_spec.md §1.1).

  Call: ``model.apply(variables, image, labels=None, train=False, mutable=..., rngs={'dropout': key})``;
  ``labels`` is accepted for a uniform call convention and ignored. Training with ``dropout_rate > 0``
  needs a ``'dropout'`` rng; BatchNorm statistics update only with ``train=True`` and
  ``mutable=['batch_stats']``.

  Submodules (top-level parameter names): ``c1`` .. ``c{depth+1}`` (encoder blocks and bottleneck),
  ``u{depth+2}`` .. ``u{2*depth+1}`` (transposed convolutions), ``c{depth+2}`` .. ``c{2*depth+1}``
  (decoder blocks), ``out`` (1x1 classifier). Parameter count at the defaults (14 classes): 34,525,966
  trainable + 11,776 batch statistics (checked layer by layer in the tests).

  Attributes:
    num_classes: output planes C (take it from the dataset meta info; 14 in paper 000).
    base_width: channels of the first stage (64 in the paper); stage i has ``base_width * 2**i``.
    depth: number of pooling stages (4); H and W must be divisible by ``2**depth``.
    dropout_rate: decoder/encoder dropout (0.05 in the reference code; the first one uses half of it).
    conv_transpose_impl: implementation of the 3x3 stride-2 transposed convolutions, see
      :data:`semdepth_jax.models.layers.CONV_TRANSPOSE_IMPLS`. The exact ones give the same function;
      ``'depth_to_space'`` (default) made a paper-width training step 4x faster than
      ``'input_dilation'`` on a 2-core CPU (2.6 s vs 10.5 s, batch 1). ``'resize_conv'`` changes the
      operator. Benchmark on accelerators before choosing.
    dtype: computation dtype (parameters stay float32; outputs are float32).
  """

  INPUTS = ("image",)
  OUTPUTS = ("seg_logits", "aux")

  num_classes: int = 14
  base_width: int = 64
  depth: int = 4
  dropout_rate: float = 0.05
  conv_transpose_impl: str = "depth_to_space"
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, image: Array, labels: Array | None = None, *, train: bool = False) -> dict:
    """Segments an image.

    Args:
      image: (B, H, W, 3) float32 RGB in [0, 1]; H and W divisible by ``2**depth`` (192x320 in the paper).
      labels: ignored.
      train: training mode (dropout on, BatchNorm batch statistics).

    Returns:
      ``{'seg_logits': (B, H, W, C) float32 pre-sigmoid logits, 'aux': {'seg_probs': (B, H, W, C)
      sigmoid probabilities}}``. Paper 000 trains them with per-class binary cross-entropy (model_spec §7.1).

    Raises:
      ValueError: bad image shape/dtype, or H, W not divisible by ``2**depth``.
    """
    del labels
    check_image(image, "unet")
    factor = 2**self.depth
    if image.shape[1] % factor or image.shape[2] % factor:
      raise ValueError(
        f"unet: H and W must be divisible by 2**depth = {factor} (skip connections), got "
        f"{image.shape[1]}x{image.shape[2]}; resize the input (paper: 192x320)"
      )
    x = image.astype(self.dtype)
    skips = []
    for i in range(self.depth):
      x = UNetBlock(self.base_width * 2**i, self.dtype, name=f"c{i + 1}")(x, train)
      skips.append(x)
      x = layers.max_pool(x, (2, 2))
      rate = self.dropout_rate * 0.5 if i == 0 else self.dropout_rate
      x = nn.Dropout(rate, deterministic=not train)(x)
    x = UNetBlock(self.base_width * 2**self.depth, self.dtype, name=f"c{self.depth + 1}")(x, train)
    for j, i in enumerate(reversed(range(self.depth))):
      idx = self.depth + 2 + j
      x = layers.ConvTranspose(
        self.base_width * 2**i,
        (3, 3),
        strides=2,
        padding="same",
        impl=self.conv_transpose_impl,
        dtype=self.dtype,
        name=f"u{idx}",
      )(x)
      x = jnp.concatenate([x, skips[i].astype(x.dtype)], axis=-1)
      x = nn.Dropout(self.dropout_rate, deterministic=not train)(x)
      x = UNetBlock(self.base_width * 2**i, self.dtype, name=f"c{idx}")(x, train)
    logits = layers.Conv(self.num_classes, (1, 1), dtype=self.dtype, name="out")(x)
    logits = logits.astype(jnp.float32)
    return {"seg_logits": logits, "aux": {"seg_probs": jax.nn.sigmoid(logits)}}
