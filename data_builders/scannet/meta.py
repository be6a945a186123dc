"""Meta info of ``scannet`` (ROB 2018 depth split, NYU-40 labels where ``label-filt`` images exist)."""

from semdepth_jax.data.meta import NYU40_CLASS_NAMES, DatasetMeta, generated_palette

METAS = (
  DatasetMeta(
    name="scannet",
    class_names=NYU40_CLASS_NAMES,
    # Same colours as nyu_depth_v2_labeled/40, so NYU-40 labels look alike across datasets.
    class_colors=generated_palette(len(NYU40_CLASS_NAMES), seed_hue=0.1),
    has_depth=True,
    has_segmentation=True,
    min_depth=1e-3,
    max_depth=10.0,
    depth_vis_range=(0.5, 8.0),
    eval_crop=None,
    native_size=(480, 640),
    intrinsics=None,  # per scene: intrinsic/intrinsic_depth.txt, stored with every example.
    splits=("train", "validation", "test"),
    scene_type="indoor",
    depth_note="depth/*.png uint16 millimetres -> metres = v / 1000; 0 = invalid.",
    citation_key="dai2017scannet",
  ),
)
