"""TFDS builder ``replica``: Replica scene renders with RGB, metric depth and 101-class semantics.

Input (one rendered scene, e.g. ``office_0``; the layout of ``../shared/data/replica_office0``)::

  rgb/NNNN.png              uint8 RGB (1200 x 680 for the shipped renders)
  depth_mm/NNNN.png         uint16 depth in millimetres, 0 = invalid
  semantic_class/NNNN.png   uint8 Replica class ids 1..101, 0 = unlabelled
  classes_replica.json      {"1": "backpack", ..., "101": "set-of-clothing"}
  instance/NNNN.png         uint16 instance ids (not stored)

Stored (``data_builders.common``): depth in metres ``v / 1000`` (0 stays invalid); labels are training ids
``k - 1`` for raw id ``k`` in 1..101 and ``IGNORE_INDEX`` (255) for raw 0 (``semdepth_jax.data.meta``);
intrinsics ``data_builders.replica.meta.INTRINSICS`` (scaled when an image has another size with the same aspect ratio).
Config ``nyu40`` stores the same frames with labels mapped to NYU-40 training ids 0..39 by
``data_builders.replica.meta.NYU40_MAPPING`` (unmappable classes and raw 0 -> 255), meta ``replica/nyu40``.

Splits: frames numbered below ``ReplicaConfig.first_validation_frame`` (default 60, i.e. 0000-0059) go to
``train``, the rest (0060-0080 for office_0) to ``validation``. The frames lie on one camera path, so a
contiguous boundary keeps neighbouring, near-duplicate frames on the same side.
"""

from __future__ import annotations

import dataclasses
import json
import re
from collections.abc import Iterator

import numpy as np
import tensorflow_datasets as tfds
from etils import epath

from data_builders import common
from data_builders.replica import meta as replica_meta
from semdepth_jax.data import meta as meta_lib

_META = meta_lib.get_meta("replica")
NUM_RAW_CLASSES = len(replica_meta.CLASS_NAMES)  # raw ids 1..101; 0 = unlabelled.
DEPTH_SCALE = 1000.0  # depth_mm PNG value per metre.
_CLASSES_FILE = "classes_replica.json"
_FOLDERS = ("rgb", "depth_mm", "semantic_class")

_INSTRUCTIONS = """\
Put ONE rendered Replica scene into `manual_dir`, either extracted or as a single archive:

  <manual_dir>/classes_replica.json          {"1": "backpack", ..., "101": "set-of-clothing"}
  <manual_dir>/rgb/NNNN.png                  uint8 RGB
  <manual_dir>/depth_mm/NNNN.png             uint16 depth in millimetres, 0 = invalid
  <manual_dir>/semantic_class/NNNN.png       uint8 class ids 1..101, 0 = unlabelled
  (instance/NNNN.png may be present; it is not stored)

The scene folder may also sit one or two levels below `manual_dir` (e.g. <manual_dir>/office_0/rgb/...),
or be packed as one .zip / .tar / .tar.gz / .tgz / .tar.bz2 / .tar.xz archive in `manual_dir`; archives are
extracted into the TFDS download folder (`manual_dir` is only read).
Every frame NNNN needs all three PNGs. Split rule: frame number < first_validation_frame (default 60) ->
train, otherwise -> validation; choose another boundary with
`config=ReplicaConfig(name="first_val_70", first_validation_frame=70)`.
Config `nyu40` reads the same files and stores NYU-40 labels (data_builders/replica/meta.py NYU40_MAPPING).
"""


LABEL_SETS = ("replica", "nyu40")
"""Values of ``ReplicaConfig.label_set``."""


@dataclasses.dataclass(eq=False)
class ReplicaConfig(tfds.core.BuilderConfig):
  """Builder config of ``replica``.

  Attributes:
    first_validation_frame: frames with number ``< first_validation_frame`` go to ``train``, the others to
      ``validation``; a split left without frames is not written.
    label_set: ``"replica"`` (the 101 Replica classes, meta ``replica``) or ``"nyu40"`` (NYU-40 through
      ``meta.NYU40_MAPPING``, meta ``replica/nyu40``).
  """

  first_validation_frame: int = 60
  label_set: str = "replica"


