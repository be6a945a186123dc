"""TFDS builder ``sun_rgbd``: SUN RGB-D V1, 37 classes, depth in metres, official 5285 / 5050 split.

Inputs (``manual_dir``), each as the official zip archive or the folder it extracts to:

* ``SUNRGBD.zip`` / ``SUNRGBD/`` (read member by member, never extracted): one folder per frame,
  ``SUNRGBD/<sensor>/<source>/<frame>/`` for sensors ``kv1``, ``kv2``, ``realsense``, ``xtion``,
  holding ``image/<name>.jpg`` (RGB), ``depth_bfx/<name>.png`` (depth in-painted by the toolbox),
  ``depth/<name>.png`` (raw sensor depth, 0 = no measurement) and ``intrinsics.txt`` (the 3 x 3
  camera matrix, 9 numbers row by row).
* ``SUNRGBDtoolbox.zip`` / ``SUNRGBDtoolbox/``, of which three files are read:

  - ``Metadata/SUNRGBDMeta.mat`` (MATLAB v5, scipy): struct array ``SUNRGBDMeta`` (1 x 10335) with
    ``rgbpath`` (``/n/fs/sun3d/data/SUNRGBD/<frame folder>/image/<name>.jpg``) and ``depthname``;
  - ``Metadata/SUNRGBD2Dseg.mat`` (MATLAB v7.3 = HDF5, read lazily with h5py):
    ``SUNRGBD2Dseg.seglabel``, one label map per ``SUNRGBDMeta`` entry in the same order, ids 1..37
    of ``seg37list`` and 0 = unlabelled, stored column-major (h5py shows (W, H)); ``seg37list``
    holds the 37 names;
  - ``traintestSUNRGBD/allsplit.mat`` (MATLAB v5): cell arrays ``alltrain`` (5285) and ``alltest``
    (5050) of frame folders (``/n/fs/sun3d/data/SUNRGBD/<frame folder>``), the split used by SegNet
    and paper 001 (model_spec §9.3). From an archive only ``SUNRGBD2Dseg.mat`` is extracted (h5py
    needs a file), once.

Stored (``data_builders.common``):

* ``segmentation``: NYU-40 training ids 0..36 (``seg37list`` = NYU-40 ids 1..37, checked by name
  against ``meta.NYU40_CLASS_NAMES``): label k -> k - 1, 0 -> 255 (ignore).
* ``depth`` metres: PNG value v -> ``((v >> 3) | (v << 13)) mod 2^16 / 1000``, values above 8 m set
  to 8 m (SUNRGBDtoolbox ``read3dPoints.m``; docs/model_spec.md §9.3); 0 stays 0 = invalid. Config
  ``default`` reads ``depth_bfx/``, config ``raw_depth`` reads ``depth/``.
* ``intrinsics``: ``(K[0,0], K[1,1], K[0,2], K[1,2])`` of the frame's ``intrinsics.txt``, as written
  (the toolbox uses them with 1-based pixel coordinates, as the NYU toolbox does for
  ``meta.NYU_INTRINSICS``).
* ``file_name`` and key: the frame folder below ``SUNRGBD/`` (``kv1/NYUdata/NYU0001``).

Splits: ``train`` (``alltrain``) and ``test`` (``alltest``); there is no official validation split.
"""

from __future__ import annotations

import dataclasses
import io
import math
import re
import shutil
from collections.abc import Iterator

import numpy as np
import tensorflow_datasets as tfds
from etils import epath
from PIL import Image

from data_builders import archive, common
from semdepth_jax.data import meta as meta_lib

DATA = ("SUNRGBD", "SUNRGBD.zip")
TOOLBOX = ("SUNRGBDtoolbox", "SUNRGBDtoolbox.zip")
META_FILE = "SUNRGBDtoolbox/Metadata/SUNRGBDMeta.mat"
SEG_FILE = "SUNRGBDtoolbox/Metadata/SUNRGBD2Dseg.mat"
SPLIT_FILE = "SUNRGBDtoolbox/traintestSUNRGBD/allsplit.mat"
NUM_CLASSES = 37
DEPTH_SCALE = 1000.0  # decoded depth PNG value per metre.
DEPTH_CLAMP = 8.0  # metres; read3dPoints.m sets larger values to 8.
SPLITS = {"train": "alltrain", "test": "alltest"}
# seg37list spellings that differ from meta.NYU40_CLASS_NAMES once "_" is read as " ".
_NAME_ALIASES = {"fridge": "refrigerator", "tv": "television"}

