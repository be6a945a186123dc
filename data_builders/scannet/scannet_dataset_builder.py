"""TFDS builder ``scannet``: ScanNet frames of the ROB 2018 depth split, with NYU-40 labels where present.

Input: ScanNet scenes as the Robust Vision Challenge 2018 depth devkit downloads them
(github.com/ozendelait/rvc_devkit ``depth/``, ``download-scannet.py --rob_task_data``: every 100th frame),
or as ScanNet's SensReader exports them (Dai et al. 2017, github.com/ScanNet/ScanNet)::

  sceneXXXX_YY/color/<n>.jpg                      RGB, 1296 x 968
  sceneXXXX_YY/depth/<n>.png                      uint16 depth in millimetres, 640 x 480, 0 = invalid
  sceneXXXX_YY/intrinsic/intrinsic_depth.txt      4 x 4 (or 3 x 3) pinhole matrix of the depth images
  sceneXXXX_YY/label-filt/<n>.png                 (optional) uint16 ScanNet label ids, 0 = unannotated
  scannetv2-labels.combined.tsv                   ScanNet id -> NYU-40 id table (needed with label-filt)

``<n>`` is the frame number (``0.jpg`` or zero-padded; files of one frame are matched by number).

Stored (``data_builders.common``), docs/model_spec.md §9.8:

* ``image``: the colour frame resized to the depth frame's size (640 x 480) with PIL's bilinear filter
  (antialiased when shrinking), as the devkit's ``downsample_color_imgs.py`` does. Depth is the ground
  truth: resampling it to 1296 x 968 would invent measurements between samples; shrinking RGB only loses
  detail no depth pixel can be compared against. (ScanNet's depth is registered to the colour camera: the
  depth intrinsics are the colour intrinsics scaled to 640 x 480 within a pixel. The aspect ratios differ
  by 0.4 %, which the resize absorbs, as in the devkit.) Paper 004 trains at 320 x 240: a pipeline resize.
* ``depth``: PNG value / 1000 (metres), 0 = invalid.
* ``segmentation``: where ``label-filt/<n>.png`` exists, ScanNet id -> ``nyu40id`` column of
  ``scannetv2-labels.combined.tsv`` -> NYU-40 training id ``nyu40id - 1``; 0 (unannotated) and a
  ``nyu40id`` of 0 -> 255; nearest-neighbour resized to the stored size. Frames without a label image store
  255 everywhere with ``has_segmentation`` False.
* ``intrinsics``: (fx, fy, cx, cy) of ``intrinsic_depth.txt`` (the stored image's pixel grid).
* ``file_name``: ``sceneXXXX_YY_NNNNNN`` (frame number, six digits; also the key).

Splits (``rob2018_split.json``, the devkit's ``data_splits/*.txt``): ``train`` = its 1,041 train scenes;
``validation`` = its 156 val and 309 test scenes (the devkit's ``assign_scenes_to_split.py`` moves both to
``val/``); ``test`` = the 80 ``rob_test`` scenes (ScanNet's hidden test scenes; frames without depth there
are stored with ``has_depth`` False). Scenes in no list are not stored.
"""

from __future__ import annotations

import csv
import json
import logging
import re
from collections.abc import Iterator

import numpy as np
import tensorflow_datasets as tfds
from etils import epath
from PIL import Image

from data_builders import common
from semdepth_jax.data import meta as meta_lib

