"""Meta info of ``kitti_depth`` configs ``eigen`` (default), ``eigen_benchmark``, ``benchmark``, ``semantics``.

KITTI images are ~375 x 1242 and differ by a few pixels between recording dates; examples are stored at their
own size with their own intrinsics (P_rect_02 of the drive's date), so ``intrinsics`` is ``None`` here.
"""

from semdepth_jax.data.meta import CITYSCAPES19_CLASS_COLORS, CITYSCAPES19_CLASS_NAMES, DatasetMeta

DEFAULT_CONFIG = "eigen"
"""What the bare name ``kitti_depth`` means."""


NATIVE_SIZE = (375, 1242)
"""(H, W) of the 2011_09_26 drives; other dates differ by a few pixels (e.g. 370 x 1226, 376 x 1241)."""

_DEPTH = dict(
  has_depth=True,
  min_depth=1e-3,
  max_depth=80.0,
  depth_vis_range=(1.0, 80.0),
  native_size=NATIVE_SIZE,
  intrinsics=None,  # per drive date, stored per example.
  scene_type="outdoor",
  citation_key="geiger2013vision",
)

METAS = (
  DatasetMeta(
    name="kitti_depth/eigen",
    class_names=(),
    class_colors=(),
    has_segmentation=False,
    eval_crop="kitti_garg",
    splits=("train", "test"),
    depth_note=(
      "Velodyne points projected into image_02 with calib_velo_to_cam + R_rect_00 + P_rect_02 "
      "(the classic Eigen-split ground truth); sparse, 0 = no return."
    ),
    **_DEPTH,
  ),
  DatasetMeta(
    name="kitti_depth/eigen_benchmark",
    class_names=(),
    class_colors=(),
    has_segmentation=False,
    eval_crop="kitti_garg",
    splits=("test",),
    depth_note="data_depth_annotated groundtruth PNG uint16 / 256 = metres, 0 = invalid (sparse).",
    **_DEPTH,
  ),
  DatasetMeta(
    name="kitti_depth/benchmark",
    class_names=(),
    class_colors=(),
    has_segmentation=False,
    eval_crop=None,
    splits=("train", "validation"),
    depth_note="data_depth_annotated groundtruth PNG uint16 / 256 = metres, 0 = invalid (sparse).",
    **_DEPTH,
  ),
  DatasetMeta(
    name="kitti_depth/semantics",
    class_names=CITYSCAPES19_CLASS_NAMES,
    class_colors=CITYSCAPES19_CLASS_COLORS,
    has_depth=False,
    has_segmentation=True,
    min_depth=1e-3,
    max_depth=80.0,
    depth_vis_range=(1.0, 80.0),
    eval_crop=None,
    native_size=NATIVE_SIZE,
    intrinsics=None,
    splits=("train",),
    scene_type="outdoor",
    depth_note="No depth (data_semantics has none).",
    citation_key="alhaija2018augmented",
  ),
)
