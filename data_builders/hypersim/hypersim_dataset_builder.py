"""TFDS builder ``hypersim``: HyperSim frames with R3's LDR colour, depth in metres and NYU-40 labels.

Input: HyperSim scenes in the official layout (Roberts et al. 2021, github.com/apple/ml-hypersim)::

  ai_VVV_NNN/images/scene_cam_XX_final_hdf5/frame.IIII.color.hdf5            float16 (768, 1024, 3) HDR RGB
  ai_VVV_NNN/images/scene_cam_XX_geometry_hdf5/frame.IIII.depth_meters.hdf5  float16 (768, 1024) metres, NaN
  ai_VVV_NNN/images/scene_cam_XX_geometry_hdf5/frame.IIII.semantic.hdf5      int16 (768, 1024) NYU-40 1..40, -1

each holding one HDF5 dataset named ``dataset``. Scene folders may sit up to three levels below
``manual_dir`` and may be split over several trees (R3's downloader writes ``image/``, ``depth/`` and
``semantic/`` trees with the same scene folders); the official per-scene ``ai_VVV_NNN.zip`` archives in
``manual_dir`` are read in place (the full set is 1.9 TB, so nothing is extracted).

Stored (``data_builders.common``), docs/model_spec.md §4.5 / §9.7:

* ``image``: R3's "LDR conversion" (:func:`tonemap_r3`): ``clip(max(c, 0) ** (1 / 2.2), 0, 1)`` of the HDR
  colour ``c``, times 255 and rounded to uint8 (R3 keeps float32; the quantisation error is <= 1/510).
  HyperSim's own tone mapper scales by the 90th brightness percentile of valid pixels first; R3's copy
  builds its validity mask from the colour array itself, so every pixel counts as "valid" and its code
  takes the ``scale = 1`` branch: the percentile scaling is never applied, and neither is it here.
  Non-finite colour values: NaN -> 0, +inf -> 255 (R3 would feed NaN to the network).
* ``depth``: config ``distance`` (default): ``depth_meters`` as stored, the Euclidean distance to the
  camera centre (HyperSim README; what R3 trains on); config ``planar``: planar depth by
  :func:`distance_to_planar` with the scene's ``M_cam_from_uv``. NaN (no surface) -> 0 = invalid.
* ``segmentation``: NYU-40 id ``k`` in 1..40 -> training id ``k - 1``; -1 and 0 (unlabelled) -> 255.
* ``intrinsics``: (fx, fy, cx, cy) from the scene's ``M_cam_from_uv`` (:func:`pinhole_intrinsics`), or
  zeros for the scenes whose tilt-shift lens makes the image plane tilted (no 4-number pinhole model).
* ``file_name``: ``ai_VVV_NNN_cam_XX_IIII`` (also the key).

Splits: R3's frame lists (github.com/charyyev/semantic_md ``source/datasets/paths/*_imgPath.txt``; train
19,399 frames / 362 scenes, val 1,203 / 45, test 933 / 45), shipped as ``r3_split.json``. Frames found in
``manual_dir`` that are in no list are not stored; listed frames that are absent are skipped (HyperSim is
large and often downloaded in part), but a listed frame with any file present needs all three.
Per-scene cameras: ``camera_parameters.json``, the ``M_cam_from_uv`` columns of ml-hypersim's
``contrib/mikeroberts3000/metadata_camera_parameters.csv`` (the per-scene ``_detail/metadata_cameras.csv``
only lists camera names).
"""

from __future__ import annotations

import collections
import contextlib
import dataclasses
import io
import json
import logging
import os
import re
import zipfile
from collections.abc import Iterator

import numpy as np
import tensorflow_datasets as tfds
from etils import epath

from data_builders import common
from semdepth_jax.data import meta as meta_lib

_HERE = epath.Path(__file__).parent
SPLIT_FILE = _HERE / "r3_split.json"
CAMERA_FILE = _HERE / "camera_parameters.json"
SPLIT_NAMES = ("train", "validation", "test")
GAMMA = 1.0 / 2.2  # R3 extract_data.py / HyperSim's tone mapper.
PINHOLE_TOLERANCE = (
  1e-4  # |tilt terms of M_cam_from_uv| / |M_22| still treated as a pinhole (< 0.1 px).
)
KINDS = ("color", "depth_meters", "semantic")
_FILE_RE = re.compile(
  r"(?:^|/)(ai_\d{3}_\d{3})/images/scene_(cam_\d{2})_(?:final|geometry)_hdf5/"
  r"frame\.(\d{4})\.(color|depth_meters|semantic)\.hdf5$"
)
_SCENE_RE = re.compile(r"ai_\d{3}_\d{3}")
_SEARCH_DEPTH = 3  # manual_dir/HyperSim_Data/image/ai_001_001 is R3's layout.
_LOG = logging.getLogger(__name__)