_HERE = epath.Path(__file__).parent
SPLIT_FILE = _HERE / "rob2018_split.json"
LABEL_MAP_FILE = "scannetv2-labels.combined.tsv"
INTRINSICS_FILE = "intrinsic/intrinsic_depth.txt"
DEPTH_SCALE = 1000.0  # depth PNG value per metre.
DEPTH_SIZE = (480, 640)  # ScanNet depth frames; the stored size when a frame has no depth image.
# The devkit's scene lists -> stored split (assign_scenes_to_split.py puts "test" scenes into val/).
ROB_LISTS = {"train": "train", "val": "validation", "test": "validation", "rob_test": "test"}
SPLIT_NAMES = ("train", "validation", "test")
_SCENE_RE = re.compile(r"scene\d{4}_\d{2}")
_FRAME_RE = re.compile(r"(\d+)\.(jpg|jpeg|png)", re.IGNORECASE)
_LABEL_ARCHIVE_RE = re.compile(r"(scene\d{4}_\d{2})_2d-label-filt\.zip")
_SEARCH_DEPTH = 3  # e.g. manual_dir/datasets_ScanNet/train/scene0000_00.
_LOG = logging.getLogger(__name__)

_INSTRUCTIONS = f"""\
Put ScanNet scenes (scan-net.org; ScanNet Terms of Use) into `manual_dir`, as the Robust Vision 2018 devkit
downloads them (github.com/ozendelait/rvc_devkit depth/: download-scannet.py --rob_task_data, every 100th
frame) or as ScanNet's SensReader exports them:

  <manual_dir>/sceneXXXX_YY/color/<n>.jpg                   RGB (1296 x 968)
  <manual_dir>/sceneXXXX_YY/depth/<n>.png                   uint16 millimetres (640 x 480), 0 = invalid
  <manual_dir>/sceneXXXX_YY/{INTRINSICS_FILE}   pinhole matrix of the depth images
  <manual_dir>/sceneXXXX_YY/label-filt/<n>.png              optional: uint16 ScanNet label ids
  <manual_dir>/{LABEL_MAP_FILE}             needed when any label-filt image is present

Scene folders may sit up to three levels below `manual_dir` (e.g. the devkit's datasets_ScanNet/train/),
or be packed as sceneXXXX_YY.zip (or one zip of many scenes) in `manual_dir`; ScanNet's per-scan
sceneXXXX_YY_2d-label-filt.zip archives may lie in `manual_dir` too. Archives are extracted into the TFDS
download folder (`manual_dir` is only read). Every colour frame of a train / validation scene needs its
depth PNG. Only scenes of the ROB 2018 lists (data_builders/scannet/rob2018_split.json) are stored.
"""


class Builder(common.ArrayRecordByDefault, tfds.core.GeneratorBasedBuilder):
  """ScanNet (Dai et al. 2017), ROB 2018 depth split: RGB at the depth size, depth, NYU-40 labels.

  Registered as ``scannet``. See the module docstring for inputs, units and splits.
  """

  VERSION = tfds.core.Version("1.0.0")
  RELEASE_NOTES = {
    "1.0.0": "Initial release: ROB 2018 split; label-filt NYU-40 labels where present."
  }
  MANUAL_DOWNLOAD_INSTRUCTIONS = _INSTRUCTIONS

  def _info(self) -> tfds.core.DatasetInfo:
    return self.dataset_info_from_configs(
      features=common.example_features(),
      homepage="http://www.scan-net.org/",
    )

  def _split_generators(self, dl_manager: tfds.download.DownloadManager):
    manual_dir = epath.Path(dl_manager.manual_dir)
    extract_dir = dl_manager.download_dir / "extracted"
    scenes, label_dirs = find_scenes(manual_dir, extract_dir)
    split_of = read_split()
    unlisted = sorted(s for s in scenes if s not in split_of)
    if unlisted:
      _LOG.warning(
        "scannet: %d scene(s) in no ROB 2018 list are not stored: %s", len(unlisted), unlisted
      )
    selected = {s: p for s, p in scenes.items() if s in split_of}
    if not selected:
      raise FileNotFoundError(
        f"no ScanNet scene of the ROB 2018 lists found under {manual_dir} (found: "
        f"{unlisted[:5] or 'no sceneXXXX_YY folders'})\n{_INSTRUCTIONS}"
      )
    frames = {s: list_frames(p, label_dirs.get(s)) for s, p in selected.items()}
    missing = [p / INTRINSICS_FILE for p in selected.values()]
    for scene, items in frames.items():
      if not items:
        missing.append(selected[scene] / "color" / "<n>.jpg")
      if split_of[scene] != "test":
        missing += [paths["depth"] for paths in items.values() if not paths["depth"].exists()]
    has_labels = any(
      paths["label"] is not None for items in frames.values() for paths in items.values()
    )
    label_map = find_label_map(manual_dir)
    if has_labels:
      missing.append(label_map)
    common.check_files_exist(missing, str(manual_dir), _INSTRUCTIONS)
    lut = read_label_map(label_map) if has_labels else None
    meta = meta_lib.get_meta("scannet")
    by_split = {name: [] for name in SPLIT_NAMES}
    for scene in sorted(selected):
      intrinsics = read_intrinsics(selected[scene] / INTRINSICS_FILE)
      for frame, paths in sorted(frames[scene].items()):
        by_split[split_of[scene]].append((f"{scene}_{frame:06d}", paths, intrinsics))
    return {
      name: self._generate_examples(items, lut, meta) for name, items in by_split.items() if items
    }

  def _generate_examples(
    self, items: list, lut: np.ndarray | None, meta: meta_lib.DatasetMeta
  ) -> Iterator[tuple[str, dict]]:
    for key, paths, intrinsics in items:
      yield key, load_frame(paths, key, intrinsics, lut, meta)