_INSTRUCTIONS = """\
Download from https://rgbd.cs.princeton.edu/ (section "Data and annotation") and put into
`manual_dir`, each as the zip archive or extracted (the archives may also sit one level below
`manual_dir`):

  SUNRGBD.zip         or  SUNRGBD/{kv1,kv2,realsense,xtion}/.../<frame>/
                          {image/*.jpg, depth_bfx/*.png, depth/*.png, intrinsics.txt}
  SUNRGBDtoolbox.zip  or  SUNRGBDtoolbox/Metadata/SUNRGBDMeta.mat
                          SUNRGBDtoolbox/Metadata/SUNRGBD2Dseg.mat
                          SUNRGBDtoolbox/traintestSUNRGBD/allsplit.mat

SUNRGBD.zip is read in place; from SUNRGBDtoolbox.zip only SUNRGBD2Dseg.mat is extracted (into the
TFDS download folder). Splits: train (allsplit.mat `alltrain`, 5285 frames) and test (`alltest`,
5050). Config `default` stores the in-painted depth of depth_bfx/, config `raw_depth` the sensor
depth of depth/.
"""


@dataclasses.dataclass(eq=False)
class SunRgbdConfig(tfds.core.BuilderConfig):
  """Builder config of ``sun_rgbd``.

  Attributes:
    depth_folder: ``depth_bfx`` (toolbox in-painted depth, dense) or ``depth`` (raw sensor depth,
      with holes = 0).
  """

  depth_folder: str = "depth_bfx"


class Builder(common.ArrayRecordByDefault, tfds.core.GeneratorBasedBuilder):
  """SUN RGB-D V1 (Song et al. 2015): RGB, depth in metres, 37-class labels, per-image intrinsics.

  Registered as ``sun_rgbd`` (TFDS derives it from this module's name). See the module docstring for
  the inputs, units and split.
  """

  VERSION = tfds.core.Version("1.0.0")
  RELEASE_NOTES = {"1.0.0": "Initial release: toolbox labels and split, depth_bfx or raw depth."}
  MANUAL_DOWNLOAD_INSTRUCTIONS = _INSTRUCTIONS
  BUILDER_CONFIGS = [
    SunRgbdConfig(name="default", depth_folder="depth_bfx", description="In-painted depth_bfx/."),
    SunRgbdConfig(name="raw_depth", depth_folder="depth", description="Raw sensor depth/."),
  ]
  DEFAULT_BUILDER_CONFIG_NAME = "default"

  def _info(self) -> tfds.core.DatasetInfo:
    return self.dataset_info_from_configs(
      features=common.example_features(),
      homepage="https://rgbd.cs.princeton.edu/",
    )

  def _split_generators(self, dl_manager: tfds.download.DownloadManager):
    depth_folder = self.builder_config.depth_folder
    if depth_folder not in ("depth_bfx", "depth"):
      raise ValueError(
        f"sun_rgbd: depth_folder must be 'depth_bfx' or 'depth', got {depth_folder!r}"
      )
    manual_dir = epath.Path(dl_manager.manual_dir)
    data, toolbox = find_inputs(manual_dir)
    archive.check_present(
      [toolbox.file(n) for n in (META_FILE, SEG_FILE, SPLIT_FILE)], toolbox.where(), _INSTRUCTIONS
    )
    frames = read_meta(toolbox.file(META_FILE))
    seg_path = local_copy(toolbox.file(SEG_FILE), dl_manager.download_dir / "extracted")
    check_seg_file(seg_path, len(frames))
    splits = assign_splits(frames, read_split(toolbox.file(SPLIT_FILE)), toolbox.file(SPLIT_FILE))
    required = [
      data.file(name) for _, frame in frames for name in frame_files(frame, depth_folder).values()
    ]
    archive.check_present(required, data.where(), _INSTRUCTIONS)
    return {
      split: self._generate_examples(data, seg_path, items, depth_folder)
      for split, items in splits.items()
      if items
    }

  def _generate_examples(
    self,
    data: archive.ZipOrFolder,
    seg_path: epath.Path,
    items: list[tuple[int, dict[str, str]]],
    depth_folder: str,
  ) -> Iterator[tuple[str, dict]]:
    """Yields (key, example); ``items`` are (0-based SUNRGBDMeta index, frame) pairs."""
    import h5py

    with h5py.File(seg_path, "r") as f:
      refs = _seglabel_refs(f, seg_path)
      for index, frame in items:
        labels = read_seglabel(f, refs[index], f"{seg_path}[SUNRGBD2Dseg({index + 1}).seglabel]")
        yield frame["folder"], load_frame(data, frame, labels, depth_folder)


