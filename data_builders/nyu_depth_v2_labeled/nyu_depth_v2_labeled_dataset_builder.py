"""TFDS builder ``nyu_depth_v2_labeled``: the 1449 labelled NYU Depth v2 frames, 40 or 13 classes.

Inputs (``manual_dir``), either

* the official MATLAB v7.3 (HDF5) file ``nyu_depth_v2_labeled.mat`` (2.8 GB, read lazily frame by frame
  with h5py). Its datasets, as h5py shows MATLAB's column-major arrays: ``images`` (1449, 3, 640, 480)
  uint8, ``depths`` (1449, 640, 480) float32 metres (the in-painted depth, colorization-filled),
  ``rawDepths`` (1449, 640, 480) float32 metres (the projected Kinect depth before in-painting, 0 = no
  measurement), ``labels`` (1449, 640, 480) uint16 raw ids 1..894, 0 = unlabelled. Frame ``i`` (0-based in
  h5py) is ``images[i].transpose(2, 1, 0)`` -> (480, 640, 3) and ``depths[i].T`` -> (480, 640); or
* extracted PNGs (the layout of ``../shared/data/nyu_depth_v2_samples/joint``): ``NNNNNN.png`` RGB,
  ``depth_gt_NNNNNN.png`` uint16 (metres = v / 5000, 0 = invalid), ``segm_gt_NNNNNN.png`` uint8 NYU-40
  training ids 0..39 with 255 = ignore;

plus the toolbox files ``splits.mat`` (``trainNdxs`` 795 / ``testNdxs`` 654, 1-based MATLAB indices),
``classMapping40.mat`` (``mapClass`` 894 -> 40, ``className``) and ``class13Mapping.mat``
(``classMapping13.labels13`` 40 -> 13, ``classMapping13.classNames``).

Frame numbering: ``NNNNNN`` in the PNG names is the 1-based MATLAB index, i.e. the number that appears in
``splits.mat`` (h5py index ``NNNNNN - 1``). Evidence: the shared samples named 001096, 001299 and 001391 are
documented as test frames; all three are in ``testNdxs`` but 1097, 1300 and 1392 are in ``trainNdxs``,
so a 0-based reading would put them in train. Frames 000433 and 000464 are test frames either way.
Examples built from the .mat use the same 6-digit keys, so both inputs give the same ``file_name``.

Stored (``data_builders.common``): depth float32 metres; labels are training ids ``0 .. C-1`` with 255 =
ignore (``semdepth_jax.data.meta``): config ``40``: raw 0 -> 255, raw k -> ``mapClass[k] - 1``; config
``13``: NYU-40 id c -> ``labels13[c] - 1``. Intrinsics ``meta.NYU_INTRINSICS``.

Depth source: configs ``40`` and ``13`` store the in-painted ``depths`` (dense, good for training);
``40_raw`` and ``13_raw`` store ``rawDepths`` (0 where the Kinect gave no return), the depth the field's
NYU evaluation protocols score against (``semdepth_jax.metrics`` ``nyu_*`` protocols; README
"Evaluation protocols"). Raw configs need the .mat (extracted PNGs hold a single depth map).
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Iterator

import numpy as np
import tensorflow_datasets as tfds
from etils import epath

from data_builders import common
from semdepth_jax.data import meta as meta_lib

MAT_FILE = "nyu_depth_v2_labeled.mat"
SPLITS_FILE = "splits.mat"
MAP40_FILE = "classMapping40.mat"
MAP13_FILE = "class13Mapping.mat"
NUM_RAW_CLASSES = 894
PNG_DEPTH_SCALE = 5000.0  # depth_gt PNG value per metre.
_FRAME_RE = re.compile(r"(\d+)\.png")
# The toolbox spells one NYU-40 name differently from meta.NYU40_CLASS_NAMES.
_NAME_ALIASES = {"refridgerator": "refrigerator"}

_INSTRUCTIONS = f"""\
Put into `manual_dir` (toolbox .mat files may also sit in `<manual_dir>/meta/`):

  {MAT_FILE}   official labelled set (MATLAB v7.3), from
      http://horatio.cs.nyu.edu/mit/silberman/nyu_depth_v2/nyu_depth_v2_labeled.mat
  {SPLITS_FILE}   official train/test split, from
      http://horatio.cs.nyu.edu/mit/silberman/indoor_seg_sup/splits.mat
  {MAP40_FILE}   894 -> 40 class mapping (Gupta et al.; e.g. github.com/ankurhanda/nyuv2-meta-data)
  {MAP13_FILE}   40 -> 13 class mapping (config `13` only; same repository)

