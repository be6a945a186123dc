"""TFDS builder ``kitti_depth``: KITTI frames with sparse metric depth, and KITTI semantics (19 classes).

Inputs (``manual_dir``; official zips or their extracted folders, mixed freely; see ``MANUAL_DOWNLOAD_INSTRUCTIONS``):

* KITTI raw (Geiger et al. 2013), synced + rectified: ``<date>/<date>_drive_<NNNN>_sync/image_02/data/
  <frame>.png`` (uint8 RGB), ``.../velodyne_points/data/<frame>.bin`` (float32 x, y, z, reflectance; configs
  ``eigen``), and per date ``<date>/calib_cam_to_cam.txt`` and ``<date>/calib_velo_to_cam.txt``.
* The depth-prediction benchmark (Uhrig et al. 2017) ``data_depth_annotated``: ``{train,val}/<drive>/
  proj_depth/groundtruth/image_02/<frame>.png`` uint16, metres = value / 256, 0 = no ground truth.
* KITTI semantics (Alhaija et al. 2018) ``data_semantics``: ``training/image_2/<name>.png`` and
  ``training/semantic/<name>.png`` (uint8 Cityscapes label ids).

Configs (``docs/model_spec.md`` §9.5, §8.5, §3.3):

* ``eigen`` (default): the Eigen et al. 2014 split as used by paper 002 and DORN: ``train`` 23,488 frames
  (33 drives), ``test`` 697 frames (28 drives), file lists in ``eigen_splits.json``. Depth = the classic
  velodyne projection (:func:`project_velodyne`): sparse, metres, 0 = no LiDAR return.
* ``eigen_benchmark``: ``test`` only: the 652 Eigen test frames that have the benchmark's "improved"
  annotated depth (monodepth2's ``eigen_benchmark`` list). Train with ``eigen``'s ``train``.
* ``benchmark``: the official depth-prediction split: ``train`` / ``validation`` = every annotated frame of
  ``data_depth_annotated/train`` / ``val`` (image_02: 42,949 / 3,426 frames).
* ``semantics``: the 200 labelled frames of KITTI semantics -> ``train``; label ids -> Cityscapes trainIds
  0..18, all other ids -> 255. No depth, intrinsics unknown (zeros).

Stored (``data_builders.common``): images at their native size (dates differ by a few pixels); depth float32
metres, sparse, never densified; ``intrinsics`` = (P_rect_02[0,0], P_rect_02[1,1], P_rect_02[0,2],
P_rect_02[1,2]) of the drive's date; key and ``file_name`` ``<date>_drive_<NNNN>_sync_02_<frame>``
(semantics: the file stem).
"""

from __future__ import annotations

import dataclasses
import io
import json
import pathlib
import re
import zipfile
from collections.abc import Iterator

import numpy as np
import tensorflow_datasets as tfds
from etils import epath

from data_builders import common
from semdepth_jax.data import meta as meta_lib

DEPTH_SCALE = 256.0  # data_depth_annotated PNG value per metre.
SPLITS_FILE = pathlib.Path(__file__).parent / "eigen_splits.json"
LAYOUTS = ("eigen", "eigen_benchmark", "benchmark", "semantics")
_DATE = r"\d{4}_\d{2}_\d{2}"
_DRIVE_RE = re.compile(rf"({_DATE})_drive_\d{{4}}_sync")
# Kinds of input files; a file is addressed as (kind, path relative to the kind's root).
RAW, ANNOTATED, SEMANTICS = "raw", "data_depth_annotated", "data_semantics"
# Zip member name -> (kind, relative path), whatever folders the archive puts above the official layout.
_MEMBER_RES = (
  (ANNOTATED, re.compile(rf"(?:^|/)((?:train|val)/{_DATE}_drive_\d{{4}}_sync/proj_depth/.+)$")),
  (SEMANTICS, re.compile(r"(?:^|/)((?:training|testing)/(?:image_2|semantic)/[^/]+)$")),
  (RAW, re.compile(rf"(?:^|/)({_DATE}/.+)$")),
)
_MAX_LISTED = 20  # missing files named one by one in an error; the rest are counted.

