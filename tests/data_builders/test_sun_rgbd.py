"""Tests of the ``sun_rgbd`` builder on tiny frames written into tmp_path in the official layout.

The image tree mimics ``SUNRGBD.zip`` (``SUNRGBD/<sensor>/<source>/<frame>/`` with ``image/``,
``depth_bfx/``, ``depth/``, ``intrinsics.txt``; real folder and file names). The toolbox files are
written in the formats of the real ones: ``SUNRGBDMeta.mat`` and ``allsplit.mat`` as MATLAB v5
(scipy.io.savemat: a 1 x N struct array and 1 x N cell arrays of the authors'
``/n/fs/sun3d/data/SUNRGBD/...`` paths), ``SUNRGBD2Dseg.mat`` as MATLAB v7.3 as h5py sees it
(512-byte user block, struct fields as object references into ``#refs#``, arrays column-major so a
label map shows as (W, H), strings as uint16 character codes).
"""

import re
import zipfile

import h5py
import numpy as np
import pytest
import tensorflow_datasets as tfds
from PIL import Image
from scipy import io as sio

from data_builders import get_builder_class
from data_builders.sun_rgbd import sun_rgbd_dataset_builder as sb
from semdepth_jax.data import meta

PREFIX = "/n/fs/sun3d/data/SUNRGBD/"
KEYS = {
  "image",
  "depth",
  "segmentation",
  "has_depth",
  "has_segmentation",
  "intrinsics",
  "file_name",
}
# (folder below SUNRGBD/, image name, depth name, (H, W), split); sizes differ as the sensors' do.
FRAMES = [
  ("kv2/kinect2data/000002_2014-05-26_14-23-37_260595134347_rgbf000103-resize", "0000103.jpg",
   "0000103.png", (10, 14), "test"),
  ("kv1/NYUdata/NYU0001", "NYU0001.jpg", "NYU0001.png", (9, 12), "train"),
  ("kv1/b3dodata/img_0063", "img_0063.jpg", "img_0063_abs.png", (8, 12), "test"),
  ("realsense/lg/2014_10_24-14_49_29-1311000073", "0000050.jpg", "0000050.png", (9, 13), "train"),
  ("xtion/sun3ddata/mit_76_studyroom/76-1studyroom2/0002111-000070763319",
   "0002111-000070763319.jpg", "0002111-000070763319.png", (8, 11), "train"),
]  # fmt: skip
# The toolbox's seg37list spellings.
SEG37 = [
  "wall", "floor", "cabinet", "bed", "chair", "sofa", "table", "door", "window", "bookshelf",
  "picture", "counter", "blinds", "desk", "shelves", "curtain", "dresser", "pillow", "mirror",
  "floor_mat", "clothes", "ceiling", "books", "fridge", "tv", "paper", "towel", "shower_curtain",
  "box", "whiteboard", "person", "night_stand", "toilet", "sink", "lamp", "bathtub", "bag",
]  # fmt: skip

# Depth PNG codes v and their metres by hand: rotate right by 3 bits, / 1000, clamp at 8.
#   8 = 0b1000 -> 1 mm; 20000 = 2500 << 3 -> 2.5 m; 40000 = 5000 << 3 -> 5 m;
#   64000 = 8000 << 3 -> 8 m; 20003 -> 2500 | 3 << 13 = 27076 mm -> 8 m (clamped);
#   1 -> 1 << 13 = 8192 mm -> 8 m (clamped).
_HAND_DEPTH = {0: 0.0, 8: 0.001, 20000: 2.5, 40000: 5.0, 64000: 8.0, 20003: 8.0, 1: 8.0}


def _intrinsics(i):
  return (520.0 + i, 521.5 + i, 6.25 + i, 4.5 - i / 4)


def _write_tree(root, frames=FRAMES, seed=0):
  """Writes SUNRGBD/...; returns {folder: (jpg_path, bfx_code, raw_code, labels_0_37)}."""
  rng = np.random.default_rng(seed)
  out = {}
  for i, (folder, image, depth, (h, w), _) in enumerate(frames):
    base = root / "SUNRGBD" / folder
    for sub in ("image", "depth_bfx", "depth", "annotation2Dfinal"):
      (base / sub).mkdir(parents=True, exist_ok=True)
    Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)).save(base / "image" / image)
    bfx = rng.integers(0, 65536, (h, w), dtype=np.uint16)
    bfx[0, : len(_HAND_DEPTH)] = list(_HAND_DEPTH)
    raw = np.where(rng.random((h, w)) < 0.3, 0, bfx).astype(np.uint16)
    raw[1, :3] = (8, 16, 24)  # 1, 2, 3 mm: differs from depth_bfx.
    Image.fromarray(bfx).save(base / "depth_bfx" / depth)
    Image.fromarray(raw).save(base / "depth" / depth)
    fx, fy, cx, cy = _intrinsics(i)
    (base / "intrinsics.txt").write_text(f"{fx} 0 {cx}\n0 {fy} {cy}\n0 0 1\n")
    (base / "scene.txt").write_text("bedroom")
    (base / "annotation2Dfinal" / "index.json").write_text("{}")
    labels = rng.integers(0, 38, (h, w))
    labels[0, :4] = (0, 1, 37, 24)
    out[folder] = (base / "image" / image, bfx, raw, labels)
  return out