_INSTRUCTIONS = """\
Put HyperSim scenes (github.com/apple/ml-hypersim; CC BY-SA 3.0) into `manual_dir`, extracted or as the
official per-scene zip archives (read in place, not extracted):

  <manual_dir>/ai_VVV_NNN/images/scene_cam_XX_final_hdf5/frame.IIII.color.hdf5
  <manual_dir>/ai_VVV_NNN/images/scene_cam_XX_geometry_hdf5/frame.IIII.depth_meters.hdf5
  <manual_dir>/ai_VVV_NNN/images/scene_cam_XX_geometry_hdf5/frame.IIII.semantic.hdf5
  or <manual_dir>/ai_VVV_NNN.zip holding ai_VVV_NNN/images/...

Scene folders may sit up to three levels below `manual_dir` and may be split over several trees (e.g. R3's
HyperSim_Data/{image,depth,semantic}/ai_VVV_NNN/...). Only the frames of R3's split lists
(data_builders/hypersim/r3_split.json: frames 0-32 of the train cameras, 0-13 of the val/test cameras) are
stored; other frames are ignored and absent listed frames skipped, but every stored frame needs all three
files. Nothing else (other modalities, _detail/, previews) is read.
"""


@dataclasses.dataclass(eq=False)
class HypersimConfig(tfds.core.BuilderConfig):
  """Builder config of ``hypersim``.

  Attributes:
    planar_depth: store planar depth (negative camera-space z) instead of HyperSim's distance to the
      camera centre.
  """

  planar_depth: bool = False


@dataclasses.dataclass(frozen=True)
class Source:
  """Where one HDF5 file is: a file on disk (``archive`` None) or a member of a zip archive.

  Attributes:
    path: the file path, or the member name inside ``archive``.
    archive: the zip archive holding it, or None.
  """

  path: str
  archive: str | None = None

  def __str__(self) -> str:
    return self.path if self.archive is None else f"{self.archive}[{self.path}]"


FrameKey = tuple[str, str, int]
"""(scene ``ai_VVV_NNN``, camera ``cam_XX``, frame number)."""


class Builder(common.ArrayRecordByDefault, tfds.core.GeneratorBasedBuilder):
  """HyperSim (Roberts et al. 2021) with paper 003's (R3's) preprocessing and split.

  Registered as ``hypersim``. See the module docstring for inputs, units and the split.
  """

  VERSION = tfds.core.Version("1.0.0")
  RELEASE_NOTES = {
    "1.0.0": "Initial release: R3 split and LDR conversion; distance or planar depth."
  }
  MANUAL_DOWNLOAD_INSTRUCTIONS = _INSTRUCTIONS
  BUILDER_CONFIGS = [
    HypersimConfig(
      name="distance",
      description="depth = HyperSim depth_meters (distance to the camera centre), as R3 uses it.",
    ),
    HypersimConfig(
      name="planar",
      description="depth = planar depth (negative camera-space z) from the per-scene camera.",
      planar_depth=True,
    ),
  ]
  DEFAULT_BUILDER_CONFIG_NAME = "distance"

  def _info(self) -> tfds.core.DatasetInfo:
    return self.dataset_info_from_configs(
      features=common.example_features(),
      homepage="https://github.com/apple/ml-hypersim",
    )

  def _split_generators(self, dl_manager: tfds.download.DownloadManager):
    manual_dir = epath.Path(dl_manager.manual_dir)
    config = self.builder_config.name
    meta = meta_lib.get_meta(f"hypersim/{config}")
    frames = select_frames(index_files(manual_dir), read_split(), manual_dir)
    cameras = read_camera_table()
    scenes = sorted({key[0] for items in frames.values() for key, _ in items})
    missing = [s for s in scenes if s not in cameras]
    if missing:
      raise ValueError(
        f"{CAMERA_FILE}: no M_cam_from_uv for scenes {missing[:10]} (the table has {len(cameras)} "
        "scenes of ml-hypersim's metadata_camera_parameters.csv)"
      )
    planar = self.builder_config.planar_depth
    return {
      name: self._generate_examples(items, cameras, planar, meta)
      for name, items in frames.items()
      if items
    }

  def _generate_examples(
    self,
    items: list[tuple[FrameKey, dict[str, Source]]],
    cameras: dict[str, np.ndarray],
    planar: bool,
    meta: meta_lib.DatasetMeta,
  ) -> Iterator[tuple[str, dict]]:
    with _Reader() as reader:
      for (scene, cam, frame), sources in items:
        key = f"{scene}_{cam}_{frame:04d}"
        yield key, load_frame(reader, sources, key, cameras[scene], planar, meta)


