"""Meta info of ``cityscapes`` configs ``full`` (default, 1024 x 2048) and ``half`` (512 x 1024)."""

from semdepth_jax.data.meta import CITYSCAPES19_CLASS_COLORS, CITYSCAPES19_CLASS_NAMES, DatasetMeta

DEFAULT_CONFIG = "full"
"""What the bare name ``cityscapes`` means."""

METAS = tuple(
  DatasetMeta(
    name=f"cityscapes/{config}",
    class_names=CITYSCAPES19_CLASS_NAMES,
    class_colors=CITYSCAPES19_CLASS_COLORS,
    has_depth=True,
    has_segmentation=True,
    min_depth=1e-3,
    # Stereo depth grows without bound as disparity -> 0; 80 m is the outdoor evaluation cap of the
    # field (docs/model_spec.md §8.5; paper 001 does not state one).
    max_depth=80.0,
    depth_vis_range=(2.0, 80.0),
    eval_crop=None,
    native_size=size,
    intrinsics=None,  # per image, from camera/*.json; stored per example.
    splits=("train", "validation"),
    scene_type="outdoor",
    depth_note=(
      "disparity/*.png uint16 p: p > 1 -> disparity (p - 1) / 256 px, "
      "depth = baseline * fx / disparity (camera/*.json); p in {0, 1} -> 0 = invalid "
      "(docs/model_spec.md §9.2)."
    ),
    citation_key="cordts2016cityscapes",
  )
  for config, size in (("full", (1024, 2048)), ("half", (512, 1024)))
)