def read_split(path: epath.Path = SPLIT_FILE) -> dict[str, str]:
  """Reads ``rob2018_split.json``: {scene: stored split} by ``ROB_LISTS``.

  Raises:
    ValueError: unreadable file, a list missing, or a scene in two lists.
  """
  try:
    lists = json.loads(path.read_text())["scene_lists"]
    pairs = [(scene, ROB_LISTS[name]) for name in ROB_LISTS for scene in lists[name]]
  except (OSError, ValueError, KeyError, TypeError) as e:
    raise ValueError(f"{path}: cannot read scene_lists {tuple(ROB_LISTS)}: {e}") from e
  split_of: dict[str, str] = {}
  for scene, split in pairs:
    if scene in split_of:
      raise ValueError(f"{path}: scene {scene} is in two lists")
    split_of[scene] = split
  return split_of


def find_scenes(
  manual_dir: epath.Path, extract_dir: epath.Path
) -> tuple[dict[str, epath.Path], dict[str, epath.Path]]:
  """Finds scene folders (and separately packed ``label-filt`` folders) in ``manual_dir``.

  ``sceneXXXX_YY`` folders are looked for in ``manual_dir`` and up to three levels below it; ``*.zip`` /
  ``*.tar*`` archives directly in ``manual_dir`` are extracted once into ``extract_dir`` and searched the
  same way, except ScanNet's ``sceneXXXX_YY_2d-label-filt.zip``, whose ``label-filt/`` belongs to that scene.

  Returns:
    ({scene: folder}, {scene: label-filt folder from a 2d-label-filt archive}).

  Raises:
    ValueError: a scene found twice (both places named), or an archive that cannot be extracted.
  """
  roots, label_dirs = [manual_dir], {}
  # The archive helpers that common.locate_root uses (extract once, cached by a .done marker).
  for archive in sorted(manual_dir.iterdir()):
    if not common.is_archive(archive):
      continue
    folder = common.extract(archive, extract_dir)
    match = _LABEL_ARCHIVE_RE.fullmatch(archive.name)
    if match:
      label_dirs[match[1]] = folder / "label-filt"
    else:
      roots.append(folder)
  scenes: dict[str, epath.Path] = {}
  for root in roots:
    level = [root]
    for _ in range(_SEARCH_DEPTH + 1):
      below = []
      for folder in level:
        if _SCENE_RE.fullmatch(folder.name):
          if folder.name in scenes:
            raise ValueError(
              f"scene {folder.name} found twice: {scenes[folder.name]} and {folder}; keep one copy"
            )
          scenes[folder.name] = folder
        elif folder.is_dir():
          below += [c for c in folder.iterdir() if c.is_dir()]
      level = below
  return scenes, label_dirs


