"""Meta info of ``replica`` (registered through ``data_builders.DATASETS``).

Replica office_0 renders: 101 classes of ``classes_replica.json``, raw ids 1..101 -> training ids 0..100.
"""

from semdepth_jax.data.meta import DatasetMeta, generated_palette

CLASS_NAMES = (
  "backpack", "base-cabinet", "basket", "bathtub", "beam", "beanbag", "bed", "bench", "bike", "bin",
  "blanket", "blinds", "book", "bottle", "box", "bowl", "camera", "cabinet", "candle", "chair",
  "chopping-board", "clock", "cloth", "clothing", "coaster", "comforter", "computer-keyboard", "cup",
  "cushion", "curtain", "ceiling", "cooktop", "countertop", "desk", "desk-organizer", "desktop-computer",
  "door", "exercise-ball", "faucet", "floor", "handbag", "hair-dryer", "handrail", "indoor-plant",
  "knife-block", "kitchen-utensil", "lamp", "laptop", "major-appliance", "mat", "microwave", "monitor",
  "mouse", "nightstand", "pan", "panel", "paper-towel", "phone", "picture", "pillar", "pillow", "pipe",
  "plant-stand", "plate", "pot", "rack", "refrigerator", "remote-control", "scarf", "sculpture",
  "shelf", "shoe", "shower-stall", "sink", "small-appliance", "sofa", "stair", "stool", "switch",
  "table", "table-runner", "tablet", "tissue-paper", "toilet", "toothbrush", "towel", "tv-screen",
  "tv-stand", "umbrella", "utensil-holder", "vase", "vent", "wall", "wall-cabinet", "wall-plug",
  "wardrobe", "window", "rug", "logo", "bag", "set-of-clothing",
)  # fmt: skip
"""Names of the training ids 0..100 (raw Replica ids 1..101)."""

INTRINSICS = (600.0, 600.0, 599.5, 339.5)
"""Standard pinhole (fx, fy, cx, cy) of these renders at 680x1200 (not read from a file)."""

METAS = (
  DatasetMeta(
    name="replica",
    class_names=CLASS_NAMES,
    class_colors=generated_palette(len(CLASS_NAMES)),
    has_depth=True,
    has_segmentation=True,
    min_depth=1e-3,
    max_depth=10.0,
    depth_vis_range=(0.3, 6.0),
    eval_crop=None,
    native_size=(680, 1200),
    intrinsics=INTRINSICS,
    splits=("train", "validation"),
    scene_type="indoor",
    depth_note="depth_mm/*.png uint16 millimetres -> metres = v / 1000; 0 = invalid.",
    citation_key="straub2019replica",
  ),
)