# --- Finding the files. --------------------------------------------------------------------------------


def index_files(manual_dir: epath.Path) -> dict[FrameKey, dict[str, Source]]:
  """Finds every colour / depth / semantic HDF5 file in ``manual_dir`` (folders and zip archives).

  Scene folders ``ai_VVV_NNN`` are looked for in ``manual_dir`` and up to three levels below it;
  ``*.zip`` archives directly in ``manual_dir`` are indexed from their member names.

  Returns:
    {(scene, camera, frame): {kind: Source}} with kind in ``KINDS``.

  Raises:
    ValueError: the same file (scene, camera, frame, kind) found in two places (the message names both),
      or an archive that is not a readable zip.
  """
  index: dict[FrameKey, dict[str, Source]] = collections.defaultdict(dict)
  duplicates = []

  def add(match: re.Match, source: Source) -> None:
    key = (match[1], match[2], int(match[3]))
    if match[4] in index[key]:
      duplicates.append(f"{index[key][match[4]]} and {source}")
    else:
      index[key][match[4]] = source

  for scene_dir in _scene_folders(manual_dir):
    images = scene_dir / "images"
    if not images.is_dir():
      continue
    for cam_dir in sorted(images.iterdir()):
      if not cam_dir.name.endswith("_hdf5") or not cam_dir.is_dir():
        continue
      for path in cam_dir.iterdir():
        match = _FILE_RE.search(f"{scene_dir.name}/images/{cam_dir.name}/{path.name}")
        if match:
          add(match, Source(os.fspath(path)))
  for archive in sorted(manual_dir.glob("*.zip")):
    try:
      with zipfile.ZipFile(os.fspath(archive)) as z:
        names = z.namelist()
    except (OSError, zipfile.BadZipFile) as e:
      raise ValueError(f"{archive}: cannot read as a zip archive: {e}") from e
    for name in names:
      match = _FILE_RE.search(name)
      if match:
        add(match, Source(name, os.fspath(archive)))
  if duplicates:
    raise ValueError(
      f"{len(duplicates)} HyperSim file(s) found twice under {manual_dir}, e.g. "
      f"{'; '.join(duplicates[:3])}; keep one copy of each scene"
    )
  return dict(index)


def _scene_folders(manual_dir: epath.Path) -> list[epath.Path]:
  """``ai_VVV_NNN`` folders at depth 0.._SEARCH_DEPTH below ``manual_dir`` (not searched inside)."""
  found, level = [], [manual_dir]
  for _ in range(_SEARCH_DEPTH + 1):
    below = []
    for folder in level:
      if _SCENE_RE.fullmatch(folder.name):
        found.append(folder)
      else:
        with contextlib.suppress(OSError):  # unreadable folders cannot hold scenes.
          below += [c for c in folder.iterdir() if c.is_dir()]
    level = below
  return sorted(found)


def read_split(path: epath.Path = SPLIT_FILE) -> dict[str, set[FrameKey]]:
  """Reads a split file in the format of ``r3_split.json``.

  The file holds ``{"splits": {split: {scene: {camera: "a-b,c,..."}}}}`` with split names ``train``,
  ``validation``, ``test`` and inclusive frame ranges.

  Returns:
    {split: {(scene, camera, frame)}}.

  Raises:
    ValueError: unreadable file, other split names, a malformed range, or a frame in two splits.
  """
  try:
    table = json.loads(path.read_text())["splits"]
    out = {
      split: {
        (scene, cam, frame)
        for scene, cams in table[split].items()
        for cam, ranges in cams.items()
        for frame in _parse_ranges(ranges)
      }
      for split in SPLIT_NAMES
    }
  except (OSError, ValueError, KeyError, TypeError, AttributeError) as e:
    raise ValueError(
      f"{path}: cannot read the split table ({SPLIT_NAMES} -> scene -> camera): {e}"
    ) from e
  for a, b in (("train", "validation"), ("train", "test"), ("validation", "test")):
    both = sorted(out[a] & out[b])
    if both:
      raise ValueError(f"{path}: {len(both)} frame(s) in both {a} and {b}, e.g. {both[0]}")
  return out