def _write_toolbox(
  root, tree, frames=FRAMES, seg37=SEG37, train=None, test=None, label_override=None
):
  """Writes SUNRGBDtoolbox/{Metadata,traintestSUNRGBD}; frame i is SUNRGBDMeta(i + 1)."""
  meta_dir, split_dir = root / "SUNRGBDtoolbox/Metadata", root / "SUNRGBDtoolbox/traintestSUNRGBD"
  meta_dir.mkdir(parents=True)
  split_dir.mkdir(parents=True)
  fields = [
    "sequenceName",
    "rgbpath",
    "depthpath",
    "rgbname",
    "depthname",
    "K",
    "sensorType",
    "valid",
  ]
  entries = np.zeros((1, len(frames)), dtype=[(f, "O") for f in fields])
  for i, (folder, image, depth, _, _) in enumerate(frames):
    prefix = "/" + PREFIX if i == 0 else PREFIX  # the real files have some doubled slashes.
    fx, fy, cx, cy = _intrinsics(i)
    entries[0, i] = (
      "SUNRGBD/" + folder, f"{prefix}{folder}/image/{image}", f"{prefix}{folder}/depth/{depth}",
      image, depth, np.array([[fx, 0, cx], [0, fy, cy], [0, 0, 1]]), folder.split("/")[0], 1,
    )  # fmt: skip
  sio.savemat(meta_dir / "SUNRGBDMeta.mat", {"SUNRGBDMeta": entries})
  train = [f for f, *_, s in frames if s == "train"] if train is None else train
  test = [f for f, *_, s in frames if s == "test"] if test is None else test
  sio.savemat(
    split_dir / "allsplit.mat",
    {
      "alltrain": np.array([PREFIX + f + "/" for f in train], dtype=object).reshape(1, -1),
      "alltest": np.array([PREFIX + f for f in test], dtype=object).reshape(1, -1),
      "trainvalsplit": {"train": np.array([PREFIX + f for f in train[:1]], dtype=object)},
    },
  )
  with h5py.File(meta_dir / "SUNRGBD2Dseg.mat", "w", userblock_size=512) as f:
    refs_group = f.create_group("#refs#")
    refs = []
    for i, (folder, *_rest) in enumerate(frames):
      labels = tree[folder][3].astype(np.uint16)
      if label_override is not None:
        labels = label_override(i, labels)
      refs.append(refs_group.create_dataset(f"label{i}", data=labels.T).ref)  # (W, H) in h5py.
    group = f.create_group("SUNRGBD2Dseg")
    group.create_dataset("seglabel", data=np.array(refs, dtype=h5py.ref_dtype).reshape(-1, 1))
    names = [
      refs_group.create_dataset(
        f"name{i}", data=np.array([ord(c) for c in n], np.uint16)[:, None]
      ).ref
      for i, n in enumerate(seg37)
    ]
    f.create_dataset("seg37list", data=np.array(names, dtype=h5py.ref_dtype).reshape(1, -1))
  (meta_dir / "seg37list.mat").write_bytes(b"")  # present in the toolbox, not read.


def _zip(folder, archive):
  with zipfile.ZipFile(archive, "w") as z:
    for path in sorted(folder.rglob("*")):
      if path.is_file():
        z.write(path, path.relative_to(folder.parent).as_posix())


def _build(manual_dir, data_dir, config="default"):
  builder = sb.Builder(data_dir=str(data_dir), config=config)
  builder.download_and_prepare(
    download_config=tfds.download.DownloadConfig(manual_dir=str(manual_dir)),
    file_format="array_record",
  )
  return builder


def _read_split(builder, split):
  source = builder.as_data_source(split)
  return {source[i]["file_name"].decode(): source[i] for i in range(len(source))}


def _expected_depth(code):
  """Independent reference: rotation written with Python ints, then / 1000 and the 8 m clamp."""
  mm = np.vectorize(lambda v: ((int(v) >> 3) | (int(v) << 13)) & 0xFFFF)(code)
  return np.minimum(mm / 1000.0, 8.0)


def _expected_labels(labels):
  return np.where(labels == 0, 255, labels - 1)


def _dataset(tmp_path, **toolbox):
  tree = _write_tree(tmp_path / "m")
  _write_toolbox(tmp_path / "m", tree, **toolbox)
  return tree