class Builder(common.ArrayRecordByDefault, tfds.core.GeneratorBasedBuilder):
  """Replica scene renders (Straub et al. 2019): RGB, depth in metres and 101-class labels.

  Registered as ``replica`` (the name TFDS derives from this module's ``replica_dataset_builder``).
  See the module docstring for the input layout, units and split rule.
  """

  VERSION = tfds.core.Version("1.1.0")
  RELEASE_NOTES = {
    "1.0.0": "Initial release: one scene, frame-number train/validation split.",
    "1.1.0": "Config nyu40 (labels mapped to NYU-40); config default stores the same data as 1.0.0.",
  }
  MANUAL_DOWNLOAD_INSTRUCTIONS = _INSTRUCTIONS
  BUILDER_CONFIGS = [
    ReplicaConfig(
      name="default",
      description="Frames 0000-0059 -> train, frames from 0060 -> validation.",
      first_validation_frame=60,
    ),
    ReplicaConfig(
      name="nyu40",
      description="As default, labels mapped to the 40 NYU-40 classes (meta.NYU40_MAPPING).",
      first_validation_frame=60,
      label_set="nyu40",
    ),
  ]
  DEFAULT_BUILDER_CONFIG_NAME = "default"

  def _info(self) -> tfds.core.DatasetInfo:
    return self.dataset_info_from_configs(
      features=common.example_features(),
      homepage="https://github.com/facebookresearch/Replica-Dataset",
    )

  def _split_generators(self, dl_manager: tfds.download.DownloadManager):
    root = find_scene_root(epath.Path(dl_manager.manual_dir), dl_manager.download_dir / "extracted")
    stems = list_frames(root)
    check_class_names(root / _CLASSES_FILE)
    label_set = self.builder_config.label_set
    lut = label_lut(label_set)
    meta = meta_lib.get_meta("replica/nyu40" if label_set == "nyu40" else "replica")
    boundary = self.builder_config.first_validation_frame
    splits = {"train": [], "validation": []}
    for stem in stems:
      split = "train" if frame_number(root / "rgb" / f"{stem}.png") < boundary else "validation"
      splits[split].append(stem)
    return {
      name: self._generate_examples(root, frames, lut, meta)
      for name, frames in splits.items()
      if frames
    }

  def _generate_examples(
    self, root: epath.Path, stems: list[str], lut: np.ndarray, meta: meta_lib.DatasetMeta
  ) -> Iterator[tuple[str, dict]]:
    for stem in stems:
      yield stem, load_frame(root, stem, lut, meta)


def label_lut(label_set: str = "replica") -> np.ndarray:
  """Look-up table raw Replica id (0..255) -> stored training id.

  Args:
    label_set: ``"replica"``: raw ``k`` in 1..101 -> ``k - 1``; ``"nyu40"``: raw ``k`` -> the index in
      ``semdepth_jax.data.meta.NYU40_CLASS_NAMES`` of ``meta.NYU40_MAPPING[CLASS_NAMES[k - 1]]``, or 255
      where that is None.

  Returns:
    int16 (256,): entry 0 (unlabelled) = 255, entries 1..101 as above, -1 for raw ids above 101 (invalid).

  Raises:
    ValueError: unknown ``label_set``.
  """
  if label_set not in LABEL_SETS:
    raise ValueError(f"label_set must be one of {LABEL_SETS}, got {label_set!r}")
  lut = np.full(256, -1, np.int16)
  lut[0] = meta_lib.IGNORE_INDEX
  if label_set == "replica":
    lut[1 : NUM_RAW_CLASSES + 1] = np.arange(NUM_RAW_CLASSES)
  else:
    nyu40 = meta_lib.NYU40_CLASS_NAMES
    for k, name in enumerate(replica_meta.CLASS_NAMES, start=1):
      target = replica_meta.NYU40_MAPPING[name]
      lut[k] = meta_lib.IGNORE_INDEX if target is None else nyu40.index(target)
  return lut


def find_scene_root(manual_dir: epath.Path, extract_dir: epath.Path) -> epath.Path:
  """Finds the scene folder in ``manual_dir`` (itself, a sub-folder or an extracted archive).

  Args:
    manual_dir: TFDS ``manual_dir``.
    extract_dir: folder where archives found in ``manual_dir`` are extracted (cached between builds).

  Returns:
    The folder holding ``classes_replica.json`` and the PNG folders.

  Raises:
    FileNotFoundError: no scene found; lists every required path under ``manual_dir``.
    ValueError: more than one scene found, or an archive that cannot be extracted.
  """
  root = common.locate_root(manual_dir, _CLASSES_FILE, extract_dir)
  common.check_files_exist(
    [root / _CLASSES_FILE] + [root / f for f in _FOLDERS], str(root), _INSTRUCTIONS
  )
  return root