_INSTRUCTIONS = """\
Put into `manual_dir` the official KITTI zips (read in place, never extracted) or their extracted folders
(found in `manual_dir` and up to two levels below it); both may be mixed:

  KITTI raw (https://www.cvlibs.net/datasets/kitti/raw_data.php), for every drive of the config:
    <date>_drive_<NNNN>_sync.zip -> <date>/<date>_drive_<NNNN>_sync/image_02/data/<frame>.png
                                    <date>/<date>_drive_<NNNN>_sync/velodyne_points/data/<frame>.bin
    <date>_calib.zip             -> <date>/calib_cam_to_cam.txt, <date>/calib_velo_to_cam.txt
  depth benchmark (https://www.cvlibs.net/datasets/kitti/eval_depth.php?benchmark=depth_prediction):
    data_depth_annotated.zip     -> {train,val}/<drive>/proj_depth/groundtruth/image_02/<frame>.png
  semantics (https://www.cvlibs.net/datasets/kitti/eval_semseg.php):
    data_semantics.zip           -> training/image_2/<name>.png, training/semantic/<name>.png

Needed per config: `eigen` (default): raw images + velodyne + both calib files of the drives in
eigen_splits.json (61 drives); `eigen_benchmark`: raw images + calib_cam_to_cam of the 28 Eigen test drives and
data_depth_annotated; `benchmark`: data_depth_annotated + raw images + calib_cam_to_cam of all its drives;
`semantics`: data_semantics. Every required file is checked before anything is written.
"""


@dataclasses.dataclass(eq=False)
class KittiConfig(tfds.core.BuilderConfig):
  """Builder config of ``kitti_depth``.

  Attributes:
    layout: ``eigen``, ``eigen_benchmark``, ``benchmark`` or ``semantics`` (see the module docstring).
    velodyne_depth: ``eigen`` only: ``"forward"`` stores the LiDAR x coordinate (forward distance from the
      Velodyne; the classic Eigen ground truth of monodepth / monodepth2 ``export_gt_depth.py``),
      ``"camera_z"`` the point's z in the rectified camera-2 frame (the pinhole depth).
    cameras: ``benchmark`` only: ``("02",)`` (left colour camera) or ``("02", "03")`` (both colour cameras,
      intrinsics from P_rect_03 for image_03).
    splits_file: ``eigen`` / ``eigen_benchmark``: a JSON file in the format of the shipped
      ``eigen_splits.json`` to use instead of it (``""`` = the shipped lists).
  """

  layout: str = "eigen"
  velodyne_depth: str = "forward"
  cameras: tuple[str, ...] = ("02",)
  splits_file: str = ""