@pytest.fixture(scope="module")
def built(tmp_path_factory):
  """Default config from extracted folders; raw_depth config from the two zip archives."""
  tmp = tmp_path_factory.mktemp("sun_rgbd")
  tree = _dataset(tmp)
  (tmp / "zips").mkdir()
  _zip(tmp / "m/SUNRGBD", tmp / "zips/SUNRGBD.zip")
  _zip(tmp / "m/SUNRGBDtoolbox", tmp / "zips/SUNRGBDtoolbox.zip")
  return {
    "tree": tree,
    "tmp": tmp,
    "folders": _build(tmp / "m", tmp / "data_folders"),
    "zips": _build(tmp / "zips", tmp / "data_zips", "raw_depth"),
  }


def test_registered_name_configs_and_meta():
  assert sb.Builder.name == "sun_rgbd"
  assert get_builder_class("sun_rgbd/raw_depth") is sb.Builder
  assert [c.name for c in sb.Builder.BUILDER_CONFIGS] == ["default", "raw_depth"]
  m = meta.get_meta("sun_rgbd/raw_depth")
  assert m.name == "sun_rgbd" and m.num_classes == 37
  assert m.class_names == meta.NYU40_CLASS_NAMES[:37]
  assert m.class_names[-1] == "bag" and m.splits == ("train", "test")
  assert m.class_colors == meta.get_meta("nyu_depth_v2_labeled").class_colors[:37]


def test_metadata_files_are_read():
  metadata = sb.Builder.get_metadata()
  assert "song2015sunrgbd" in metadata.citation
  assert "ml.task.semantic-segmentation" in metadata.tags
  assert "allsplit.mat" in sb.Builder.MANUAL_DOWNLOAD_INSTRUCTIONS


def test_bit_rotation_on_hand_made_values():
  code = np.array([0x0000, 0x0001, 0x0003, 0x0008, 0x1F40, 20003, 0xFFF8, 0xFFFF], np.uint16)
  np.testing.assert_array_equal(
    sb.depth_millimetres(code), [0, 0x2000, 0x6000, 1, 1000, 27076, 0x1FFF, 0xFFFF]
  )
  depth = sb.decode_depth(np.array([list(_HAND_DEPTH)], np.uint16))
  assert depth.dtype == np.float32
  np.testing.assert_allclose(depth[0], list(_HAND_DEPTH.values()), rtol=1e-6)


@pytest.mark.parametrize(
  "path, folder",
  [
    ("/n/fs/sun3d/data/SUNRGBD/kv1/NYUdata/NYU0001", "kv1/NYUdata/NYU0001"),
    ("//n/fs/sun3d/data/SUNRGBD/kv1/b3dodata/img_0063/", "kv1/b3dodata/img_0063"),
    ("/n/fs/sun3d/data/SUNRGBD/kv2/kinect2data/000385-resize//image/0000087.jpg",
     "kv2/kinect2data/000385-resize/image/0000087.jpg"),
    ("SUNRGBD/xtion/sun3ddata/a/b", "xtion/sun3ddata/a/b"),
  ],
)  # fmt: skip
def test_frame_folder_drops_the_authors_prefix(path, folder):
  assert sb.frame_folder(path) == folder


@pytest.mark.parametrize(
  "text",
  [
    "529.5 0 365\n0 530.5 265\n0 0 1\n",
    "529.5 0 365 0 530.5 265 0 0 1",
    "529.5\t0\t365\n0\t530.5\t265\n0\t0\t1",
  ],
)
def test_intrinsics_file_is_read_row_by_row(tmp_path, text):
  path = tmp_path / "intrinsics.txt"
  path.write_text(text)
  assert sb.read_intrinsics(path) == (529.5, 530.5, 365.0, 265.0)


@pytest.mark.parametrize("kind", ["folders", "zips"])
def test_build_reads_back(built, kind):
  builder = built[kind]
  train, test = _read_split(builder, "train"), _read_split(builder, "test")
  assert sorted(train) == sorted(f for f, *_, s in FRAMES if s == "train")
  assert sorted(test) == sorted(f for f, *_, s in FRAMES if s == "test")
  for i, (folder, _, _, (h, w), _) in enumerate(FRAMES):
    ex = {**train, **test}[folder]
    jpg, bfx, raw, labels = built["tree"][folder]
    assert set(ex) == KEYS
    with Image.open(jpg) as img:  # JPEG is lossy: compare with a plain PIL decode of the file.
      np.testing.assert_array_equal(ex["image"], np.asarray(img.convert("RGB")))
    assert ex["depth"].shape == (h, w) and ex["depth"].dtype == np.float32
    code = bfx if kind == "folders" else raw  # zips were built with config raw_depth.
    np.testing.assert_allclose(ex["depth"], _expected_depth(code), rtol=1e-6)
    if kind == "folders":
      np.testing.assert_allclose(
        ex["depth"][0, : len(_HAND_DEPTH)], list(_HAND_DEPTH.values()), rtol=1e-6
      )
    else:
      np.testing.assert_allclose(ex["depth"][1, :3], [0.001, 0.002, 0.003], rtol=1e-6)
    np.testing.assert_array_equal(ex["segmentation"][..., 0], _expected_labels(labels))
    np.testing.assert_array_equal(ex["segmentation"][0, :4, 0], [255, 0, 36, 23])
    np.testing.assert_allclose(ex["intrinsics"], _intrinsics(i), rtol=1e-6)
    assert bool(ex["has_depth"]) and bool(ex["has_segmentation"])


