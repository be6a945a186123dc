"""Dataset meta info: the registry that holds each dataset's constants.

Each dataset is registered once, next to its builder: ``data_builders/<name>/meta.py`` defines its
:class:`DatasetMeta` entries (``METAS``), and ``data_builders.DATASETS`` lists the packages. Builders, the
input pipeline, metrics, evaluation and visualisation read class names, colours, the ignore index, depth
units and ranges, evaluation crops and camera intrinsics through :func:`get_meta`, so a constant is never
written twice. Label sets shared by several datasets (the SSegDep-Net 14 classes, NYU-40, NYU-13,
Cityscapes-19) live here.

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
SSEGDEP_CLASS_COLORS = (
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
# Couprie et al. 13 classes (docs/model_spec.md §9.4), in the order of class13Mapping.mat ids 1..13.
NYU13_CLASS_NAMES = (
  "bed", "books", "ceiling", "chair", "floor", "furniture", "objects", "picture", "sofa", "table",
  "tv", "wall", "window",
)  # fmt: skip
# Standard Kinect calibration of the labelled set (NYU toolbox camera_params.m), at 480x640.
NYU_INTRINSICS = (518.8579, 519.4696, 325.5824, 253.7362)

# --- Cityscapes 19 training classes (model_spec §9.2); KITTI semantics uses the same label set. ----------
# Official cityscapesScripts ``labels.py`` facts: trainIds 0..18 in this order, with their colours.
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
# trainId of each Cityscapes label id 0..33 (the values of ``*_gtFine_labelIds.png``; KITTI semantics
# uses the same ids). 255 = ignored in training and evaluation: unlabeled, ego vehicle, rectification
# border, out of roi, static, dynamic, ground, parking, rail track, guard rail, bridge, tunnel, polegroup,
# caravan, trailer. (License plate has id -1 and never appears in labelIds images.)
CITYSCAPES_LABEL_ID_TO_TRAIN_ID = (
  255, 255, 255, 255, 255, 255, 255, 0, 1, 255,  # ids 0..9: void ..., road 7, sidewalk 8, parking 9
  255, 2, 3, 4, 255, 255, 255, 5, 255, 6,  # 10..19: building 11 .. fence 13, pole 17, traffic light 19
  7, 8, 9, 10, 11, 12, 13, 14, 15, 255,  # 20..29: traffic sign 20 .. bus 28, caravan 29
  255, 16, 17, 18,  # 30..33: trailer, train, motorcycle, bicycle
)  # fmt: skip

_REGISTRY: dict[str, DatasetMeta] = {}
_DEFAULT_CONFIG: dict[str, str] = {}
_LOADED = False


def register(meta: DatasetMeta, *, default_config: bool = False) -> DatasetMeta:
  """Adds ``meta`` to the registry; re-registering a name is an error.

  The project's datasets are registered from their builder packages (``data_builders/<name>/meta.py``,
  listed in ``data_builders.DATASETS``); call this only for datasets defined elsewhere (e.g. in tests).

  Args:
    meta: the meta info; ``meta.name`` is ``builder`` or ``builder/config``.
    default_config: this config is what the bare builder name means (``nyu_depth_v2_labeled`` ->
      ``nyu_depth_v2_labeled/40``).
  """
  if meta.name in _REGISTRY:
    raise ValueError(f"dataset meta {meta.name!r} is already registered")
  _REGISTRY[meta.name] = meta
  if default_config:
    base, _, config = meta.name.partition("/")
    _DEFAULT_CONFIG[base] = config
  return meta


def _ensure_loaded() -> None:
  """Registers the meta info of every builder package of the project (once)."""
  global _LOADED
  if _LOADED:
    return
  _LOADED = True
  import data_builders  # the project's builders; their meta modules import only this module.

  for meta, is_default in data_builders.all_metas():
    if meta.name not in _REGISTRY:
      register(meta, default_config=is_default)


def known_datasets() -> tuple[str, ...]:
  """Names accepted by :func:`get_meta`, sorted."""
  _ensure_loaded()
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
  _ensure_loaded()
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