def _parse_ranges(text: str) -> list[int]:
  frames = []
  for part in text.split(","):
    first, _, last = part.partition("-")
    frames += range(int(first), int(last or first) + 1)
  return frames


def select_frames(
  index: dict[FrameKey, dict[str, Source]],
  splits: dict[str, set[FrameKey]],
  manual_dir: epath.Path,
) -> dict[str, list[tuple[FrameKey, dict[str, Source]]]]:
  """The frames to store per split: listed frames with any file present, sorted.

  Raises:
    FileNotFoundError: no listed frame found (names ``manual_dir`` and the instructions), or listed frames
      with some but not all of their three files (one message listing every missing file).
  """
  split_of = {key: name for name, keys in splits.items() for key in keys}
  out: dict[str, list] = {name: [] for name in SPLIT_NAMES}
  unlisted = 0
  missing = []
  for key in sorted(index):
    files = index[key]
    if key not in split_of:
      unlisted += 1
      continue
    present = next(iter(files.values()))
    missing += [str(_expected(present, kind)) for kind in KINDS if kind not in files]
    out[split_of[key]].append((key, files))
  if missing:
    common.check_files_exist(
      missing, f"{manual_dir} (every scene folder and zip archive searched)", _INSTRUCTIONS
    )
  found = sum(len(v) for v in out.values())
  if not found:
    raise FileNotFoundError(
      f"no HyperSim frame of R3's split lists found under {manual_dir} ({unlisted} unlisted frame(s) "
      f"found)\n{_INSTRUCTIONS}"
    )
  if unlisted:
    _LOG.info("hypersim: %d present frame(s) are in no R3 split list and are not stored", unlisted)
  for name, keys in splits.items():
    if len(out[name]) < len(keys):
      _LOG.info("hypersim: %s: %d of %d listed frames present", name, len(out[name]), len(keys))
  return out


_FOLDER_OF = {"color": "final", "depth_meters": "geometry", "semantic": "geometry"}


def _expected(present: Source, kind: str) -> Source:
  """Where the ``kind`` file of the frame of file ``present`` would be (same tree or archive)."""
  match = _FILE_RE.search(present.path)
  scene, cam, frame = match[1], match[2], match[3]
  relative = f"{scene}/images/scene_{cam}_{_FOLDER_OF[kind]}_hdf5/frame.{frame}.{kind}.hdf5"
  return Source(present.path[: match.start(1)] + relative, present.archive)


def read_camera_table(path: epath.Path = CAMERA_FILE) -> dict[str, np.ndarray]:
  """Reads ``camera_parameters.json``: {scene: float64 (3, 3) ``M_cam_from_uv``}.

  Raises:
    ValueError: unreadable file or an entry that is not 9 finite numbers.
  """
  try:
    table = json.loads(path.read_text())["M_cam_from_uv"]
    out = {scene: np.asarray(values, np.float64).reshape(3, 3) for scene, values in table.items()}
  except (OSError, ValueError, KeyError, TypeError, AttributeError) as e:
    raise ValueError(f"{path}: cannot read M_cam_from_uv (scene -> 9 numbers): {e}") from e
  bad = [scene for scene, m in out.items() if not np.all(np.isfinite(m))]
  if bad:
    raise ValueError(f"{path}: non-finite M_cam_from_uv for scenes {bad[:5]}")
  return out


# --- Reading and converting one frame. ------------------------------------------------------------------