def find_inputs(manual_dir: epath.Path) -> tuple[archive.ZipOrFolder, archive.ZipOrFolder]:
  """Finds the image tree and the toolbox (folder or archive each) in ``manual_dir``.

  Raises:
    FileNotFoundError: one message naming every input that is neither an archive nor a folder there.
  """
  found = [archive.find_input(manual_dir, folder, zip_name) for folder, zip_name in (DATA, TOOLBOX)]
  missing = [
    f"{z} (or folder {d}/)"
    for (d, z), got in zip((DATA, TOOLBOX), found, strict=True)
    if got is None
  ]
  if missing:
    listing = "\n  ".join(missing)
    raise FileNotFoundError(
      f"{len(missing)} required input(s) missing under {manual_dir} (and one level below):\n  "
      f"{listing}\n{_INSTRUCTIONS}".rstrip()
    )
  return found[0], found[1]


def frame_folder(path: str) -> str:
  """The frame folder below ``SUNRGBD/`` of a toolbox path (``kv1/NYUdata/NYU0001``).

  Toolbox paths carry the authors' prefix (``/n/fs/sun3d/data/SUNRGBD/...``), sometimes with doubled
  slashes or a trailing slash; everything up to the last ``SUNRGBD/`` is dropped and slashes
  normalised.
  """
  path = str(path).strip().replace("\\", "/")
  at = path.rfind("SUNRGBD/")
  if at >= 0 and (at == 0 or path[at - 1] == "/"):
    path = path[at + len("SUNRGBD/") :]
  return "/".join(p for p in path.split("/") if p)


def _loadmat(path, variables: list[str] | None = None) -> dict:
  from scipy import io as sio

  try:
    with path.open("rb") as f:
      data = f.read()
    return sio.loadmat(
      io.BytesIO(data), squeeze_me=True, struct_as_record=False, variable_names=variables
    )
  except (OSError, ValueError, TypeError, NotImplementedError) as e:
    raise ValueError(f"{path}: cannot read as a MATLAB v5 .mat file: {e}") from e


def read_meta(path) -> list[tuple[int, dict[str, str]]]:
  """Reads ``SUNRGBDMeta.mat``: ``(index, frame)`` per entry, index 0-based in file order.

  A frame is ``{"folder", "image", "depth_name"}``: the folder below ``SUNRGBD/``, the image file
  name and the depth file name (``depthname``; the same name is used in ``depth/`` and
  ``depth_bfx/``).

  Raises:
    ValueError: the variable or its fields ``rgbpath`` / ``depthname`` are missing, an ``rgbpath``
      is not ``.../<folder>/image/<name>``, or two entries name the same folder.
  """
  mat = _loadmat(path, ["SUNRGBDMeta"])
  if "SUNRGBDMeta" not in mat:
    raise ValueError(f"{path}: variable 'SUNRGBDMeta' missing")
  frames, seen = [], {}
  for i, entry in enumerate(np.atleast_1d(mat["SUNRGBDMeta"]).ravel()):
    fields = getattr(entry, "_fieldnames", [])
    if "rgbpath" not in fields or "depthname" not in fields:
      raise ValueError(
        f"{path}: SUNRGBDMeta({i + 1}) needs fields rgbpath and depthname, has {sorted(fields)}"
      )
    parts = frame_folder(entry.rgbpath).split("/")
    if len(parts) < 3 or parts[-2] != "image":
      raise ValueError(
        f"{path}: SUNRGBDMeta({i + 1}).rgbpath {entry.rgbpath!r} is not .../<frame>/image/<name>"
      )
    folder = "/".join(parts[:-2])
    if folder in seen:
      raise ValueError(f"{path}: SUNRGBDMeta({seen[folder] + 1}) and ({i + 1}) both name {folder}")
    seen[folder] = i
    frames.append((i, {"folder": folder, "image": parts[-1], "depth_name": str(entry.depthname)}))
  return frames