class Builder(common.ArrayRecordByDefault, tfds.core.GeneratorBasedBuilder):
  """KITTI (Geiger et al. 2013): RGB with sparse metric depth; KITTI semantics with 19 classes.

  Registered as ``kitti_depth`` (TFDS's own ``kitti`` is the object-detection set; the names do not clash).
  See the module docstring for inputs, configs and units.
  """

  VERSION = tfds.core.Version("1.0.0")
  RELEASE_NOTES = {
    "1.0.0": "Initial release: eigen, eigen_benchmark, benchmark and semantics configs."
  }
  MANUAL_DOWNLOAD_INSTRUCTIONS = _INSTRUCTIONS
  BUILDER_CONFIGS = [
    KittiConfig(
      name="eigen",
      layout="eigen",
      description="Eigen split 23,488 / 697, depth from the projected velodyne points.",
    ),
    KittiConfig(
      name="eigen_benchmark",
      layout="eigen_benchmark",
      description="The 652 Eigen test frames with annotated (improved) depth.",
    ),
    KittiConfig(
      name="benchmark",
      layout="benchmark",
      description="Official depth-prediction split (data_depth_annotated train / val).",
    ),
    KittiConfig(
      name="semantics",
      layout="semantics",
      description="KITTI semantics, 200 training frames, 19 Cityscapes classes.",
    ),
  ]
  DEFAULT_BUILDER_CONFIG_NAME = "eigen"

  def _info(self) -> tfds.core.DatasetInfo:
    return self.dataset_info_from_configs(
      features=common.example_features(),
      homepage="https://www.cvlibs.net/datasets/kitti/",
    )

  def _split_generators(self, dl_manager: tfds.download.DownloadManager):
    config = self.builder_config
    if config.layout not in LAYOUTS:
      raise ValueError(f"kitti_depth config {config.name!r}: layout must be one of {LAYOUTS}")
    if config.velodyne_depth not in ("forward", "camera_z"):
      raise ValueError(
        f"kitti_depth config {config.name!r}: velodyne_depth must be 'forward' or 'camera_z', "
        f"got {config.velodyne_depth!r}"
      )
    files = KittiFiles(epath.Path(dl_manager.manual_dir))
    meta = meta_lib.get_meta(f"kitti_depth/{config.layout}")
    if config.layout == "semantics":
      names = files.list(
        SEMANTICS, "training/semantic/*.png", re.compile(r"training/semantic/([^/]+)\.png")
      )
      if not names:
        raise FileNotFoundError(
          f"no {files.where(SEMANTICS, 'training/semantic/*.png')} (folder or data_semantics.zip) "
          f"under {files.manual_dir}\n{_INSTRUCTIONS}"
        )
      files.check(
        [(SEMANTICS, f"training/{d}/{n}.png") for n in names for d in ("image_2", "semantic")]
      )
      return {"train": self._generate_examples(files, names, meta)}
    splits = frame_lists(config, files)
    required = []
    for frames in splits.values():
      required += required_files(frames, config.layout)
    files.check(sorted(set(required)))
    return {
      name: self._generate_examples(files, frames, meta)
      for name, frames in splits.items()
      if frames
    }

  def _generate_examples(
    self, files: KittiFiles, items: list, meta: meta_lib.DatasetMeta
  ) -> Iterator[tuple[str, dict]]:
    """Yields (key, example); ``items`` are ``Frame``s, or semantics file stems (config ``semantics``)."""
    try:
      if self.builder_config.layout == "semantics":
        lut = cityscapes_lut()
        for name in items:
          yield name, semantics_example(files, name, lut, meta)
        return
      for frame in items:
        yield frame.key, depth_example(files, frame, self.builder_config, meta)
    finally:
      files.close()


# --- Input files: folders and zips. -----------------------------------------------------------------


class _Member:
  """A zip member that ``common.read_png`` can open (``open("rb")``) and name in errors (``str``)."""

  def __init__(self, files: KittiFiles, archive: epath.Path, name: str):
    self._files, self.archive, self.name = files, archive, name

  def open(self, mode: str = "rb"):
    del mode
    return io.BytesIO(self._files._zip(self.archive).read(self.name))

  def __str__(self) -> str:
    return f"{self.archive}:{self.name}"