class _Reader:
  """Reads HDF5 datasets from files or zip members, keeping opened archives for the next frame."""

  def __init__(self):
    self._archives: dict[str, zipfile.ZipFile] = {}

  def __enter__(self) -> _Reader:
    return self

  def __exit__(self, *exc) -> None:
    for z in self._archives.values():
      z.close()
    self._archives.clear()

  def read(self, source: Source) -> np.ndarray:
    """The array of the HDF5 dataset ``dataset`` in ``source``.

    Raises:
      ValueError: unreadable or not HDF5, or no dataset ``dataset``; the message names ``source``.
    """
    import h5py

    try:
      if source.archive is None:
        handle = source.path
      else:
        if source.archive not in self._archives:
          self._archives[source.archive] = zipfile.ZipFile(source.archive)
        handle = io.BytesIO(self._archives[source.archive].read(source.path))
      with h5py.File(handle, "r") as f:
        if "dataset" not in f:
          raise ValueError(f"{source}: no HDF5 dataset 'dataset'; found {sorted(f.keys())}")
        return np.asarray(f["dataset"])
    except (OSError, KeyError, zipfile.BadZipFile) as e:
      raise ValueError(f"{source}: cannot read as HDF5: {e}") from e


def tonemap_r3(color: np.ndarray) -> np.ndarray:
  """R3's LDR conversion of a HyperSim HDR colour image, as uint8.

  ``round(255 * clip(max(c, 0) ** (1 / 2.2), 0, 1))`` (R3 ``source/scripts/extract_data.py``, adapted from
  HyperSim's ``scene_generate_images_tonemap.py`` with the brightness scale always 1; docs/model_spec.md
  §4.5). NaN -> 0, +inf -> 255.

  Args:
    color: float (H, W, 3) linear HDR RGB (any float dtype; HyperSim stores float16).

  Returns:
    uint8 (H, W, 3).
  """
  c = np.asarray(color, np.float32)
  with np.errstate(invalid="ignore"):
    ldr = np.clip(np.power(np.maximum(c, 0.0), np.float32(GAMMA)), 0.0, 1.0)
  ldr = np.where(np.isnan(ldr), 0.0, ldr)
  return np.round(ldr * 255.0).astype(np.uint8)


def pixel_rays(m_cam_from_uv: np.ndarray, height: int, width: int) -> np.ndarray:
  """Camera-space ray direction of every pixel centre (HyperSim convention, not normalised).

  ``d = M_cam_from_uv @ (u, v, 1)`` with ``u = 2 (j + 0.5) / W - 1`` (left -> right) and
  ``v = 1 - 2 (i + 0.5) / H`` (top -> bottom) for pixel row i, column j; the camera looks along -z, y up
  (ml-hypersim ``contrib/mikeroberts3000`` notebook 01 "casting rays that match Hypersim images").

  Returns:
    float64 (H, W, 3).
  """
  u = (np.arange(width) + 0.5) * (2.0 / width) - 1.0
  v = 1.0 - (np.arange(height) + 0.5) * (2.0 / height)
  uv1 = np.stack(np.broadcast_arrays(u[None, :], v[:, None], 1.0), axis=-1)
  return uv1 @ np.asarray(m_cam_from_uv, np.float64).T


def distance_to_planar(distance: np.ndarray, m_cam_from_uv: np.ndarray) -> np.ndarray:
  """Converts HyperSim's distance to the camera centre into planar depth (negative camera-space z).

  Along the ray ``d`` of a pixel (:func:`pixel_rays`) the point at distance ``r`` has camera-space
  ``z = r d_z / |d|``, so planar depth = ``r (-d_z) / |d|`` (HyperSim README "depth_meters"; per-scene
  ``M_cam_from_uv`` from ml-hypersim ``contrib/mikeroberts3000/metadata_camera_parameters.csv``).

  Args:
    distance: float (H, W) metres, 0 = invalid (stays 0).
    m_cam_from_uv: (3, 3) the scene's matrix.

  Returns:
    float32 (H, W) metres.

  Raises:
    ValueError: a pixel ray that does not point forwards (``d_z >= 0``): not a HyperSim camera.
  """
  rays = pixel_rays(m_cam_from_uv, *np.shape(distance))
  forward = -rays[..., 2]
  if forward.min() <= 0:
    raise ValueError(f"M_cam_from_uv {np.asarray(m_cam_from_uv).tolist()}: some rays have d_z >= 0")
  cosine = forward / np.linalg.norm(rays, axis=-1)
  return (np.asarray(distance, np.float64) * cosine).astype(np.float32)


