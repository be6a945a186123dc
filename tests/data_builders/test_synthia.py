"""Tests of ``synthia_rand_cityscapes``, ``synthia_al`` and the 16-bit PNG decoder (tiny fixtures, no TF).

The fixtures' 16-bit multi-channel PNGs are written by a small encoder in this file (PIL cannot write them),
with every PNG filter type, so the decoder is checked against arrays known beforehand; 8-bit PNGs written and
read by PIL give an independent second reference.
"""

import io
import re
import struct
import zipfile
import zlib

import numpy as np
import pytest
import tensorflow_datasets as tfds
from etils import epath
from PIL import Image

from data_builders import get_builder_class, png16
from data_builders.synthia_al import synthia_al_dataset_builder as alb
from data_builders.synthia_rand_cityscapes import synthia_rand_cityscapes_dataset_builder as srb
from semdepth_jax.data import meta

H, W = 5, 7


# --- A PNG encoder with chosen row filters (PNG spec §9), for fixtures PIL cannot write. ---------------


def _paeth(a, b, c):
  p = a + b - c
  pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
  if pa <= pb and pa <= pc:
    return a
  return b if pb <= pc else c


def _encode_png(array, filters=(0, 1, 2, 3, 4), interlace=0):
  """PNG bytes of a uint8/uint16 (H, W) or (H, W, C) array; row r uses filter filters[r % len]."""
  array = np.asarray(array)
  if array.ndim == 2:
    array = array[..., None]
  h, w, ch = array.shape
  depth = 16 if array.dtype == np.uint16 else 8
  colour = {1: 0, 2: 4, 3: 2, 4: 6}[ch]
  raw = array.astype(">u2").tobytes() if depth == 16 else array.astype(np.uint8).tobytes()
  bpp = ch * depth // 8
  x = np.frombuffer(raw, np.uint8).reshape(h, w * bpp).astype(int)
  out = bytearray()
  for r in range(h):
    t = filters[r % len(filters)]
    out.append(t)
    for i in range(w * bpp):
      a = x[r, i - bpp] if i >= bpp else 0
      b = x[r - 1, i] if r > 0 else 0
      c = x[r - 1, i - bpp] if r > 0 and i >= bpp else 0
      pred = (0, a, b, (a + b) // 2, _paeth(a, b, c))[t]
      out.append((x[r, i] - pred) % 256)

  def chunk(kind, body):
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

  ihdr = struct.pack(">IIBBBBB", w, h, depth, colour, 0, 0, interlace)
  return (
    b"\x89PNG\r\n\x1a\n"
    + chunk(b"IHDR", ihdr)
    + chunk(b"IDAT", zlib.compress(bytes(out)))
    + chunk(b"IEND", b"")
  )


def _write(path, data):
  path.parent.mkdir(parents=True, exist_ok=True)
  path.write_bytes(data)


def _png(path, array):
  path.parent.mkdir(parents=True, exist_ok=True)
  Image.fromarray(array).save(path)


def _build(cls, manual_dir, data_dir, config):
  builder = cls(data_dir=str(data_dir), config=config)
  builder.download_and_prepare(
    download_config=tfds.download.DownloadConfig(manual_dir=str(manual_dir)),
    file_format="array_record",
  )
  return builder


def _read(builder, split):
  source = builder.as_data_source(split)
  return {source[i]["file_name"].decode(): source[i] for i in range(len(source))}


# --- png16 ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("filters", [(0,), (1,), (2,), (3,), (4,), (0, 1, 2, 3, 4), (4, 2, 1)])
@pytest.mark.parametrize("channels", [1, 2, 3, 4])
def test_png16_round_trip_every_filter(filters, channels):
  rng = np.random.default_rng(channels)
  array = rng.integers(0, 65536, (6, 9, channels), dtype=np.uint16)
  array[:, :3] = array[:, :1]  # flat runs make the predictors' differences small and large.
  out = png16.decode_png(_encode_png(array, filters))
  assert out.dtype == np.uint16
  np.testing.assert_array_equal(out, array)


@pytest.mark.parametrize("shape", [(31, 40, 3), (12, 20, 4), (9, 13)])
def test_png16_matches_pil_on_8bit_files(shape):
  rng = np.random.default_rng(0)
  array = rng.integers(0, 256, shape, dtype=np.uint8)
  array[: shape[0] // 2] = np.sort(
    array[: shape[0] // 2], axis=1
  )  # smooth rows: PIL picks other filters.
  buf = io.BytesIO()
  Image.fromarray(array).save(buf, format="PNG")
  out = png16.decode_png(buf.getvalue())
  np.testing.assert_array_equal(out.reshape(array.shape), np.array(Image.open(buf)))


def test_png16_matches_pil_on_16bit_grey():
  array = np.random.default_rng(1).integers(0, 65536, (11, 14), dtype=np.uint16)
  buf = io.BytesIO()
  Image.fromarray(array).save(buf, format="PNG")
  np.testing.assert_array_equal(png16.decode_png(buf.getvalue())[..., 0], np.array(Image.open(buf)))


def test_png16_errors_name_the_file(tmp_path):
  good = _encode_png(np.ones((3, 4, 3), np.uint16))
  cases = {
    "sig.png": (b"GIF89a" + good[6:], "not a PNG file"),
    "crc.png": (good[:40] + bytes([good[40] ^ 1]) + good[41:], "corrupt or truncated PNG chunk"),
    "cut.png": (good[:45], "corrupt or truncated PNG chunk"),
    "lace.png": (_encode_png(np.ones((3, 4), np.uint8), interlace=1), "Adam7-interlaced"),
  }
  for name, (data, message) in cases.items():
    _write(tmp_path / name, data)
    with pytest.raises(ValueError, match=re.escape(f"{tmp_path / name}: {message}")):
      png16.read_png_channels(epath.Path(tmp_path / name))


# --- synthia_rand_cityscapes ------------------------------------------------------------------------


def _write_rand(root, stems, seed=0):
  """Writes RAND_CITYSCAPES frames; returns {stem: (rgb, depth_cm, class_ids)}."""
  rng = np.random.default_rng(seed)
  frames = {}
  for stem in stems:
    rgb = rng.integers(0, 256, (H, W, 3), dtype=np.uint8)
    cm = rng.integers(0, 65536, (H, W), dtype=np.uint16)
    cm[0, :4] = (0, 1, 8000, 65535)
    # The decoder must take cv2 channel 0 = the PNG's third channel; the other two hold other values here.
    depth = np.stack([cm // 3, cm // 2, cm], axis=-1)
    ids = rng.integers(0, 23, (H, W), dtype=np.uint16)
    ids[1] = np.arange(W) + 16  # 16..22
    ids[2] = np.arange(W)  # 0..6
    labels = np.stack([ids, rng.integers(0, 500, (H, W), dtype=np.uint16), ids * 0], axis=-1)
    _png(root / "RGB" / f"{stem}.png", rgb)
    _write(root / "Depth" / "Depth" / f"{stem}.png", _encode_png(depth))
    _write(root / "GT" / "LABELS" / f"{stem}.png", _encode_png(labels))
    frames[stem] = (rgb, cm, ids)
  return frames


# Hand table (SYNTHIA README names -> Cityscapes trainIds): 0 void 255, 1 sky 10, 2 building 2, 3 road 0,
# 4 sidewalk 1, 5 fence 4, 6 vegetation 8, 7 pole 5, 8 car 13, 9 traffic sign 7, 10 pedestrian 11,
# 11 bicycle 18, 12 motorcycle 17, 13 parking-slot 255, 14 road-work 255, 15 traffic light 6, 16 terrain 9,
# 17 rider 12, 18 truck 14, 19 bus 15, 20 train 16, 21 wall 3, 22 lanemarking 0 (road).
CITYSCAPES_OF = [255, 10, 2, 0, 1, 4, 8, 5, 13, 7, 11, 18, 17, 255, 255, 6, 9, 12, 14, 15, 16, 3, 0]


@pytest.mark.parametrize("label_set", ["cityscapes19", "synthia22"])
def test_rand_cityscapes_units_labels_and_split(tmp_path, label_set):
  frames = _write_rand(tmp_path / "RAND_CITYSCAPES", ["0000000", "0000001", "0000010", "0000019"])
  builder = _build(srb.Builder, tmp_path, tmp_path / "data", label_set)
  train, test = _read(builder, "train"), _read(builder, "test")
  assert sorted(test) == ["0000000", "0000010"] and sorted(train) == ["0000001", "0000019"]
  for stem, ex in {**train, **test}.items():
    rgb, cm, ids = frames[stem]
    np.testing.assert_array_equal(ex["image"], rgb)
    np.testing.assert_allclose(ex["depth"], cm.astype(np.float64) / 100.0, rtol=1e-6)
    assert ex["depth"][0, 0] == 0 and ex["depth"][0, 1] == pytest.approx(0.01)
    assert ex["depth"][0, 2] == pytest.approx(80.0) and ex["depth"][0, 3] == pytest.approx(655.35)
    seg = ex["segmentation"][..., 0]
    if label_set == "cityscapes19":
      np.testing.assert_array_equal(seg, np.array(CITYSCAPES_OF)[ids])
      assert list(seg[1]) == [9, 12, 14, 15, 16, 3, 0] and list(seg[2]) == [255, 10, 2, 0, 1, 4, 8]
    else:
      np.testing.assert_array_equal(seg, np.where(ids == 0, 255, ids.astype(int) - 1))
    assert bool(ex["has_depth"]) and bool(ex["has_segmentation"]) and not ex["intrinsics"].any()
  names = meta.get_meta(f"synthia_rand_cityscapes/{label_set}").class_names
  assert len(names) == (19 if label_set == "cityscapes19" else 22)


def test_rand_cityscapes_default_config_and_zip_archive(tmp_path):
  frames = _write_rand(tmp_path / "src" / "RAND_CITYSCAPES", ["0000003"])
  manual = tmp_path / "manual"
  manual.mkdir()
  with zipfile.ZipFile(manual / "RAND_CITYSCAPES.zip", "w") as z:
    for p in sorted((tmp_path / "src").rglob("*.png")):
      z.write(p, p.relative_to(tmp_path / "src"))
  builder = _build(srb.Builder, manual, tmp_path / "data", None)
  assert builder.builder_config.name == "cityscapes19"
  assert meta.get_meta("synthia_rand_cityscapes").name == "synthia_rand_cityscapes/cityscapes19"
  ex = _read(builder, "train")["0000003"]
  np.testing.assert_array_equal(
    ex["segmentation"][..., 0], np.array(CITYSCAPES_OF)[frames["0000003"][2]]
  )


def test_rand_cityscapes_missing_and_bad_files(tmp_path):
  root = tmp_path / "RAND_CITYSCAPES"
  _write_rand(root, ["0000000", "0000001"])
  (root / "GT" / "LABELS" / "0000001.png").unlink()
  with pytest.raises(
    FileNotFoundError, match=re.escape(str(root / "GT" / "LABELS" / "0000001.png"))
  ):
    _build(srb.Builder, tmp_path, tmp_path / "d1", None)
  _write_rand(root, ["0000001"])
  _png(root / "Depth" / "Depth" / "0000001.png", np.ones((H, W), np.uint8))
  with pytest.raises(ValueError, match=r"Depth/0000001\.png: expected a 16-bit depth PNG"):
    _build(srb.Builder, tmp_path, tmp_path / "d2", None)
  _write_rand(root, ["0000001"])
  ids = np.zeros((H, W, 3), np.uint16)
  ids[2, 3, 0] = 23
  _write(root / "GT" / "LABELS" / "0000001.png", _encode_png(ids))
  with pytest.raises(ValueError, match=r"LABELS/0000001\.png: class ids \[23\] outside 0\.\.22"):
    _build(srb.Builder, tmp_path, tmp_path / "d3", None)


# --- synthia_al -------------------------------------------------------------------------------------

# Depth pixels (R, G, B) and their hand-computed values, C = 2^24 - 1 = 16777215:
#   metric = min(5000 (R + 256 G + 65536 B) / C, 256);  r0 = 256 * 5000 (G + 256 B) / C.
DEPTH_PIXELS = [
  ((0, 0, 0), 0.0, 0.0),
  ((255, 0, 0), 5000 * 255 / 16777215, 0.0),  # R only: lost to R0's uint16 overflow.
  ((0, 1, 0), 5000 * 256 / 16777215, 256 * 5000 / 16777215),
  (
    (10, 20, 3),
    5000 * (10 + 20 * 256 + 3 * 65536) / 16777215,
    256 * 5000 * (20 + 3 * 256) / 16777215,
  ),
  ((0, 0, 255), 256.0, 256 * 5000 * (255 * 256) / 16777215),  # ~4980 m: saturated in metric only.
  ((7, 200, 13), 256.0, 256 * 5000 * (200 + 13 * 256) / 16777215),
]
# §9.1 table: raw id -> SSegDep-Net class; ids 21, 22 and above -> 0 Miscellaneous.
SSEGDEP_OF = [0, 3, 4, 2, 2, 5, 7, 13, 9, 6, 3, 1, 10, 11, 8, 8, 8, 8, 11, 11, 12, 0, 0]


def _write_al(root, split, seq, stems, seed=0):
  rng = np.random.default_rng(seed)
  frames = {}
  for stem in stems:
    rgb = rng.integers(0, 256, (H, W, 3), dtype=np.uint8)
    depth = rng.integers(0, 256, (H, W, 3), dtype=np.uint8)
    for i, (pixel, _, _) in enumerate(DEPTH_PIXELS):
      depth[0, i] = pixel
    raw = np.zeros((H, W), np.uint8)
    raw.flat[:25] = np.arange(25)  # ids 0..24
    raw[4, 6] = 255
    label = np.stack([raw, rng.integers(0, 256, (H, W), dtype=np.uint8), raw // 2], axis=-1)
    d = root / split / seq
    _png(d / "RGB" / f"{stem}.png", rgb)
    _png(d / "Depth" / f"{stem}.png", depth)
    _png(d / "SemSeg" / f"{stem}.png", label)
    frames[f"{seq}_{stem}"] = (rgb, depth, raw)
  return frames


@pytest.mark.parametrize("decoding", ["metric", "r0"])
def test_synthia_al_depth_decodings_and_labels(tmp_path, decoding):
  root = tmp_path / "al"
  frames = _write_al(root, "train", "seq_01", ["000000", "000001"])
  frames |= _write_al(root, "test", "seq_07", ["000000"], seed=3)
  builder = _build(alb.Builder, tmp_path, tmp_path / "data", decoding)
  train, test = _read(builder, "train"), _read(builder, "test")
  assert sorted(train) == ["seq_01_000000", "seq_01_000001"] and sorted(test) == ["seq_07_000000"]
  lut = np.array(SSEGDEP_OF + [0] * 233)
  for key, ex in {**train, **test}.items():
    rgb, depth, raw = frames[key]
    np.testing.assert_array_equal(ex["image"], rgb)
    for i, (_, metric, r0) in enumerate(DEPTH_PIXELS):
      want = metric if decoding == "metric" else r0
      assert ex["depth"][0, i] == pytest.approx(want, rel=1e-6, abs=1e-9), (i, decoding)
    r, g, b = (depth[..., i].astype(np.float64) for i in range(3))
    if decoding == "metric":
      want = np.minimum(5000 * (r + 256 * g + 65536 * b) / 16777215, 256)
    else:
      want = 256 * 5000 * (g + 256 * b) / 16777215
    np.testing.assert_allclose(ex["depth"], want, rtol=1e-6)
    seg = ex["segmentation"][..., 0]
    np.testing.assert_array_equal(seg, lut[raw])
    assert seg.flat[:25].tolist() == SSEGDEP_OF + [0, 0] and seg[4, 6] == 0
  assert meta.get_meta("synthia_al").name == "synthia_al/metric"
  assert meta.get_meta(f"synthia_al/{decoding}").class_names[12] == "Lanemark"


def test_synthia_al_r0_matches_the_numpy1_uint16_arithmetic():
  # R0 with NumPy 1.x casting: uint8 * 256 -> uint16; R * 256 * 256 wraps to 0 in uint16.
  rgb = np.array([[[9, 250, 77], [255, 255, 255]]], np.uint8)
  g, b, r = (rgb[..., i].astype(np.uint16) for i in (1, 2, 0))
  r0 = 5000 * (
    (g + b * np.uint16(256) + ((r * np.uint16(256)) * np.uint16(256))) / float(2**24 - 1)
  )
  np.testing.assert_allclose(alb.decode_depth(rgb, "r0", "x"), 256 * r0, rtol=1e-7)


def test_synthia_al_missing_and_bad_files(tmp_path):
  root = tmp_path / "al"
  _write_al(root, "train", "s", ["000000", "000001"])
  (root / "train" / "s" / "Depth" / "000001.png").unlink()
  with pytest.raises(FileNotFoundError, match=re.escape(str(root / "train/s/Depth/000001.png"))):
    _build(alb.Builder, tmp_path, tmp_path / "d1", None)
  _write_al(root, "train", "s", ["000001"])
  _png(root / "train" / "s" / "Depth" / "000001.png", np.ones((H, W), np.uint8))
  with pytest.raises(ValueError, match=r"Depth/000001\.png: expected an 8-bit RGB depth PNG"):
    _build(alb.Builder, tmp_path, tmp_path / "d2", None)
  bad = root / "train" / "s" / "SemSeg" / "000000.png"
  _write_al(root, "train", "s", ["000001"])
  bad.write_bytes(bad.read_bytes()[:60])
  with pytest.raises(ValueError, match=re.escape(str(bad))):
    _build(alb.Builder, tmp_path, tmp_path / "d3", None)


def test_registered():
  assert get_builder_class("synthia_al/r0") is alb.Builder
  assert get_builder_class("synthia_rand_cityscapes") is srb.Builder
  for cls, key in ((alb.Builder, "bengar2019temporal"), (srb.Builder, "ros2016synthia")):
    assert key in cls.get_metadata().citation