def read_split(path) -> dict[str, set[str]]:
  """Reads ``allsplit.mat``: ``{"train": folders of alltrain, "test": folders of alltest}``.

  Raises:
    ValueError: a variable is missing or a folder is in both lists.
  """
  mat = _loadmat(path, list(SPLITS.values()))
  out = {}
  for split, variable in SPLITS.items():
    if variable not in mat:
      raise ValueError(f"{path}: variable {variable!r} missing")
    out[split] = {frame_folder(p) for p in np.atleast_1d(mat[variable]).ravel()}
  both = sorted(out["train"] & out["test"])
  if both:
    raise ValueError(f"{path}: {len(both)} folder(s) in both alltrain and alltest, e.g. {both[0]}")
  return out


def assign_splits(
  frames: list[tuple[int, dict[str, str]]], split: dict[str, set[str]], split_path
) -> dict[str, list[tuple[int, dict[str, str]]]]:
  """Puts every SUNRGBDMeta frame into ``train`` or ``test`` (file order kept).

  Raises:
    ValueError: frames that are in neither list (the first few are named).
  """
  out = {name: [] for name in SPLITS}
  orphans = []
  for index, frame in frames:
    name = next((s for s in SPLITS if frame["folder"] in split[s]), None)
    if name is None:
      orphans.append(frame["folder"])
    else:
      out[name].append((index, frame))
  if orphans:
    raise ValueError(
      f"{split_path}: {len(orphans)} SUNRGBDMeta frame(s) in neither alltrain nor alltest, e.g. "
      f"{', '.join(orphans[:3])}"
    )
  return out


def frame_files(frame: dict[str, str], depth_folder: str) -> dict[str, str]:
  """Relative names (below the tree root) of a frame's image, depth and intrinsics files."""
  base = f"SUNRGBD/{frame['folder']}"
  return {
    "image": f"{base}/image/{frame['image']}",
    "depth": f"{base}/{depth_folder}/{frame['depth_name']}",
    "intrinsics": f"{base}/intrinsics.txt",
  }


def local_copy(path, extract_dir: epath.Path) -> epath.Path:
  """``path`` itself if it is a file on disk, else a copy of the archive member in ``extract_dir``.

  The member is extracted once; the copy is reused when its size equals the member's.
  """
  if not isinstance(path, archive.Member):
    return path
  dest = extract_dir / "sun_rgbd_toolbox" / path.name
  info = path.source.zip_file().getinfo(path.member)
  if dest.exists() and dest.stat().length == info.file_size:
    return dest
  dest.parent.mkdir(parents=True, exist_ok=True)
  partial = dest.parent / f"{dest.name}.partial"
  try:
    with path.source.zip_file().open(path.member) as src, partial.open("wb") as out:
      shutil.copyfileobj(src, out, 1 << 24)
  except (OSError, EOFError) as e:
    raise ValueError(f"{path}: cannot extract archive member: {e}") from e
  partial.rename(dest)
  return dest


def _seglabel_refs(f, path) -> np.ndarray:
  """The object references of ``SUNRGBD2Dseg.seglabel``, flat (one per SUNRGBDMeta entry)."""
  group = f.get("SUNRGBD2Dseg")
  if group is None or "seglabel" not in group:
    raise ValueError(f"{path}: expected dataset SUNRGBD2Dseg/seglabel; found {sorted(f.keys())}")
  refs = group["seglabel"][()]
  if refs.ndim != 2 or 1 not in refs.shape:
    raise ValueError(
      f"{path}: SUNRGBD2Dseg/seglabel must be a 1 x N struct field, got {refs.shape}"
    )
  return refs.ravel()