def list_frames(root: epath.Path) -> list[str]:
  """Returns the sorted frame stems after checking that every frame has all three PNGs.

  Raises:
    FileNotFoundError: one message listing every missing PNG (a frame present in any of ``rgb/``,
      ``depth_mm/``, ``semantic_class/`` must be present in all three).
  """
  stems = sorted({p.stem for folder in _FOLDERS for p in (root / folder).glob("*.png")})
  if not stems:
    raise FileNotFoundError(f"no frames (*.png) in {root}/rgb\n{_INSTRUCTIONS}")
  common.check_files_exist(
    [root / folder / f"{stem}.png" for stem in stems for folder in _FOLDERS],
    str(root),
    _INSTRUCTIONS,
  )
  return stems


def check_class_names(path: epath.Path) -> None:
  """Checks that ``classes_replica.json`` names ids 1..101 exactly as ``data_builders.replica.meta.CLASS_NAMES``.

  Raises:
    ValueError: unreadable file, other ids, or a differing name (the first differences are listed).
  """
  try:
    table = json.loads(path.read_text())
  except (OSError, ValueError) as e:
    raise ValueError(f"{path}: cannot read the class table: {e}") from e
  expected = {str(i + 1): name for i, name in enumerate(replica_meta.CLASS_NAMES)}
  if not isinstance(table, dict) or set(table) != set(expected):
    raise ValueError(
      f"{path}: expected ids 1..{NUM_RAW_CLASSES} as keys, got "
      f"{sorted(table, key=str)[:5] if isinstance(table, dict) else type(table).__name__}..."
    )
  diffs = [f"{k}: {table[k]!r} != {v!r}" for k, v in expected.items() if table[k] != v]
  if diffs:
    raise ValueError(
      f"{path}: {len(diffs)} class name(s) differ from data_builders/replica/meta.py "
      f"(file != meta): {'; '.join(diffs[:5])}"
    )


def frame_number(path: epath.Path) -> int:
  """Frame number of ``NNNN.png``; raises ValueError naming ``path`` if the stem is not a number."""
  if not re.fullmatch(r"\d+", path.stem):
    raise ValueError(f"{path}: frame file names must be numbers (NNNN.png) for the split rule")
  return int(path.stem)


def load_frame(
  root: epath.Path,
  stem: str,
  lut: np.ndarray | None = None,
  meta: meta_lib.DatasetMeta | None = None,
) -> dict:
  """Decodes, converts and validates one frame into the stored example (``common.make_example``).

  Args:
    root: the scene folder.
    stem: frame name ``NNNN``.
    lut: raw id -> training id table of :func:`label_lut` (default: the Replica label set).
    meta: the stored dataset's meta (default: ``replica``); gives the number of classes.

  Raises:
    ValueError: undecodable PNG, wrong bit depth, sizes that disagree, or raw class ids above 101; the
      message names the file.
  """
  rgb_path = root / "rgb" / f"{stem}.png"
  depth_path = root / "depth_mm" / f"{stem}.png"
  label_path = root / "semantic_class" / f"{stem}.png"
  image = common.read_png(rgb_path, "rgb")
  depth = common.read_png(depth_path, "uint16").astype(np.float32) / np.float32(DEPTH_SCALE)
  lut = label_lut() if lut is None else lut
  meta = _META if meta is None else meta
  raw = common.read_png(label_path, "uint8")
  labels = lut[raw]
  bad = labels < 0
  if bad.any():
    raise ValueError(
      f"{label_path}: raw class ids {np.unique(raw[bad]).tolist()[:10]} outside 0..{NUM_RAW_CLASSES}"
    )
  for path, array in ((depth_path, depth), (label_path, raw)):
    if array.shape != image.shape[:2]:
      raise ValueError(
        f"{path}: size (H, W) = {array.shape} does not match {rgb_path.name} {image.shape[:2]}"
      )
  return common.make_example(
    image=image,
    depth=depth,
    segmentation=labels,
    intrinsics=common.scaled_intrinsics(meta, *image.shape[:2]),
    file_name=stem,
    num_classes=meta.num_classes,
    source=str(rgb_path),
  )