def _numbered(folder: epath.Path) -> dict[int, epath.Path]:
  """{frame number: file} of the ``<n>.jpg`` / ``<n>.png`` files in ``folder`` (empty if absent)."""
  out: dict[int, epath.Path] = {}
  if not folder.is_dir():
    return out
  for path in sorted(folder.iterdir()):
    match = _FRAME_RE.fullmatch(path.name)
    if match:
      n = int(match[1])
      if n in out:
        raise ValueError(f"{folder}: two files for frame {n}: {out[n].name} and {path.name}")
      out[n] = path
  return out


def list_frames(scene: epath.Path, label_dir: epath.Path | None = None) -> dict[int, dict]:
  """The frames of one scene: {frame number: {"color": path, "depth": path, "label": path or None}}.

  A frame is a colour image in ``color/``; ``depth`` is where its depth PNG is expected
  (``depth/<n>.png`` unless one with another zero-padding exists); ``label`` is its ``label-filt`` image
  (in the scene or in ``label_dir``) or None.
  """
  depths = _numbered(scene / "depth")
  labels = _numbered(scene / "label-filt")
  if label_dir is not None:
    labels = {**_numbered(label_dir), **labels}
  return {
    n: {
      "color": color,
      "depth": depths.get(n, scene / "depth" / f"{color.stem}.png"),
      "label": labels.get(n),
    }
    for n, color in _numbered(scene / "color").items()
  }


def find_label_map(manual_dir: epath.Path) -> epath.Path:
  """``scannetv2-labels.combined.tsv`` in ``manual_dir`` or up to two levels below (the former if absent)."""
  for pattern in (LABEL_MAP_FILE, f"*/{LABEL_MAP_FILE}", f"*/*/{LABEL_MAP_FILE}"):
    found = sorted(manual_dir.glob(pattern))
    if found:
      return found[0]
  return manual_dir / LABEL_MAP_FILE


def read_label_map(path: epath.Path) -> np.ndarray:
  """Reads ``scannetv2-labels.combined.tsv`` into a look-up table ScanNet id -> NYU-40 training id.

  The file is tab-separated with a header; the columns used are ``id`` (ScanNet label id, the value in
  ``label-filt`` images) and ``nyu40id`` (1..40, or 0 / empty for none).

  Returns:
    int16 (65536,): 0 -> 255 (unannotated), listed id -> ``nyu40id - 1`` (255 for a nyu40id of 0), -1
    for ids not in the table.

  Raises:
    ValueError: unreadable file, a missing column, non-integer values or nyu40id outside 0..40; the
      message names the file (and line).
  """
  lut = np.full(65536, -1, np.int16)
  lut[0] = meta_lib.IGNORE_INDEX
  try:
    with path.open("r") as f:
      reader = csv.DictReader(f, delimiter="\t")
      columns = reader.fieldnames or []
      if "id" not in columns or "nyu40id" not in columns:
        raise ValueError(f"{path}: columns 'id' and 'nyu40id' required, found {columns[:8]}")
      for line, row in enumerate(reader, start=2):
        try:
          label_id, nyu40 = int(row["id"]), int(row["nyu40id"] or 0)
        except (TypeError, ValueError) as e:
          raise ValueError(f"{path}:{line}: id / nyu40id must be integers: {e}") from e
        if not 0 < label_id < 65536 or not 0 <= nyu40 <= 40:
          raise ValueError(
            f"{path}:{line}: id {label_id} must be in 1..65535 and nyu40id {nyu40} in 0..40"
          )
        lut[label_id] = nyu40 - 1 if nyu40 else meta_lib.IGNORE_INDEX
  except OSError as e:
    raise ValueError(f"{path}: cannot read the label table: {e}") from e
  return lut