def _decode_chars(f, ref) -> str:
  codes = np.asarray(f[ref][()]).ravel()
  return "".join(chr(int(c)) for c in codes if c).strip()


def check_seg_file(path: epath.Path, num_frames: int) -> None:
  """Opens ``SUNRGBD2Dseg.mat`` with h5py and checks its layout and class names.

  Checks that ``SUNRGBD2Dseg/seglabel`` has one entry per SUNRGBDMeta frame and, when the file holds
  ``seg37list``, that its names are NYU-40 names 1..37 (``meta.NYU40_CLASS_NAMES``; ``_`` read as a
  space, ``fridge`` = refrigerator, ``tv`` = television).

  Raises:
    ValueError: not HDF5 (MATLAB v7.3), datasets missing, a count that differs, or other class
      names.
  """
  import h5py

  try:
    with h5py.File(path, "r") as f:
      n = len(_seglabel_refs(f, path))
      if n != num_frames:
        raise ValueError(
          f"{path}: SUNRGBD2Dseg has {n} label maps but SUNRGBDMeta.mat has {num_frames} frames"
        )
      if "seg37list" in f:
        names = [_decode_chars(f, r) for r in np.asarray(f["seg37list"][()]).ravel()]
        names = [_NAME_ALIASES.get(n, n).replace("_", " ") for n in names]
        expected = list(meta_lib.NYU40_CLASS_NAMES[:NUM_CLASSES])
        if names != expected:
          diffs = [
            f"{i + 1}: {a!r} != {b!r}"
            for i, (a, b) in enumerate(zip(names, expected, strict=False))
            if a != b
          ]
          raise ValueError(
            f"{path}: seg37list ({len(names)} names) differs from NYU-40 names 1..37 "
            f"(file != meta): {'; '.join(diffs[:5]) or 'different length'}"
          )
  except OSError as e:
    raise ValueError(f"{path}: cannot open as HDF5 (MATLAB v7.3): {e}") from e


def read_seglabel(f, ref, source: str) -> np.ndarray:
  """One label map from an open ``SUNRGBD2Dseg.mat``: int64 (H, W) ids 0..37 (0 = unlabelled).

  Raises:
    ValueError: not 2-D, non-integer values or ids above 37; the message names ``source``.
  """
  try:
    raw = np.asarray(f[ref][()])
  except (OSError, ValueError, KeyError) as e:
    raise ValueError(f"{source}: cannot read label map: {e}") from e
  if raw.ndim != 2:
    raise ValueError(f"{source}: label map must be 2-D, got shape {raw.shape}")
  labels = raw.T  # MATLAB column-major (W, H) as h5py shows it -> (H, W).
  if labels.dtype.kind == "f" and not np.all(np.isfinite(labels) & (labels == np.round(labels))):
    raise ValueError(f"{source}: label map holds non-integer values")
  labels = labels.astype(np.int64)
  bad = (labels < 0) | (labels > NUM_CLASSES)
  if bad.any():
    raise ValueError(
      f"{source}: label ids {np.unique(labels[bad]).tolist()[:10]} outside 0..{NUM_CLASSES}"
    )
  return labels


def depth_millimetres(code: np.ndarray) -> np.ndarray:
  """Undoes the bit rotation of SUN RGB-D depth PNGs: uint16 millimetres.

  SUNRGBDtoolbox ``read3dPoints.m``: ``bitor(bitshift(v, -3), bitshift(v, 16 - 3))`` on uint16, i.e.
  the 16-bit value rotated right by 3 bits (MATLAB drops the bits a left shift pushes out of 16
  bits).

  Args:
    code: uint16 (H, W) PNG values.

  Returns:
    uint16 (H, W): ``(v >> 3) | ((v << 13) mod 2^16)``.
  """
  v = np.asarray(code, np.uint16)
  return (v >> np.uint16(3)) | (v << np.uint16(13))