class KittiFiles:
  """Finds KITTI files in ``manual_dir``: official zips (read in place) and extracted folders.

  A file is addressed as ``(kind, relative path)``: kind ``raw`` (``<date>/...``), ``data_depth_annotated``
  (``{train,val}/<drive>/proj_depth/...``) or ``data_semantics`` (``training/...``). Zips in ``manual_dir``
  and up to two folder levels below it are indexed by member name (any folders above the official layout
  are ignored); folders at those levels are roots of a kind when they hold a date folder (raw), a
  ``train``/``val`` folder with drive folders (annotated) or ``training/semantic`` (semantics). Zips are
  searched first.

  Raises:
    ValueError: a zip that cannot be read (named).
  """

  def __init__(self, manual_dir: epath.Path):
    self.manual_dir = manual_dir
    self.roots: dict[str, list[epath.Path]] = {RAW: [], ANNOTATED: [], SEMANTICS: []}
    self.members: dict[tuple[str, str], tuple[epath.Path, str]] = {}
    self._open: dict[str, zipfile.ZipFile] = {}
    self._calib: dict[str, tuple[dict[str, np.ndarray], str]] = {}
    level = [manual_dir] if manual_dir.is_dir() else []
    for _ in range(3):
      next_level = []
      for folder in level:
        children = sorted(folder.iterdir())
        for child in children:
          if child.is_file() and child.name.lower().endswith(".zip"):
            self._index_zip(child)
        dirs = [c for c in children if c.is_dir()]
        if any(re.fullmatch(_DATE, c.name) for c in dirs):
          self.roots[RAW].append(folder)
        if any(c.name in ("train", "val") and _has_drive_folder(c) for c in dirs):
          self.roots[ANNOTATED].append(folder)
        if (folder / "training" / "semantic").is_dir():
          self.roots[SEMANTICS].append(folder)
        next_level += dirs
      level = next_level

  def _index_zip(self, archive: epath.Path) -> None:
    try:
      with zipfile.ZipFile(archive) as z:
        names = z.namelist()
    except (OSError, zipfile.BadZipFile) as e:
      raise ValueError(f"{archive}: cannot read zip archive: {e}") from e
    for name in names:
      if name.endswith("/"):
        continue
      for kind, pattern in _MEMBER_RES:
        m = pattern.search(name)
        if m:
          self.members.setdefault((kind, m.group(1)), (archive, name))
          break

  def close(self) -> None:
    """Closes the zips opened for reading (they reopen on the next read)."""
    for z in self._open.values():
      z.close()
    self._open.clear()

  def _zip(self, archive: epath.Path) -> zipfile.ZipFile:
    key = str(archive)
    if key not in self._open:
      self._open[key] = zipfile.ZipFile(archive)
    return self._open[key]

  def find(self, kind: str, rel: str):
    """The ``epath.Path`` or zip member of ``(kind, rel)``, or None if it is nowhere."""
    if (kind, rel) in self.members:
      return _Member(self, *self.members[(kind, rel)])
    for root in self.roots[kind]:
      path = root / rel
      if path.exists():
        return path
    return None

  def where(self, kind: str, rel: str) -> str:
    """Where ``(kind, rel)`` was expected, for error messages."""
    roots = self.roots[kind]
    if roots:
      return str(roots[0] / rel)
    return str(self.manual_dir / rel if kind == RAW else self.manual_dir / kind / rel)

  def read_bytes(self, kind: str, rel: str) -> bytes:
    """The file's bytes; FileNotFoundError naming the expected path if it is missing."""
    found = self.find(kind, rel)
    if found is None:
      raise FileNotFoundError(f"{self.where(kind, rel)}: required file missing")
    with found.open("rb") as f:
      return f.read()

  def calib(self, rel: str) -> tuple[dict[str, np.ndarray], str]:
    """Parsed raw calibration file ``rel`` (``parse_calib``) and its location; read once per build."""
    if rel not in self._calib:
      source = str(self.find(RAW, rel) or self.where(RAW, rel))
      text = self.read_bytes(RAW, rel).decode("utf-8", errors="replace")
      self._calib[rel] = (parse_calib(text, source), source)
    return self._calib[rel]

  def list(self, kind: str, glob: str, pattern: re.Pattern) -> list[str]:
    """Sorted ``pattern.group(1)`` of every relative path of ``kind`` that ``pattern`` fully matches.

    Args:
      kind: the kind of file.
      glob: non-recursive glob relative to a folder root that covers every path ``pattern`` can match.
      pattern: regular expression on the relative path, with one group.
    """
    out = {m.group(1) for k, rel in self.members if k == kind and (m := pattern.fullmatch(rel))}
    for root in self.roots[kind]:
      for path in root.glob(glob):
        m = pattern.fullmatch(str(path.relative_to(root)))
        if m:
          out.add(m.group(1))
    return sorted(out)

  def check(self, required: list[tuple[str, str]]) -> None:
    """Raises one FileNotFoundError naming the missing files (the first 20, then a count).

    Raises:
      FileNotFoundError: lists the expected paths, the folders and zips searched, and the instructions.
    """
    missing = [self.where(k, r) for k, r in required if self.find(k, r) is None]
    if not missing:
      return
    listing = "\n  ".join(missing[:_MAX_LISTED])
    more = f"\n  ... and {len(missing) - _MAX_LISTED} more" if len(missing) > _MAX_LISTED else ""
    searched = {k: [str(r) for r in v] for k, v in self.roots.items()}
    zips = sorted({str(a) for a, _ in self.members.values()})
    raise FileNotFoundError(
      f"{len(missing)} required file(s) missing under {self.manual_dir}:\n  {listing}{more}\n"
      f"folders found per kind: {searched}; zips indexed: {zips or 'none'}\n{_INSTRUCTIONS}"
    )