def pinhole_intrinsics(
  m_cam_from_uv: np.ndarray, height: int, width: int
) -> tuple[float, float, float, float] | None:
  """(fx, fy, cx, cy) in pixels of a HyperSim camera, if it is a pinhole with an untilted image plane.

  When ``M_cam_from_uv = [[a, 0, b], [0, c, e], [0, 0, -s]]`` (tilt terms ``M_01, M_10, M_20, M_21`` below
  ``PINHOLE_TOLERANCE * s``), a camera-space point (x, y, z) lands at column ``j`` and row ``i`` with
  ``x / -z = (a u + b) / s`` and ``y / -z = (c v + e) / s`` (:func:`pixel_rays`), i.e. with y down:
  ``fx = W s / (2 a)``, ``cx = W / 2 - 0.5 - (b / a) W / 2``, ``fy = H s / (2 c)``,
  ``cy = H / 2 - 0.5 + (e / c) H / 2``. The standard HyperSim camera (60 deg horizontal field of view,
  1024 x 768) gives (886.81, 886.81, 511.5, 383.5).

  Returns:
    The four numbers, or None for a tilted image plane (many scenes use V-Ray tilt-shift parameters).
  """
  m = np.asarray(m_cam_from_uv, np.float64)
  s = -m[2, 2]
  tilt = abs(m[0, 1]) + abs(m[1, 0]) + abs(m[2, 0]) + abs(m[2, 1])
  if s <= 0 or m[0, 0] <= 0 or m[1, 1] <= 0 or tilt > PINHOLE_TOLERANCE * s:
    return None
  a, b, c, e = m[0, 0], m[0, 2], m[1, 1], m[1, 2]
  return (
    width * s / (2 * a),
    height * s / (2 * c),
    width / 2 - 0.5 - (b / a) * width / 2,
    height / 2 - 0.5 + (e / c) * height / 2,
  )


def semantic_to_train_ids(raw: np.ndarray, source: str) -> np.ndarray:
  """HyperSim NYU-40 ids -> training ids: 1..40 -> 0..39, -1 and 0 (unlabelled) -> 255.

  Raises:
    ValueError: a non-integer array or ids outside -1..40; the message names ``source``.
  """
  raw = np.asarray(raw)
  if not np.issubdtype(raw.dtype, np.integer):
    raise ValueError(f"{source}: semantic ids must be integers, got {raw.dtype}")
  bad = (raw < -1) | (raw > 40)
  if bad.any():
    raise ValueError(
      f"{source}: NYU-40 ids {np.unique(raw[bad]).tolist()[:10]} outside -1..40 (-1, 0 = unlabelled)"
    )
  return np.where(raw >= 1, raw - 1, meta_lib.IGNORE_INDEX).astype(np.uint8)


def load_frame(
  reader: _Reader,
  sources: dict[str, Source],
  key: str,
  m_cam_from_uv: np.ndarray,
  planar: bool,
  meta: meta_lib.DatasetMeta,
) -> dict:
  """Reads, converts and validates one frame into the stored example (``common.make_example``).

  Raises:
    ValueError: unreadable HDF5, wrong array rank or channels, sizes that disagree, or invalid label ids;
      the message names the file.
  """
  color = reader.read(sources["color"])
  if color.ndim != 3 or color.shape[-1] != 3 or not np.issubdtype(color.dtype, np.floating):
    raise ValueError(
      f"{sources['color']}: expected float (H, W, 3) HDR colour, got {color.dtype} {color.shape}"
    )
  size = color.shape[:2]
  depth = reader.read(sources["depth_meters"])
  if depth.shape != size or not np.issubdtype(depth.dtype, np.floating):
    raise ValueError(
      f"{sources['depth_meters']}: expected float {size} depth like the colour image, got "
      f"{depth.dtype} {depth.shape}"
    )
  raw = reader.read(sources["semantic"])
  if raw.shape != size:
    raise ValueError(
      f"{sources['semantic']}: size {raw.shape} does not match the colour image {size}"
    )
  depth = np.where(np.isfinite(depth), depth, 0).astype(np.float32)
  if planar:
    depth = distance_to_planar(depth, m_cam_from_uv)
  intrinsics = pinhole_intrinsics(m_cam_from_uv, *size)
  return common.make_example(
    image=tonemap_r3(color),
    depth=depth,
    segmentation=semantic_to_train_ids(raw, str(sources["semantic"])),
    intrinsics=intrinsics,
    file_name=key,
    num_classes=meta.num_classes,
    source=str(sources["depth_meters"]),
  )
