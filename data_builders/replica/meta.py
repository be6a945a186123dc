"""Meta info of ``replica`` (registered through ``data_builders.DATASETS``).

Replica office_0 renders: 101 classes of ``classes_replica.json``, raw ids 1..101 -> training ids 0..100
(config ``default``), or the same frames with labels mapped to NYU-40 by :data:`NYU40_MAPPING` (config
``nyu40``, meta ``replica/nyu40``), so NYU-40 models (papers 001, 003, 004) train and evaluate on Replica.
"""

from semdepth_jax.data.meta import NYU40_CLASS_NAMES, DatasetMeta, generated_palette

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

# Replica class -> NYU-40 class name (``semdepth_jax.data.meta.NYU40_CLASS_NAMES``), None = ignore (255).
# Rule: where NYU Depth v2 has a raw class of the same name (``allClassName`` of the NYU toolbox's
# classMapping40.mat, Gupta et al. 2013), the Replica class takes that raw class's NYU-40 class, so a label
# means what it means in NYUv2 (raw name in brackets when it is spelt differently). Otherwise the class goes
# to the NYU-40 class of the closest NYU raw class by meaning (reason given). Two deliberate departures from
# the name rule are marked DEPARTURE.
NYU40_MAPPING: dict[str, str | None] = {
  "backpack": "otherprop",  # NYU "backpack" -> otherprop (not bag).
  "base-cabinet": "cabinet",  # lower kitchen cabinets; NYU "cabinet".
  "basket": "otherprop",
  "bathtub": "bathtub",
  "beam": "otherstructure",  # ceiling / wall beams: structure, like NYU "column".
  "beanbag": "otherfurniture",  # NYU "bean bag".
  "bed": "bed",
  "bench": "otherfurniture",
  "bike": "otherprop",  # NYU "bicycle".
  "bin": "otherprop",  # NYU "bin" (NYU "garbage bin" would be otherfurniture).
  "blanket": "otherprop",
  "blinds": "blinds",
  "book": "books",  # DEPARTURE: NYU "book" (a single book) -> otherprop and "books" (rows) -> books;
  # Replica has one class for both and labels mostly books on shelves, which NYU calls "books".
  "bottle": "otherprop",
  "box": "box",
  "bowl": "otherprop",
  "camera": "otherprop",
  "cabinet": "cabinet",
  "candle": "otherprop",
  "chair": "chair",
  "chopping-board": "otherprop",  # NYU "cutting board".
  "clock": "otherprop",
  "cloth": "otherprop",  # a piece of fabric (dish cloth, table cloth), not clothes; NYU "tablecloth".
  "clothing": "clothes",  # NYU "clothes".
  "coaster": "otherprop",
  "comforter": "otherprop",  # NYU "comforter" -> otherprop (bedding is not "bed" in NYU-40).
  "computer-keyboard": "otherprop",  # NYU "keyboard".
  "cup": "otherprop",
  "cushion": "pillow",  # no NYU "cushion"; sofa and chair cushions look and sit like pillows.
  "curtain": "curtain",
  "ceiling": "ceiling",
  "cooktop": "otherstructure",  # built into the counter; NYU "stove" -> otherstructure.
  "countertop": "counter",  # NYU "counter".
  "desk": "desk",
  "desk-organizer": "otherprop",  # small desk items; NYU "pen holder", "file holder" -> otherprop.
  "desktop-computer": "otherprop",  # NYU "computer".
  "door": "door",
  "exercise-ball": "otherprop",  # NYU "excercise ball" (sic).
  "faucet": "otherprop",
  "floor": "floor",
  "handbag": "bag",  # DEPARTURE: NYU "purse" -> otherprop, but a handbag is a bag and Replica also has
  # "bag" (-> bag); splitting the two Replica bag classes over bag / otherprop would be arbitrary.
  "hair-dryer": "otherprop",  # NYU "hair dryer".
  "handrail": "otherstructure",  # NYU "railing", "banister".
  "indoor-plant": "otherprop",  # NYU "plant".
  "knife-block": "otherprop",  # NYU "knife", "knife rack" -> otherprop.
  "kitchen-utensil": "otherprop",  # NYU "kitchen utensil".
  "lamp": "lamp",
  "laptop": "otherprop",
  "major-appliance": "otherstructure",  # built-in oven / dishwasher: NYU "oven", "dishwasher".
  "mat": "floor mat",  # door and bath mats lie on the floor; NYU "floor mat".
  "microwave": "otherprop",
  "monitor": "otherprop",  # NYU "monitor" -> otherprop (only "television" is television).
  "mouse": "otherprop",
  "nightstand": "night stand",  # NYU "night stand".
  "pan": "otherprop",
  "panel": None,  # ignore: wall panelling, electrical or acoustic panels - no single NYU-40 class.
  "paper-towel": "otherprop",  # NYU "paper towel".
  "phone": "otherprop",  # NYU "telephone", "cell phone".
  "picture": "picture",
  "pillar": "otherstructure",  # NYU "column", "wooden pillar".
  "pillow": "pillow",
  "pipe": "otherprop",
  "plant-stand": "otherfurniture",  # NYU "stand".
  "plate": "otherprop",
  "pot": "otherprop",
  "rack": "otherfurniture",  # free-standing racks; NYU "drying rack", "bookrack" -> otherfurniture.
  "refrigerator": "refrigerator",  # NYU "refridgerator" (sic).
  "remote-control": "otherprop",  # NYU "remote control".
  "scarf": "otherprop",
  "sculpture": "otherprop",
  "shelf": "shelves",  # NYU "shelves".
  "shoe": "otherprop",
  "shower-stall": "otherstructure",  # the enclosure is built in; NYU "shower base" -> otherstructure.
  "sink": "sink",
  "small-appliance": "otherprop",  # NYU "toaster", "blender", "coffee machine".
  "sofa": "sofa",
  "stair": "otherstructure",  # NYU "stairs".
  "stool": "otherprop",  # NYU "stool" -> otherprop (not chair).
  "switch": "otherstructure",  # NYU "light switch".
  "table": "table",
  "table-runner": "otherprop",  # NYU "table runner".
  "tablet": "otherprop",  # NYU "ipad".
  "tissue-paper": "otherprop",  # NYU "tissue", "toilet paper".
  "toilet": "toilet",
  "toothbrush": "otherprop",
  "towel": "towel",
  "tv-screen": "television",  # NYU "television".
  "tv-stand": "otherfurniture",  # NYU "tv stand".
  "umbrella": "otherprop",
  "utensil-holder": "otherprop",  # NYU "... holder" classes are all otherprop.
  "vase": "otherprop",
  "vent": "otherstructure",  # NYU "air vent".
  "wall": "wall",
  "wall-cabinet": "cabinet",  # upper kitchen cabinets; NYU "cabinet".
  "wall-plug": "otherprop",  # NYU "electrical outlet".
  "wardrobe": "otherfurniture",  # NYU "wardrobe".
  "window": "window",
  "rug": "otherprop",  # NYU "rug" -> otherprop (not floor mat).
  "logo": "otherprop",  # a sign on a wall; NYU "sign".
  "bag": "bag",
  "set-of-clothing": "clothes",
}
"""Replica class -> NYU-40 class (None = ignore), read by the ``nyu40`` config of the builder."""

INTRINSICS = (600.0, 600.0, 599.5, 339.5)
"""Standard pinhole (fx, fy, cx, cy) of these renders at 680x1200 (not read from a file)."""

_COMMON = dict(
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
)

METAS = (
  # Config ``default`` (and any other config with the Replica label set) uses the base entry.
  DatasetMeta(
    name="replica",
    class_names=CLASS_NAMES,
    class_colors=generated_palette(len(CLASS_NAMES)),
    **_COMMON,
  ),
  # Same colours as nyu_depth_v2_labeled/40, so NYU-40 labels look alike across datasets.
  DatasetMeta(
    name="replica/nyu40",
    class_names=NYU40_CLASS_NAMES,
    class_colors=generated_palette(len(NYU40_CLASS_NAMES), seed_hue=0.1),
    **_COMMON,
  ),
)
