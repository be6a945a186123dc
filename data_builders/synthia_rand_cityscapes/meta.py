"""Meta info of ``synthia_rand_cityscapes`` configs ``cityscapes19`` (default) and ``synthia22``.

``cityscapes19`` stores the 19 Cityscapes training ids (the label set of ``kitti_depth/semantics``);
``synthia22`` stores SYNTHIA's own classes, raw ids 1..22 -> training ids 0..21 (``docs/model_spec.md`` §9.6).
"""

from semdepth_jax.data.meta import (
  CITYSCAPES19_CLASS_COLORS,
  CITYSCAPES19_CLASS_NAMES,
  DatasetMeta,
  generated_palette,
)

DEFAULT_CONFIG = "cityscapes19"
"""What the bare name ``synthia_rand_cityscapes`` means."""

SYNTHIA_CLASS_NAMES = (
  "sky", "building", "road", "sidewalk", "fence", "vegetation", "pole", "car", "traffic sign",
  "pedestrian", "bicycle", "motorcycle", "parking-slot", "road-work", "traffic light", "terrain",
  "rider", "truck", "bus", "train", "wall", "lanemarking",
)  # fmt: skip
"""SYNTHIA-RAND-CITYSCAPES raw ids 1..22 in order (0 = void), README of the set; model_spec §9.6."""

_COMMON = dict(
  has_depth=True,
  has_segmentation=True,
  min_depth=1e-3,
  max_depth=80.0,  # paper 002 ignores depth beyond 80 m (docs/model_spec.md §3.3).
  depth_vis_range=(1.0, 80.0),
  eval_crop=None,
  native_size=(760, 1280),
  intrinsics=None,  # not published with the set.
  splits=("train", "test"),
  scene_type="outdoor",
  depth_note="Depth/Depth/*.png uint16 centimetres (cv2 channel 0 = the PNG's third channel) / 100.",
  citation_key="ros2016synthia",
)

METAS = (
  DatasetMeta(
    name="synthia_rand_cityscapes/cityscapes19",
    class_names=CITYSCAPES19_CLASS_NAMES,
    class_colors=CITYSCAPES19_CLASS_COLORS,
    **_COMMON,
  ),
  DatasetMeta(
    name="synthia_rand_cityscapes/synthia22",
    class_names=SYNTHIA_CLASS_NAMES,
    class_colors=generated_palette(len(SYNTHIA_CLASS_NAMES), seed_hue=0.3),
    **_COMMON,
  ),
)