def _has_drive_folder(folder: epath.Path) -> bool:
  return any(_DRIVE_RE.fullmatch(c.name) for c in folder.iterdir())


# --- Split lists. -----------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True, order=True)
class Frame:
  """One KITTI raw frame of one colour camera.

  Attributes:
    drive: ``<date>_drive_<NNNN>_sync``.
    frame: frame number (the 10-digit file stem).
    camera: ``"02"`` (left colour) or ``"03"`` (right colour).
    annotated: ``data_depth_annotated`` subset holding its depth (``"train"``/``"val"``), or ``""``.
  """

  drive: str
  frame: int
  camera: str = "02"
  annotated: str = ""

  @property
  def date(self) -> str:
    """Recording date ``YYYY_MM_DD`` (the calibration folder)."""
    return self.drive[:10]

  @property
  def key(self) -> str:
    """Stable example key and ``file_name``: ``<drive>_<camera>_<frame:010d>``."""
    return f"{self.drive}_{self.camera}_{self.frame:010d}"

  @property
  def image(self) -> str:
    """Raw-relative path of the RGB PNG."""
    return f"{self.date}/{self.drive}/image_{self.camera}/data/{self.frame:010d}.png"

  @property
  def velodyne(self) -> str:
    """Raw-relative path of the velodyne scan."""
    return f"{self.date}/{self.drive}/velodyne_points/data/{self.frame:010d}.bin"

  @property
  def depth(self) -> str:
    """Annotated-relative path of the ground-truth depth PNG."""
    return f"{self.annotated}/{self.drive}/proj_depth/groundtruth/image_{self.camera}/{self.frame:010d}.png"


def read_eigen_splits(path: pathlib.Path = SPLITS_FILE) -> dict[str, list[Frame]]:
  """Reads ``eigen_splits.json``: ``eigen_train``, ``eigen_test``, ``eigen_benchmark_test`` frame lists.

  The file maps ``"<date>/<drive>"`` to sorted frame numbers per list (sources in the README).
  """
  try:
    table = json.loads(path.read_text())
  except (OSError, ValueError) as e:
    raise ValueError(f"{path}: cannot read the split lists: {e}") from e
  out = {}
  for name, drives in table.items():
    frames = []
    for drive_path, numbers in drives.items():
      date, drive = drive_path.split("/")
      if not _DRIVE_RE.fullmatch(drive) or drive[:10] != date:
        raise ValueError(f"{path}: {name}: bad drive folder {drive_path!r}")
      frames += [Frame(drive, int(n)) for n in numbers]
    out[name] = sorted(frames)
  return out