def test_zip_build_extracts_only_the_hdf5_label_file(built):
  names = {p.name for p in (built["tmp"] / "data_zips").rglob("*") if p.is_file()}
  assert "SUNRGBD2Dseg.mat" in names
  assert not names & {"SUNRGBDMeta.mat", "allsplit.mat", "NYU0001.jpg", "NYU0001.png"}


def test_missing_archive_is_named(tmp_path):
  _dataset(tmp_path)
  (tmp_path / "only_data").mkdir()
  _zip(tmp_path / "m/SUNRGBD", tmp_path / "only_data/SUNRGBD.zip")
  with pytest.raises(FileNotFoundError) as info:
    _build(tmp_path / "only_data", tmp_path / "data")
  msg = str(info.value)
  assert "1 required input(s) missing" in msg
  assert "SUNRGBDtoolbox.zip (or folder SUNRGBDtoolbox/)" in msg
  assert "SUNRGBD.zip (or" not in msg


def test_missing_toolbox_and_frame_files_are_listed(tmp_path):
  _dataset(tmp_path)
  split = tmp_path / "m/SUNRGBDtoolbox/traintestSUNRGBD/allsplit.mat"
  split.unlink()
  with pytest.raises(FileNotFoundError, match=re.escape(str(split))):
    _build(tmp_path / "m", tmp_path / "data")
  _write_toolbox(tmp_path / "m2", _write_tree(tmp_path / "m2"))
  gone = [
    tmp_path / "m2/SUNRGBD/kv1/NYUdata/NYU0001/depth_bfx/NYU0001.png",
    tmp_path / "m2/SUNRGBD/kv1/b3dodata/img_0063/intrinsics.txt",
  ]
  for path in gone:
    path.unlink()
  with pytest.raises(FileNotFoundError) as info:
    _build(tmp_path / "m2", tmp_path / "data2")
  msg = str(info.value)
  assert "2 required file(s) missing" in msg
  for path in gone:
    assert str(path) in msg


def test_corrupt_depth_png_names_the_file(tmp_path):
  _dataset(tmp_path)
  bad = tmp_path / "m/SUNRGBD/realsense/lg/2014_10_24-14_49_29-1311000073/depth_bfx/0000050.png"
  bad.write_bytes(bad.read_bytes()[:40])
  with pytest.raises(ValueError, match=re.escape(f"{bad}: cannot decode PNG")):
    _build(tmp_path / "m", tmp_path / "data")


def test_bad_intrinsics_name_the_file(tmp_path):
  _dataset(tmp_path)
  bad = tmp_path / "m/SUNRGBD/kv1/NYUdata/NYU0001/intrinsics.txt"
  bad.write_text("518.8 0 284.6\n0 519.5 208.7\n")
  with pytest.raises(ValueError, match=re.escape(f"{bad}: intrinsics must be 9 finite numbers")):
    _build(tmp_path / "m", tmp_path / "data")


def test_class_names_in_other_order_raise(tmp_path):
  names = list(SEG37)
  names[23], names[24] = names[24], names[23]
  _dataset(tmp_path, seg37=names)
  with pytest.raises(ValueError, match=r"seg37list .* 24: 'television' != 'refrigerator'"):
    _build(tmp_path / "m", tmp_path / "data")


def test_frame_in_no_split_is_reported(tmp_path):
  folders = [f for f, *_ in FRAMES]
  _dataset(tmp_path, train=folders[1:2], test=folders[2:3])
  with pytest.raises(
    ValueError, match=r"allsplit\.mat: 3 SUNRGBDMeta frame\(s\) in neither alltrain nor alltest"
  ):
    _build(tmp_path / "m", tmp_path / "data")


def test_label_id_above_37_names_the_label_map(tmp_path):
  def poison(i, labels):
    if i == 3:
      labels[2, 2] = 38
    return labels

  _dataset(tmp_path, label_override=poison)
  with pytest.raises(
    ValueError,
    match=r"SUNRGBD2Dseg\.mat\[SUNRGBD2Dseg\(4\)\.seglabel\]: label ids \[38\] outside 0\.\.37",
  ):
    _build(tmp_path / "m", tmp_path / "data")