Instead of {MAT_FILE} (and then without {MAP40_FILE}), extracted PNG frames are accepted in `manual_dir` or
`<manual_dir>/joint/`: NNNNNN.png (RGB), depth_gt_NNNNNN.png (uint16, metres = v / 5000) and
segm_gt_NNNNNN.png (uint8 NYU-40 ids 0..39, 255 = ignore), NNNNNN = 1-based index of the labelled set.
{SPLITS_FILE} is required with either input; splits without frames are not written.
"""


@dataclasses.dataclass(eq=False)
class NyuConfig(tfds.core.BuilderConfig):
  """Builder config of ``nyu_depth_v2_labeled``.

  Attributes:
    num_classes: 40 (Gupta et al. NYU-40) or 13 (Couprie et al.).
    depth_source: ``"inpainted"`` (the .mat's ``depths``) or ``"raw"`` (``rawDepths``, 0 = missing).
  """

  num_classes: int = 40
  depth_source: str = "inpainted"

  @property
  def depth_key(self) -> str:
    """The .mat dataset the depth is read from."""
    return "rawDepths" if self.depth_source == "raw" else "depths"


class Builder(common.ArrayRecordByDefault, tfds.core.GeneratorBasedBuilder):
  """NYU Depth v2 labelled set (Silberman et al. 2012): RGB, depth in metres and 40 / 13-class labels.

  Registered as ``nyu_depth_v2_labeled`` (TFDS derives it from the module name; TFDS's own
  ``nyu_depth_v2`` is a different, depth-only dataset). See the module docstring for inputs and units.
  """

  VERSION = tfds.core.Version("1.0.0")
  RELEASE_NOTES = {"1.0.0": "Initial release: official .mat or extracted PNGs; configs 40 and 13."}
  MANUAL_DOWNLOAD_INSTRUCTIONS = _INSTRUCTIONS
  BUILDER_CONFIGS = [
    NyuConfig(name="40", num_classes=40, description="NYU-40 classes (Gupta et al. 2013)."),
    NyuConfig(name="13", num_classes=13, description="13 classes (Couprie et al. 2013)."),
    NyuConfig(
      name="40_raw",
      num_classes=40,
      depth_source="raw",
      description="NYU-40 classes; depth = rawDepths (no in-painting), for the depth protocols.",
    ),
    NyuConfig(
      name="13_raw",
      num_classes=13,
      depth_source="raw",
      description="13 classes; depth = rawDepths (no in-painting), for the depth protocols.",
    ),
  ]
  DEFAULT_BUILDER_CONFIG_NAME = "40"

  def _info(self) -> tfds.core.DatasetInfo:
    return self.dataset_info_from_configs(
      features=common.example_features(),
      homepage="https://cs.nyu.edu/~fergus/datasets/nyu_depth_v2.html",
    )

  def _split_generators(self, dl_manager: tfds.download.DownloadManager):
    manual_dir = epath.Path(dl_manager.manual_dir)
    config = self.builder_config
    num_classes = config.num_classes
    meta = meta_lib.get_meta(f"nyu_depth_v2_labeled/{config.name}")
    mat = manual_dir / MAT_FILE
    png_dir, frames = find_png_frames(manual_dir)
    use_mat = mat.exists() or not frames
    if config.depth_source == "raw" and not use_mat:
      raise ValueError(
        f"{mat}: config {config.name!r} stores rawDepths and needs the official .mat; found only "
        f"{len(frames)} extracted PNG frame(s) in {png_dir}, whose depth_gt is one (unlabelled) depth map "
        f"(build config {str(num_classes)!r} from PNGs instead)"
      )
    toolbox = (
      [SPLITS_FILE] + ([MAP40_FILE] if use_mat else []) + ([MAP13_FILE] * (num_classes == 13))
    )
    paths = {name: find_toolbox_file(manual_dir, name) for name in toolbox}
    required = list(paths.values())
    if use_mat:
      required.insert(0, mat)
    else:
      required += [png_dir / f"{kind}_{f}.png" for f in frames for kind in ("depth_gt", "segm_gt")]
    common.check_files_exist(
      required,
      f"{manual_dir} (toolbox files also looked for in {manual_dir / 'meta'}; PNG frames in "
      f"{manual_dir} and {manual_dir / 'joint'}: {'none found' if not frames else len(frames)})",
      _INSTRUCTIONS,
    )
    train, test = read_splits(paths[SPLITS_FILE])
    to13 = read_class13_mapping(paths[MAP13_FILE]) if num_classes == 13 else None
    if use_mat:
      lut = raw_label_lut(read_class40_mapping(paths[MAP40_FILE]), to13)
      num_frames = check_mat_layout(mat, depth_key=config.depth_key)
      beyond = [i for i in train + test if i > num_frames]
      if beyond:
        raise ValueError(
          f"{paths[SPLITS_FILE]}: indices {beyond[:5]} exceed the {num_frames} frames of {mat}"
        )
      splits = {"train": train, "test": test}
      return {
        name: self._generate_examples(idx, lut, meta, mat=mat)
        for name, idx in splits.items()
        if idx
      }
    lut = nyu40_lut(to13)
    split_of = {**{i: "train" for i in train}, **{i: "test" for i in test}}
    splits = {"train": [], "test": []}
    for f in frames:
      if int(f) not in split_of:
        raise ValueError(
          f"{png_dir / (f + '.png')}: frame {int(f)} is in neither trainNdxs nor testNdxs of "
          f"{paths[SPLITS_FILE]} (1-based indices 1..{len(split_of)})"
        )
      splits[split_of[int(f)]].append(f)
    return {
      name: self._generate_examples(fs, lut, meta, png_dir=png_dir)
      for name, fs in splits.items()
      if fs
    }

  def _generate_examples(
    self,
    items: list,
    lut: np.ndarray,
    meta: meta_lib.DatasetMeta,
    mat: epath.Path | None = None,
    png_dir: epath.Path | None = None,
  ) -> Iterator[tuple[str, dict]]:
    """Yields (key, example); ``items`` are 1-based .mat indices (``mat`` given) or PNG frame stems."""
    if mat is None:
      for frame in items:
        yield frame, png_example(png_dir, frame, lut, meta)
      return
    import h5py

    depth_key = self.builder_config.depth_key
    with h5py.File(mat, "r") as f:
      for index in items:
        key = f"{index:06d}"
        yield key, mat_example(f, index, lut, meta, f"{mat}[frame {key}]", depth_key=depth_key)


def find_png_frames(manual_dir: epath.Path) -> tuple[epath.Path, list[str]]:
  """Returns the folder of extracted PNG frames and the sorted frame stems (``NNNNNN``).

  Looks in ``manual_dir`` then ``manual_dir/joint``; returns ``(manual_dir, [])`` when neither holds any.
  """
  for folder in (manual_dir, manual_dir / "joint"):
    if folder.is_dir():
      frames = sorted(p.stem for p in folder.iterdir() if _FRAME_RE.fullmatch(p.name))
      if frames:
        return folder, frames
  return manual_dir, []


def find_toolbox_file(manual_dir: epath.Path, name: str) -> epath.Path:
  """``manual_dir/name`` or ``manual_dir/meta/name``, whichever exists (the former if neither)."""
  for path in (manual_dir / name, manual_dir / "meta" / name):
    if path.exists():
      return path
  return manual_dir / name


def _loadmat(path: epath.Path) -> dict:
  from scipy import io as sio

  try:
    with path.open("rb") as f:
      return sio.loadmat(f, squeeze_me=True, struct_as_record=False)
  except Exception as e:  # noqa: BLE001 - a damaged file fails anywhere in scipy (IndexError, zlib...)
    raise ValueError(
      f"{path}: cannot read as a MATLAB v5 .mat file (damaged download?): {type(e).__name__}: {e}"
    ) from e


def _get(mat: dict, path: epath.Path, name: str):
  if name not in mat:
    raise ValueError(
      f"{path}: variable {name!r} missing; found {sorted(k for k in mat if not k.startswith('__'))}"
    )
  return mat[name]


def _names(array) -> list[str]:
  return [str(n).strip() for n in np.atleast_1d(array).ravel()]


def read_splits(path: epath.Path) -> tuple[list[int], list[int]]:
  """Reads ``splits.mat``: (train, test) lists of 1-based frame indices, in file order.

  Raises:
    ValueError: variables missing, indices < 1, or a frame in both splits.
  """
  mat = _loadmat(path)
  train, test = (_indices(_get(mat, path, name), path, name) for name in ("trainNdxs", "testNdxs"))
  both = sorted(set(train) & set(test))
  if both:
    raise ValueError(f"{path}: frames {both[:5]} are in both trainNdxs and testNdxs")
  if min(train + test, default=1) < 1:
    raise ValueError(f"{path}: indices must be 1-based (>= 1), found {min(train + test)}")
  return train, test


def _indices(values, path: epath.Path, name: str) -> list[int]:
  """A .mat variable as a list of integer frame indices; ValueError naming file and variable if not."""
  array = np.atleast_1d(np.asarray(values)).ravel()
  if not np.issubdtype(array.dtype, np.number) or not np.all(np.isfinite(array)):
    raise ValueError(f"{path}: {name} must hold finite frame indices, got dtype {array.dtype}")
  if np.any(array != np.round(array)):
    raise ValueError(
      f"{path}: {name} must hold integer frame indices, found {array[array != np.round(array)][:3]}"
    )
  return [int(i) for i in array]


def read_class40_mapping(path: epath.Path) -> np.ndarray:
  """Reads ``classMapping40.mat``: int (894,) NYU-40 id (1..40) of each raw id 1..894.

  Raises:
    ValueError: variables missing, wrong length, ids outside 1..40, or class names (``className``) that
      differ from ``meta.NYU40_CLASS_NAMES`` (up to the toolbox's spelling "refridgerator").
  """
  mat = _loadmat(path)
  mapping = np.atleast_1d(_get(mat, path, "mapClass")).ravel().astype(np.int64)
  if mapping.shape != (NUM_RAW_CLASSES,) or mapping.min() < 1 or mapping.max() > 40:
    raise ValueError(
      f"{path}: mapClass must hold {NUM_RAW_CLASSES} ids in 1..40, got shape {mapping.shape} "
      f"range {mapping.min()}..{mapping.max()}"
    )
  names = [_NAME_ALIASES.get(n, n) for n in _names(_get(mat, path, "className"))]
  _check_names(path, "className", names, meta_lib.NYU40_CLASS_NAMES)
  return mapping


def read_class13_mapping(path: epath.Path) -> np.ndarray:
  """Reads ``class13Mapping.mat``: int (40,) 13-class id (1..13) of each NYU-40 id 1..40.

  Raises:
    ValueError: variables missing, wrong length, ids outside 1..13, or ``classNames`` that differ from
      ``meta.NYU13_CLASS_NAMES`` (same order required: stored id = position in that tuple).
  """
  mat = _loadmat(path)
  struct = _get(mat, path, "classMapping13")
  if not hasattr(struct, "labels13") or not hasattr(struct, "classNames"):
    raise ValueError(f"{path}: classMapping13 must be a struct with fields labels13 and classNames")
  mapping = np.atleast_1d(struct.labels13).ravel().astype(np.int64)
  if mapping.shape != (40,) or mapping.min() < 1 or mapping.max() > 13:
    raise ValueError(
      f"{path}: classMapping13.labels13 must hold 40 ids in 1..13, got shape {mapping.shape} "
      f"range {mapping.min()}..{mapping.max()}"
    )
  _check_names(
    path, "classMapping13.classNames", _names(struct.classNames), meta_lib.NYU13_CLASS_NAMES
  )
  return mapping


def _check_names(path, variable: str, names: list[str], expected: tuple[str, ...]) -> None:
  if tuple(names) != expected:
    diffs = [
      f"{i + 1}: {a!r} != {b!r}"
      for i, (a, b) in enumerate(zip(names, expected, strict=False))
      if a != b
    ]
    raise ValueError(
      f"{path}: {variable} ({len(names)} names) differs from semdepth_jax.data.meta "
      f"({len(expected)} names); file != meta: {'; '.join(diffs[:5])}"
    )


def raw_label_lut(map40: np.ndarray, map13: np.ndarray | None) -> np.ndarray:
  """Look-up table raw id (0..894) -> stored training id.

  Args:
    map40: int (894,) NYU-40 ids 1..40 of raw ids 1..894 (``read_class40_mapping``).
    map13: int (40,) 13-class ids 1..13 of NYU-40 ids 1..40, or None for the 40-class config.

  Returns:
    uint8 (895,): entry 0 (unlabelled) = 255, entry k = ``map40[k-1] - 1`` (or
    ``map13[map40[k-1] - 1] - 1``).
  """
  train40 = map40 - 1
  ids = train40 if map13 is None else map13[train40] - 1
  return np.concatenate([[meta_lib.IGNORE_INDEX], ids]).astype(np.uint8)


def nyu40_lut(map13: np.ndarray | None) -> np.ndarray:
  """Look-up table for PNG labels (NYU-40 training ids 0..39, 255 ignore) -> stored training id.

  Returns:
    int16 (256,): identity on 0..39 (or ``map13[id] - 1``), 255 -> 255, and -1 for ids that are invalid.
  """
  lut = np.full(256, -1, np.int16)
  lut[:40] = np.arange(40) if map13 is None else map13 - 1
  lut[meta_lib.IGNORE_INDEX] = meta_lib.IGNORE_INDEX
  return lut


def check_mat_layout(mat: epath.Path, depth_key: str = "depths") -> int:
  """Opens the .mat with h5py and checks the datasets' shapes; returns the number of frames.

  Args:
    mat: path of ``nyu_depth_v2_labeled.mat``.
    depth_key: the depth dataset the config reads (``depths`` or ``rawDepths``).

  Raises:
    ValueError: not HDF5 (e.g. a MATLAB v5 file), a dataset missing, or inconsistent shapes.
  """
  import h5py

  try:
    with h5py.File(mat, "r") as f:
      missing = [k for k in ("images", depth_key, "labels") if k not in f]
      if missing:
        raise ValueError(f"{mat}: datasets {missing} missing; found {sorted(f.keys())}")
      images, depths, labels = (f[k].shape for k in ("images", depth_key, "labels"))
  except OSError as e:
    raise ValueError(f"{mat}: cannot open as HDF5 (MATLAB v7.3): {e}") from e
  n = images[0] if len(images) == 4 else -1
  if len(images) != 4 or images[1] != 3 or depths != (n, *images[2:]) or labels != depths:
    raise ValueError(
      f"{mat}: expected images (N, 3, W, H), {depth_key} and labels (N, W, H); got images {images}, "
      f"{depth_key} {depths}, labels {labels}"
    )
  return n


def mat_example(
  f, index: int, lut: np.ndarray, meta: meta_lib.DatasetMeta, source: str, depth_key: str = "depths"
) -> dict:
  """Reads frame ``index`` (1-based) from an open h5py file and returns the stored example.

  ``depth_key`` is ``depths`` (in-painted) or ``rawDepths`` (raw, 0 = no measurement), metres.

  Raises:
    ValueError: raw label ids above 894, non-finite or negative depth (named with ``source``).
  """
  i = index - 1
  image = np.asarray(f["images"][i]).transpose(2, 1, 0)
  depth = np.asarray(f[depth_key][i], np.float32).T
  raw = np.asarray(f["labels"][i]).T
  if raw.max(initial=0) > NUM_RAW_CLASSES:
    bad = np.unique(raw[raw > NUM_RAW_CLASSES]).tolist()
    raise ValueError(f"{source}: raw label ids {bad[:10]} outside 0..{NUM_RAW_CLASSES}")
  return common.make_example(
    image=np.ascontiguousarray(image, dtype=np.uint8),
    depth=np.ascontiguousarray(depth),
    segmentation=lut[raw],
    intrinsics=common.scaled_intrinsics(meta, *image.shape[:2]),
    file_name=f"{index:06d}",
    num_classes=meta.num_classes,
    source=source,
  )


def png_example(
  png_dir: epath.Path, frame: str, lut: np.ndarray, meta: meta_lib.DatasetMeta
) -> dict:
  """Decodes one extracted PNG frame and returns the stored example.

  Raises:
    ValueError: undecodable PNG, wrong bit depth, sizes that disagree, or label ids other than 0..39 and
      255; the message names the file.
  """
  rgb_path = png_dir / f"{frame}.png"
  depth_path = png_dir / f"depth_gt_{frame}.png"
  label_path = png_dir / f"segm_gt_{frame}.png"
  image = common.read_png(rgb_path, "rgb")
  depth = common.read_png(depth_path, "uint16").astype(np.float32) / np.float32(PNG_DEPTH_SCALE)
  labels = lut[common.read_png(label_path, "uint8")]
  for path, array in ((depth_path, depth), (label_path, labels)):
    if array.shape != image.shape[:2]:
      raise ValueError(
        f"{path}: size (H, W) = {array.shape} does not match {rgb_path.name} {image.shape[:2]}"
      )
  if (labels < 0).any():
    raw = common.read_png(label_path, "uint8")
    bad = np.unique(raw[labels < 0]).tolist()
    raise ValueError(f"{label_path}: NYU-40 ids {bad[:10]} outside 0..39 (255 = ignore)")
  return common.make_example(
    image=image,
    depth=depth,
    segmentation=labels,
    intrinsics=common.scaled_intrinsics(meta, *image.shape[:2]),
    file_name=frame,
    num_classes=meta.num_classes,
    source=str(rgb_path),
  )