def frame_lists(config: KittiConfig, files: KittiFiles) -> dict[str, list[Frame]]:
  """The frames of each split of a depth config (``eigen``, ``eigen_benchmark`` or ``benchmark``).

  ``eigen_benchmark`` frames are looked up in ``data_depth_annotated/train`` and ``val`` (the frame gets
  the subset that holds it); a frame in neither is reported missing by ``KittiFiles.check``.

  Raises:
    ValueError: unknown camera in ``config.cameras``.
  """
  path = pathlib.Path(config.splits_file) if config.splits_file else SPLITS_FILE
  if config.layout in ("eigen", "eigen_benchmark"):
    lists = read_eigen_splits(path)
    names = ("eigen_train", "eigen_test") if config.layout == "eigen" else ("eigen_benchmark_test",)
    absent = [n for n in names if n not in lists]
    if absent:
      raise ValueError(f"{path}: split list(s) {absent} missing; found {sorted(lists)}")
  if config.layout == "eigen":
    return {"train": lists["eigen_train"], "test": lists["eigen_test"]}
  if config.layout == "eigen_benchmark":
    frames = []
    for f in lists["eigen_benchmark_test"]:
      subset = next(
        (
          s
          for s in ("train", "val")
          if files.find(ANNOTATED, Frame(f.drive, f.frame, "02", s).depth)
        ),
        "train",
      )
      frames.append(dataclasses.replace(f, annotated=subset))
    return {"test": frames}
  bad = [c for c in config.cameras if c not in ("02", "03")]
  if bad or not config.cameras:
    raise ValueError(
      f"kitti_depth config {config.name!r}: cameras must be '02' and/or '03', got {bad}"
    )
  cams = "|".join(config.cameras)
  pattern = re.compile(
    rf"((?:train|val)/{_DATE}_drive_\d{{4}}_sync/proj_depth/groundtruth/image_(?:{cams})/\d{{10}})\.png"
  )
  splits = {"train": [], "validation": []}
  glob = "*/*/proj_depth/groundtruth/image_0[23]/*.png"
  for rel in files.list(ANNOTATED, glob, pattern):
    subset, drive, *_, camera, stem = rel.split("/")
    split = "train" if subset == "train" else "validation"
    splits[split].append(Frame(drive, int(stem), camera[-2:], subset))
  if not splits["train"] and not splits["validation"]:
    raise FileNotFoundError(
      f"no annotated depth {files.where(ANNOTATED, '{train,val}/<drive>/proj_depth/groundtruth/')}"
      f"image_{{{','.join(config.cameras)}}}/*.png (folder or data_depth_annotated.zip) under "
      f"{files.manual_dir}\n{_INSTRUCTIONS}"
    )
  return {k: sorted(v) for k, v in splits.items()}


def required_files(frames: list[Frame], layout: str) -> list[tuple[str, str]]:
  """``(kind, relative path)`` of every file the frames of a depth config read."""
  out = []
  for f in frames:
    out += [(RAW, f.image), (RAW, f"{f.date}/calib_cam_to_cam.txt")]
    if layout == "eigen":
      out += [(RAW, f.velodyne), (RAW, f"{f.date}/calib_velo_to_cam.txt")]
    else:
      out.append((ANNOTATED, f.depth))
  return out


# --- Calibration and velodyne projection. -----------------------------------------------------------


def parse_calib(text: str, source: str) -> dict[str, np.ndarray]:
  """Parses a KITTI calibration file (``key: v1 v2 ...`` lines) into float64 arrays.

  Lines whose values are not all numbers (``calib_time: 09-Jan-2012 13:57:47``) are skipped.

  Raises:
    ValueError: a line without ``:`` (named with ``source`` and the line number).
  """
  out = {}
  for i, line in enumerate(text.splitlines(), 1):
    if not line.strip():
      continue
    if ":" not in line:
      raise ValueError(f"{source}: line {i} is not 'key: values': {line[:60]!r}")
    key, values = line.split(":", 1)
    try:
      out[key.strip()] = np.array([float(v) for v in values.split()], np.float64)
    except ValueError:
      continue
  return out


def calib_entry(calib: dict[str, np.ndarray], key: str, size: int, source: str) -> np.ndarray:
  """``calib[key]`` after checking it holds ``size`` numbers (ValueError naming ``source`` otherwise)."""
  if key not in calib:
    raise ValueError(f"{source}: entry {key!r} missing; found {sorted(calib)}")
  if calib[key].size != size:
    raise ValueError(f"{source}: {key} must hold {size} numbers, got {calib[key].size}")
  return calib[key]


def intrinsics_from_calib(
  cam_to_cam: dict[str, np.ndarray], camera: str, source: str
) -> tuple[float, float, float, float]:
  """Pinhole (fx, fy, cx, cy) in pixels of the rectified image of ``camera`` (``"02"``/``"03"``).

  Read from the 3x4 ``P_rect_<camera>`` of ``calib_cam_to_cam.txt``: fx = P[0, 0], fy = P[1, 1],
  cx = P[0, 2], cy = P[1, 2] (the fourth column holds the stereo baseline, not an intrinsic).
  """
  p = calib_entry(cam_to_cam, f"P_rect_{camera}", 12, source).reshape(3, 4)
  return (float(p[0, 0]), float(p[1, 1]), float(p[0, 2]), float(p[1, 2]))