def decode_depth(code: np.ndarray) -> np.ndarray:
  """SUN RGB-D depth PNG -> metres, as SUNRGBDtoolbox ``read3dPoints.m`` (docs/model_spec.md §9.3).

  Args:
    code: uint16 (H, W) PNG values.

  Returns:
    float32 (H, W): ``depth_millimetres(code) / 1000``, values above ``DEPTH_CLAMP`` (8 m) set to
    8 m; 0 where the PNG is 0 (invalid).
  """
  depth = depth_millimetres(code).astype(np.float32) / np.float32(DEPTH_SCALE)
  return np.minimum(depth, np.float32(DEPTH_CLAMP))


def read_intrinsics(path) -> tuple[float, float, float, float]:
  """Reads ``intrinsics.txt`` (the 3 x 3 matrix, 9 numbers row by row): (fx, fy, cx, cy) pixels.

  Raises:
    ValueError: not 9 finite numbers, or fx / fy not positive; the message names the file.
  """
  try:
    text = path.read_text()
  except (OSError, UnicodeDecodeError, ValueError) as e:
    raise ValueError(f"{path}: cannot read intrinsics: {e}") from e
  try:
    values = [float(t) for t in re.split(r"[\s,;]+", text.strip()) if t]
  except ValueError as e:
    raise ValueError(f"{path}: intrinsics must be 9 numbers: {e}") from e
  if len(values) != 9 or not all(math.isfinite(v) for v in values):
    raise ValueError(
      f"{path}: intrinsics must be 9 finite numbers (3 x 3 matrix), got {len(values)}"
    )
  fx, fy, cx, cy = values[0], values[4], values[2], values[5]
  if fx <= 0 or fy <= 0:
    raise ValueError(f"{path}: focal lengths must be positive, got fx={fx}, fy={fy}")
  return fx, fy, cx, cy


def read_image(path) -> np.ndarray:
  """Decodes an RGB image (the JPEGs of ``image/``) with PIL: uint8 (H, W, 3).

  Raises:
    ValueError: the file cannot be decoded; the message names ``path``.
  """
  try:
    with path.open("rb") as f, Image.open(f) as img:
      img.load()
      return np.array(img.convert("RGB"), dtype=np.uint8)
  except (OSError, SyntaxError, Image.DecompressionBombError) as e:
    raise ValueError(f"{path}: cannot decode image: {e}") from e


def load_frame(
  data: archive.ZipOrFolder, frame: dict[str, str], labels: np.ndarray, depth_folder: str
) -> dict:
  """Decodes one frame into the stored example (``common.make_example``).

  Args:
    data: the ``SUNRGBD`` tree.
    frame: entry of ``read_meta``.
    labels: int (H, W) ids 0..37 of ``read_seglabel``.
    depth_folder: ``depth_bfx`` or ``depth``.

  Raises:
    ValueError: undecodable files, bad intrinsics or sizes that disagree; the message names the
      file.
  """
  names = frame_files(frame, depth_folder)
  image_path, depth_path = data.file(names["image"]), data.file(names["depth"])
  image = read_image(image_path)
  depth = decode_depth(common.read_png(depth_path, "uint16"))
  intrinsics = read_intrinsics(data.file(names["intrinsics"]))
  if depth.shape != image.shape[:2]:
    raise ValueError(
      f"{depth_path}: size (H, W) = {depth.shape} does not match {image_path.name} "
      f"{image.shape[:2]}"
    )
  if labels.shape != image.shape[:2]:
    raise ValueError(
      f"SUNRGBD2Dseg label map of {frame['folder']}: size (H, W) = {labels.shape} does not match "
      f"{image_path} {image.shape[:2]}"
    )
  segmentation = np.where(labels == 0, meta_lib.IGNORE_INDEX, labels - 1)
  return common.make_example(
    image=image,
    depth=depth,
    segmentation=segmentation,
    intrinsics=intrinsics,
    file_name=frame["folder"],
    num_classes=NUM_CLASSES,
    source=str(image_path),
  )
