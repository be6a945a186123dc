"""SCRX 2-D depth CNN (reSidual-Convolutional-Refinement; paper 000 §3.2, Fig. 4-5; model_spec §1.2).

Layer table (reference code ``Depth estimation CNNs/SCRX 2D CNN model``), 192x320 input with 3 (RGB) or
3 + P (RGB + OHESS) channels; ``RB(c)`` = :class:`semdepth_jax.models.layers.ResidualBlock`:

======== ================================================================================ ===========
branch   layers                                                                           out
======== ================================================================================ ===========
main     RB(128) -> maxpool 2 -> RB(64) -> maxpool 2 -> RB(32) -> RB(16)                    48x80x16
         -> conv 3x3 'same' -> 1, sigmoid ("global depth")                                 48x80x1
refine   conv 3x3 -> 128, ReLU, BN -> maxpool 2 -> conv 3x3 -> 63, ReLU, BN -> maxpool 2    48x80x63
head     concat (64) -> conv 3x3 **'valid'** -> 1, final activation (sigmoid)              46x78x1
======== ================================================================================ ===========

Paper vs code (model_spec §11 item 1): the paper bilinearly upsamples the output to the input size, the
code does not (46x78). Default = code; ``paper_output_size=True`` adds the upsampling. The RGB+OHESS variant
(the paper's best SCRX) is the same network with 3 + P input channels (``use_ohess=True``, default).
BatchNorm is per channel (the reference's Keras BN on channels-first tensors normalises per column; not
reproduced, docs/model_spec.md §1.0).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from semdepth_jax.models import layers
from semdepth_jax.models import ohess as ohess_lib
from semdepth_jax.models import semantic_source as source_lib
from semdepth_jax.models.contract import DepthSegModel

Array = jax.Array


class SCRX(nn.Module, DepthSegModel):
  """SCRX depth network, RGB or RGB + OHESS input (paper 000; docs/model_spec.md §1.2).

  Call: ``model.apply(variables, image, labels, train=..., mutable=['batch_stats'])``. With
  ``use_ohess=True`` the OHESS planes come from the model's semantic source
  (``semdepth_jax.models.semantic_source``): by default the ground-truth ``labels``, as the paper trains
  and tests SCRX RGB+OHESS, or a trained segmentation run's predictions; precomputed planes passed as
  ``ohess=`` win.

  Parameter count at the defaults (17 input planes): 420,735 trainable + 1,822 batch statistics
  (RGB only: 386,687 + 1,822).

  Attributes:
    num_classes: training ids of the dataset (meta info); 14 in paper 000.
    use_ohess: append OHESS planes to the RGB channels (the paper's RGB+OHESS SCRX); ``False`` is the same
      as ``semantic_source='none'`` (RGB only).
    semantic_source: where the planes come from (``SemanticSource.from_config``: None = ground truth,
      ``{'source': 'predicted', 'workdir': W, 'mode': 'argmax'}`` = a trained segmentation run, ``'none'``
      = RGB only).
    ohess_classes: class ids that get a plane (e.g. a top-N subset); ``None`` = all ``num_classes``.
    ohess_ignore: ``'zero'`` or ``'plane0'``, see :func:`semdepth_jax.models.ohess.ohess_from_labels`.
    widths: residual block widths of the main branch (128, 64, 32, 16); max-pool after the first two.
    refine_widths: refinement conv widths (128, 63); the last plus 1 (global depth) = head input (64).
    final_activation: ``'sigmoid'`` (code and paper), ``'relu'`` or ``'linear'``.
    depth_output: ``'inverted_normalised'`` (default: the sigmoid regresses paper 000's [0, 1] inverted
      normalised target) or ``'metres'`` (then a sigmoid head needs ``max_depth``).
    max_depth: metres scale of a sigmoid head when ``depth_output='metres'``.
    depth_norm: metres, saturation distance of ``'inverted_normalised'`` output (paper 000: the dataset's
      ``max_depth``); read by ``decode`` (docs/model_spec.md §1.0).
    depth_prior: metres, typical depth of the data; ``'log'`` heads are offset by its log (see
      ``layers.depth_head_output``).
    paper_output_size: bilinearly upsample the 46x78 output to the input size (paper) instead of the
      code's raw output.
    dtype: computation dtype.
  """

  INPUTS = ("image", "labels")
  OUTPUTS = ("depth", "aux")

  num_classes: int = 14
  use_ohess: bool = True
  semantic_source: Mapping[str, Any] | str | None = None
  ohess_classes: tuple[int, ...] | None = None
  ohess_ignore: str = "zero"
  widths: Sequence[int] = (128, 64, 32, 16)
  refine_widths: Sequence[int] = (128, 63)
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
      labels: (B, H, W) int32 training ids (255 = ignore) for ground-truth OHESS; required when
        ``use_ohess`` and no ``ohess`` is given (except during ``init``).
      train: training mode (BatchNorm batch statistics).
      ohess: optional precomputed (B, H, W, P) planes.

    Returns:
      ``{'depth': (B, h, w, 1) float32, 'aux': {}}`` with h, w = H/4 - 2, W/4 - 2 (46x78), or H, W with
      ``paper_output_size``; units per ``depth_output``.

    Raises:
      ValueError: bad shapes, missing labels, unknown options.
    """
    ohess_lib.check_image(image, "scrx")
    x = image.astype(jnp.float32)
    source = source_lib.SemanticSource.from_config(
      self.semantic_source, default="gt" if self.use_ohess else "none", where="scrx"
    )
    if not self.use_ohess and source.active:
      raise ValueError(
        f"scrx: use_ohess=False (RGB only) contradicts semantic_source {source.source!r}; set "
        "use_ohess=True to read semantic planes"
      )
    if source.active:
      planes = ohess_lib.resolve_planes(
        image,
        labels,
        ohess,
        num_classes=self.num_classes,
        classes=self.ohess_classes,
        ignore_mode=self.ohess_ignore,
        initializing=self.is_initializing(),
        where="scrx",
        source=source,
      )
      x = ohess_lib.rgb_ohess_channels(x, planes)
    x = x.astype(self.dtype)

    main = x
    for i, w in enumerate(self.widths):
      main = layers.ResidualBlock(w, (3, 3), dtype=self.dtype, name=f"res{i + 1}")(main, train)
      if i < 2:
        main = layers.max_pool(main, (2, 2))
    main = nn.sigmoid(layers.Conv(1, (3, 3), dtype=self.dtype, name="global_depth")(main))

    ref = x
    for i, w in enumerate(self.refine_widths):
      ref = layers.ConvBNAct(
        w, (3, 3), order="conv_act_bn", dtype=self.dtype, name=f"refine{i + 1}"
      )(ref, train)
      ref = layers.max_pool(ref, (2, 2))

    y = jnp.concatenate([main, ref.astype(main.dtype)], axis=-1)
    y = layers.Conv(1, (3, 3), padding="valid", dtype=self.dtype, name="head")(y)
    depth = layers.depth_head_output(
      y,
      final_activation=self.final_activation,
      depth_output=self.depth_output,
      max_depth=self.max_depth,
      depth_prior=self.depth_prior,
      out_size=image.shape[1:3] if self.paper_output_size else None,
      where="scrx",
    )
    return {"depth": depth, "aux": {}}
