"""Meta info of ``synthia_al`` configs ``metric`` (default) and ``r0`` (``docs/model_spec.md`` §9.1).

Both store the 14-class SSegDep-Net label set; they differ in how depth is decoded (see the builder).
"""

from semdepth_jax.data.meta import SSEGDEP_CLASS_COLORS, SSEGDEP_CLASS_NAMES, DatasetMeta

DEFAULT_CONFIG = "metric"
"""What the bare name ``synthia_al`` means."""

SATURATION_M = 256.0
"""Depth at which paper 000's target saturates: R0 clips its decoded value (= metres / 256) at 1."""

_COMMON = dict(
  class_names=SSEGDEP_CLASS_NAMES,
  class_colors=SSEGDEP_CLASS_COLORS,
  has_depth=True,
  has_segmentation=True,
  min_depth=1e-3,
  max_depth=SATURATION_M,  # exclusive: saturated pixels (sky, far) are outside the evaluation mask.
  depth_vis_range=(1.0, 80.0),
  eval_crop=None,
  # Nominal SYNTHIA frame size; SYNTHIA-AL's own size is not checked here (frames keep their file size).
  native_size=(760, 1280),
  intrinsics=None,
  splits=("train", "test"),
  scene_type="outdoor",
  citation_key="bengar2019temporal",
)

METAS = (
  DatasetMeta(
    name="synthia_al/metric",
    depth_note="5000 (R + 256 G + 65536 B) / (2^24 - 1) metres, clipped at 256 m.",
    **_COMMON,
  ),
  DatasetMeta(
    name="synthia_al/r0",
    depth_note="256 x R0's 5000 (G + 256 B) / (2^24 - 1) (the red byte lost to uint16 overflow).",
    **_COMMON,
  ),
)