def read_intrinsics(path: epath.Path) -> tuple[float, float, float, float]:
  """(fx, fy, cx, cy) from a ScanNet ``intrinsic_*.txt`` (4 x 4 or 3 x 3 matrix, whitespace-separated).

  Raises:
    ValueError: unreadable, not 9 or 16 numbers, or a non-positive / non-finite focal length; the message
      names the file.
  """
  try:
    values = np.array([float(v) for v in path.read_text().split()])
  except (OSError, ValueError) as e:
    raise ValueError(f"{path}: cannot read a 4 x 4 intrinsic matrix: {e}") from e
  if values.size not in (9, 16):
    raise ValueError(f"{path}: expected 16 (4 x 4) or 9 (3 x 3) numbers, got {values.size}")
  k = values.reshape(4, 4) if values.size == 16 else values.reshape(3, 3)
  fx, fy, cx, cy = k[0, 0], k[1, 1], k[0, 2], k[1, 2]
  if not np.all(np.isfinite(values)) or fx <= 0 or fy <= 0:
    raise ValueError(f"{path}: invalid intrinsics fx={fx}, fy={fy}, cx={cx}, cy={cy}")
  return (float(fx), float(fy), float(cx), float(cy))


def _read_image(path: epath.Path, kind: str) -> Image.Image:
  """Opens a JPEG / PNG with PIL (``kind`` names the file's role in errors)."""
  try:
    with path.open("rb") as f:
      img = Image.open(f)
      img.load()
      return img
  except (OSError, SyntaxError, Image.DecompressionBombError) as e:
    raise ValueError(f"{path}: cannot decode the {kind} image: {e}") from e


def nearest_resize(labels: np.ndarray, height: int, width: int) -> np.ndarray:
  """Nearest-neighbour resize with pixel-centre alignment: output (i, j) <- input (floor((i + .5) h / H), ...)."""
  h, w = labels.shape
  rows = np.minimum(((np.arange(height) + 0.5) * h / height).astype(np.int64), h - 1)
  cols = np.minimum(((np.arange(width) + 0.5) * w / width).astype(np.int64), w - 1)
  return labels[rows[:, None], cols[None, :]]


def load_frame(
  paths: dict,
  key: str,
  intrinsics: tuple[float, float, float, float],
  lut: np.ndarray | None,
  meta: meta_lib.DatasetMeta,
) -> dict:
  """Reads, converts and validates one frame into the stored example (``common.make_example``).

  Raises:
    ValueError: undecodable image, depth that is not 16-bit, a label image that is not 8/16-bit grey, or
      ScanNet ids missing from the label table; the message names the file.
  """
  depth = None
  if paths["depth"].exists():
    depth = common.read_png(paths["depth"], "uint16").astype(np.float32) / np.float32(DEPTH_SCALE)
  height, width = depth.shape if depth is not None else DEPTH_SIZE
  color = _read_image(paths["color"], "colour").convert("RGB")
  if color.size != (width, height):
    color = color.resize((width, height), Image.BILINEAR)
  labels = None
  if paths["label"] is not None:
    img = _read_image(paths["label"], "label")
    if img.mode not in ("I;16", "I;16B", "I;16L", "I", "L", "P"):
      raise ValueError(
        f"{paths['label']}: expected a 16-bit or 8-bit grey label PNG, got {img.mode!r}"
      )
    raw = np.array(img).astype(np.int64)
    if raw.min() < 0 or raw.max() > 65535:
      raise ValueError(f"{paths['label']}: label ids outside 0..65535")
    labels = lut[raw]
    if (labels < 0).any():
      ids = np.unique(raw[labels < 0]).tolist()
      raise ValueError(f"{paths['label']}: ScanNet ids {ids[:10]} not in {LABEL_MAP_FILE}")
    labels = nearest_resize(labels, height, width)
  return common.make_example(
    image=np.asarray(color, np.uint8),
    depth=depth,
    segmentation=labels,
    intrinsics=intrinsics,
    file_name=key,
    num_classes=meta.num_classes,
    source=str(paths["color"]),
  )
