"""Meta info of ``hypersim`` configs ``distance`` (default) and ``planar``.

HyperSim (Roberts et al. 2021) renders at 768 x 1024 with NYU-40 labels (``semantic.hdf5`` ids 1..40 ->
training ids 0..39). The configs differ only in what ``depth`` means: Euclidean distance to the camera
centre (HyperSim's ``depth_meters``, what paper 003's code R3 trains on, docs/model_spec.md §4.5) or planar
depth (negative camera-space z). Intrinsics are per scene, so ``intrinsics`` here is None.
"""

from semdepth_jax.data.meta import NYU40_CLASS_NAMES, DatasetMeta, generated_palette

DEFAULT_CONFIG = "distance"
"""What the bare name ``hypersim`` means."""

_DEPTH_NOTES = {
  "distance": "depth_meters.hdf5 as stored: Euclidean distance (m) to the camera centre; NaN -> 0 = invalid.",
  "planar": "depth_meters.hdf5 distance (m) times cos of each pixel ray's angle to the camera -z axis "
  "(per-scene M_cam_from_uv) = planar depth; NaN -> 0 = invalid.",
}

METAS = tuple(
  DatasetMeta(
    name=f"hypersim/{config}",
    class_names=NYU40_CLASS_NAMES,
    # Same colours as nyu_depth_v2_labeled/40, so NYU-40 labels look alike across datasets.
    class_colors=generated_palette(len(NYU40_CLASS_NAMES), seed_hue=0.1),
    has_depth=True,
    has_segmentation=True,
    min_depth=1e-3,
    # R3 clamps depth to 0..15 m before training and evaluation (docs/model_spec.md §4.5).
    max_depth=15.0,
    depth_vis_range=(0.5, 10.0),
    eval_crop=None,
    native_size=(768, 1024),
    intrinsics=None,
    splits=("train", "validation", "test"),
    scene_type="indoor",
    depth_note=note,
    citation_key="roberts2021hypersim",
  )
  for config, note in _DEPTH_NOTES.items()
)