def velodyne_to_image(
  cam_to_cam: dict[str, np.ndarray],
  velo_to_cam: dict[str, np.ndarray],
  camera: str = "02",
  source: str = "calibration",
) -> np.ndarray:
  """The 3x4 matrix ``P_rect_<camera> @ R_rect_00 @ [R | T]`` from velodyne to image coordinates.

  ``R``, ``T`` (calib_velo_to_cam.txt): velodyne -> camera 0; ``R_rect_00`` (4x4 with the 3x3 in the top
  left): camera 0 -> rectified camera 0; ``P_rect_<camera>``: rectified camera 0 -> pixels of ``camera``
  (KITTI raw devkit readme; Geiger et al. 2013, Eq. 7 and 8).
  """
  rot = calib_entry(velo_to_cam, "R", 9, source).reshape(3, 3)
  trans = calib_entry(velo_to_cam, "T", 3, source)
  velo = np.eye(4)
  velo[:3, :3], velo[:3, 3] = rot, trans
  rect = np.eye(4)
  rect[:3, :3] = calib_entry(cam_to_cam, "R_rect_00", 9, source).reshape(3, 3)
  proj = calib_entry(cam_to_cam, f"P_rect_{camera}", 12, source).reshape(3, 4)
  return proj @ rect @ velo


def project_velodyne(
  points: np.ndarray, matrix: np.ndarray, size: tuple[int, int], depth: str = "forward"
) -> np.ndarray:
  """Projects a velodyne scan into a sparse depth image (the classic Eigen-split ground truth).

  Follows the procedure of the KITTI devkit as used for the Eigen split by monodepth / monodepth2
  (``generate_depth_map``): keep points with x >= 0 (in front of the LiDAR); ``(u w, v w, w) = M (x, y, z,
  1)``; column ``round(u) - 1``, row ``round(v) - 1`` (NumPy round-half-to-even; the ``- 1`` reproduces the
  1-based MATLAB devkit coordinates that this ground truth has always used); drop pixels outside the image;
  where several points hit one pixel keep the smallest depth. Points with ``w <= 0`` are also dropped (they
  lie within the few centimetres between LiDAR and camera planes and project nowhere meaningful).

  Args:
    points: float (N, 4) or (N, 3) velodyne x (forward), y (left), z (up) [, reflectance] in metres.
    matrix: float (3, 4) from :func:`velodyne_to_image`.
    size: (H, W) of the image.
    depth: ``"forward"``: the point's velodyne x (classic); ``"camera_z"``: ``w``, its depth along the
      optical axis of the rectified camera.

  Returns:
    float32 (H, W) depth in metres, 0 where no point projects.
  """
  h, w = size
  pts = np.asarray(points, np.float64)[:, :3]
  pts = pts[pts[:, 0] >= 0]
  uvw = np.concatenate([pts, np.ones((len(pts), 1))], axis=1) @ matrix.T
  front = uvw[:, 2] > 0
  pts, uvw = pts[front], uvw[front]
  col = np.round(uvw[:, 0] / uvw[:, 2]) - 1
  row = np.round(uvw[:, 1] / uvw[:, 2]) - 1
  inside = (col >= 0) & (row >= 0) & (col < w) & (row < h)
  values = (pts[:, 0] if depth == "forward" else uvw[:, 2])[inside]
  out = np.full((h, w), np.inf)
  np.minimum.at(out, (row[inside].astype(np.int64), col[inside].astype(np.int64)), values)
  out[~np.isfinite(out)] = 0.0
  return np.maximum(out, 0.0).astype(np.float32)


def read_velodyne(data: bytes, source: str) -> np.ndarray:
  """Decodes a velodyne ``.bin`` (float32 x, y, z, reflectance per point) into a float32 (N, 4) array.

  Raises:
    ValueError: the size is not a multiple of 16 bytes (named with ``source``).
  """
  if len(data) % 16:
    raise ValueError(
      f"{source}: {len(data)} bytes is not a whole number of 16-byte velodyne points"
    )
  return np.frombuffer(data, dtype="<f4").reshape(-1, 4)


