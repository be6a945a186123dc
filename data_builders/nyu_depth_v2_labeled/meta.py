"""Meta info of ``nyu_depth_v2_labeled`` configs ``40`` (default), ``13``, ``40_raw`` and ``13_raw``."""

from semdepth_jax.data.meta import (
  NYU13_CLASS_NAMES,
  NYU40_CLASS_NAMES,
  NYU_INTRINSICS,
  DatasetMeta,
  generated_palette,
)

_INPAINTED = (
  ".mat `depths` (in-painted, dense) in metres; extracted PNGs uint16 / 5000 = metres; 0 = invalid."
)
_RAW = (
  ".mat `rawDepths` (projected Kinect depth, not in-painted) in metres; 0 = no measurement. The depth "
  "the field's NYU protocols evaluate on."
)

DEFAULT_CONFIG = "40"
"""What the bare name ``nyu_depth_v2_labeled`` means."""

METAS = tuple(
  DatasetMeta(
    name=f"nyu_depth_v2_labeled/{config}",
    class_names=names,
    class_colors=generated_palette(len(names), seed_hue=0.1),
    has_depth=True,
    has_segmentation=True,
    min_depth=1e-3,
    max_depth=10.0,
    depth_vis_range=(0.5, 10.0),
    eval_crop="nyu_eigen",
    native_size=(480, 640),
    intrinsics=NYU_INTRINSICS,
    splits=("train", "test"),
    scene_type="indoor",
    depth_note=note,
    citation_key="silberman2012indoor",
  )
  for config, names, note in (
    ("40", NYU40_CLASS_NAMES, _INPAINTED),
    ("13", NYU13_CLASS_NAMES, _INPAINTED),
    ("40_raw", NYU40_CLASS_NAMES, _RAW),
    ("13_raw", NYU13_CLASS_NAMES, _RAW),
  )
)
