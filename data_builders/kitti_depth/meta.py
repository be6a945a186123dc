"""Meta info of ``kitti_depth`` configs ``eigen`` (default), ``eigen_benchmark``, ``benchmark``, ``semantics``.

KITTI images are ~375 x 1242 and differ by a few pixels between recording dates; examples are stored at their
own size with their own intrinsics (P_rect_02 of the drive's date), so ``intrinsics`` is ``None`` here.
"""

from semdepth_jax.data.meta import DatasetMeta

DEFAULT_CONFIG = "eigen"
"""What the bare name ``kitti_depth`` means."""

# The 19 Cityscapes training ids 0..18 in trainId order (Cordts et al. 2016, cityscapesScripts labels.py;
# model_spec §9.2). KITTI semantics uses the Cityscapes label ids, so its stored classes are this set.
CITYSCAPES19_CLASS_NAMES = (
  "road", "sidewalk", "building", "wall", "fence", "pole", "traffic light", "traffic sign",
  "vegetation", "terrain", "sky", "person", "rider", "car", "truck", "bus", "train", "motorcycle",
  "bicycle",
)  # fmt: skip
CITYSCAPES19_CLASS_COLORS = (
  (128, 64, 128), (244, 35, 232), (70, 70, 70), (102, 102, 156), (190, 153, 153), (153, 153, 153),
  (250, 170, 30), (220, 220, 0), (107, 142, 35), (152, 251, 152), (70, 130, 180), (220, 20, 60),
  (255, 0, 0), (0, 0, 142), (0, 0, 70), (0, 60, 100), (0, 80, 100), (0, 0, 230), (119, 11, 32),
)  # fmt: skip
CITYSCAPES19_LABEL_IDS = (7, 8, 11, 12, 13, 17, 19, 20, 21, 22, 23, 24, 25, 26, 27, 28, 31, 32, 33)
"""Cityscapes label id of each trainId 0..18 (every other label id 0..33 is ignored)."""

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