# --- Examples. --------------------------------------------------------------------------------------


def depth_example(
  files: KittiFiles, frame: Frame, config: KittiConfig, meta: meta_lib.DatasetMeta
) -> dict:
  """Decodes one frame of a depth config into the stored example.

  Raises:
    ValueError: undecodable or 8-bit depth PNG, sizes that disagree (image vs depth, or image vs
      ``S_rect_<camera>`` of the calibration), a malformed calibration or velodyne file; the message names
      the file.
  """
  image_src = files.find(RAW, frame.image)
  image = common.read_png(image_src, "rgb")
  size = image.shape[:2]
  cam_to_cam, cam_src = files.calib(f"{frame.date}/calib_cam_to_cam.txt")
  intrinsics = intrinsics_from_calib(cam_to_cam, frame.camera, cam_src)
  if config.layout == "eigen":
    s_rect = calib_entry(cam_to_cam, f"S_rect_{frame.camera}", 2, cam_src)
    if (int(round(s_rect[1])), int(round(s_rect[0]))) != size:
      raise ValueError(
        f"{image_src}: image size (H, W) = {size} differs from S_rect_{frame.camera} (W, H) = "
        f"{tuple(s_rect)} of {cam_src}"
      )
    velo_to_cam, velo_src = files.calib(f"{frame.date}/calib_velo_to_cam.txt")
    matrix = velodyne_to_image(cam_to_cam, velo_to_cam, frame.camera, f"{cam_src} / {velo_src}")
    scan_src = files.find(RAW, frame.velodyne)
    with scan_src.open("rb") as f:
      points = read_velodyne(f.read(), str(scan_src))
    depth = project_velodyne(points, matrix, size, config.velodyne_depth)
  else:
    depth_src = files.find(ANNOTATED, frame.depth)
    depth = common.read_png(depth_src, "uint16").astype(np.float32) / np.float32(DEPTH_SCALE)
    if depth.shape != size:
      raise ValueError(
        f"{depth_src}: size (H, W) = {depth.shape} does not match {image_src} {size}"
      )
  return common.make_example(
    image=image,
    depth=depth,
    segmentation=None,
    intrinsics=intrinsics,
    file_name=frame.key,
    num_classes=meta.num_classes,
    source=str(image_src),
  )


def cityscapes_lut() -> np.ndarray:
  """uint8 (256,) Cityscapes label id -> trainId 0..18 (``CITYSCAPES_LABEL_ID_TO_TRAIN_ID``), else 255."""
  lut = np.full(256, meta_lib.IGNORE_INDEX, np.uint8)
  table = meta_lib.CITYSCAPES_LABEL_ID_TO_TRAIN_ID
  lut[: len(table)] = table
  return lut


def semantics_example(
  files: KittiFiles, name: str, lut: np.ndarray, meta: meta_lib.DatasetMeta
) -> dict:
  """Decodes one KITTI semantics frame (label ids 0..33 -> trainIds) into the stored example.

  Raises:
    ValueError: undecodable PNG, label ids above 33 (Cityscapes has 34 ids, 0..33), or sizes that
      disagree; the message names the file.
  """
  image_src = files.find(SEMANTICS, f"training/image_2/{name}.png")
  label_src = files.find(SEMANTICS, f"training/semantic/{name}.png")
  image = common.read_png(image_src, "rgb")
  raw = common.read_png(label_src, "uint8")
  if raw.shape != image.shape[:2]:
    raise ValueError(f"{label_src}: size (H, W) = {raw.shape} does not match {image_src}")
  if raw.max(initial=0) > 33:
    raise ValueError(
      f"{label_src}: label ids {np.unique(raw[raw > 33]).tolist()[:10]} outside the Cityscapes ids 0..33"
    )
  return common.make_example(
    image=image,
    depth=None,
    segmentation=lut[raw],
    intrinsics=None,
    file_name=name,
    num_classes=meta.num_classes,
    source=str(image_src),
  )
