"""Meta info of ``synthetic_city`` (registered through ``data_builders.DATASETS``)."""

from semdepth_jax.data.meta import SSEGDEP_CLASS_COLORS, SSEGDEP_CLASS_NAMES, DatasetMeta

METAS = (
  DatasetMeta(
    name="synthetic_city",
    class_names=SSEGDEP_CLASS_NAMES,
    class_colors=SSEGDEP_CLASS_COLORS,
    has_depth=True,
    has_segmentation=True,
    min_depth=1e-3,
    max_depth=80.0,
    depth_vis_range=(1.0, 80.0),
    eval_crop=None,
    native_size=(192, 320),
    intrinsics=None,  # depends on the build resolution; stored per example.
    splits=("train", "validation", "test"),
    scene_type="outdoor",
    depth_note="Exact planar (z) depth from ray casting; sky and anything beyond the far plane = 0.",
    citation_key="",
  ),
)
