"""Tests of semdepth_jax.data.transforms against hand-computed and independent (PIL) references."""

import math

import numpy as np
import pytest
from PIL import Image

from semdepth_jax.data import meta as meta_lib
from semdepth_jax.data import transforms as tr

H, W = 12, 16


def coord_example(h=H, w=W, intrinsics=(100.0, 120.0, 5.0, 4.0), zero_depth_at=()):
  """Example whose every entry is a function of the pixel coordinates (r, c).

  segmentation = 16 r + c (unique per pixel for h <= 15, w <= 16, never 255); depth = 1 + 16 r + c metres;
  image = (16 r, 16 c, 7). Pixels listed in ``zero_depth_at`` get invalid depth 0.
  """
  r, c = np.meshgrid(np.arange(h), np.arange(w), indexing="ij")
  seg = (16 * r + c).astype(np.uint8)[..., None]
  depth = (1.0 + 16 * r + c).astype(np.float32)
  for rc in zero_depth_at:
    depth[rc] = 0.0
  image = np.stack([16 * r, 16 * c, np.full_like(r, 7)], axis=-1).astype(np.uint8)
  return {
    "image": image,
    "depth": depth,
    "segmentation": seg,
    "has_depth": True,
    "has_segmentation": True,
    "intrinsics": np.asarray(intrinsics, np.float32),
    "file_name": b"x",
  }


def assert_aligned(ex, depth_factor=1.0):
  """Every labelled pixel's image/depth come from the pixel its label encodes; padding is empty."""
  seg = np.asarray(ex["segmentation"])
  seg = seg[..., 0] if seg.ndim == 3 else seg
  img = np.asarray(ex["image"])
  if img.dtype != np.uint8:
    img = np.rint(img * 255).astype(np.int64)
  labelled = seg != 255
  r, c = np.divmod(seg.astype(np.int64), 16)
  np.testing.assert_array_equal(img[..., 0][labelled], 16 * r[labelled])
  np.testing.assert_array_equal(img[..., 1][labelled], 16 * c[labelled])
  d = np.asarray(ex["depth"])
  valid = labelled & (d > 0)
  np.testing.assert_allclose(d[valid] * depth_factor, 1.0 + seg[valid], rtol=1e-6)
  np.testing.assert_array_equal(d[~labelled], 0.0)
  np.testing.assert_array_equal(img[~labelled], 0)


def column_of(ex, col):
  """Source column encoded by the labels of output column ``col``."""
  seg = np.asarray(ex["segmentation"])[..., 0]
  return np.unique(seg[:, col] % 16)


def row_of(ex, row):
  seg = np.asarray(ex["segmentation"])[..., 0]
  return np.unique(seg[row, :] // 16)


# ---------------------------------------------------------------------------------------------------------
# flips


def test_hflip_mirrors_all_entries_and_principal_point():
  ex = coord_example()
  out = tr.hflip(ex)
  np.testing.assert_array_equal(out["image"], ex["image"][:, ::-1])
  np.testing.assert_array_equal(out["depth"], ex["depth"][:, ::-1])
  np.testing.assert_array_equal(out["segmentation"], ex["segmentation"][:, ::-1])
  # cx = 5 -> W - 1 - 5 = 10; fx, fy, cy unchanged.
  np.testing.assert_allclose(out["intrinsics"], [100.0, 120.0, 10.0, 4.0])
  # The column that was at cx is now at the new cx.
  assert column_of(out, 10).tolist() == [5]
  assert_aligned(out)
  # Input untouched.
  np.testing.assert_array_equal(ex["segmentation"][0, :3, 0], [0, 1, 2])


def test_vflip_mirrors_rows_and_cy():
  ex = coord_example()
  out = tr.vflip(ex)
  np.testing.assert_array_equal(out["depth"], ex["depth"][::-1])
  np.testing.assert_allclose(out["intrinsics"], [100.0, 120.0, 5.0, 7.0])  # 12 - 1 - 4
  assert row_of(out, 7).tolist() == [4]
  assert_aligned(out)


def test_random_flip_uses_one_draw():
  ex = coord_example()
  for seed in range(6):
    flipped = np.random.default_rng(seed).random() < 0.5
    out = tr.random_flip(ex, np.random.default_rng(seed))
    expected = ex["depth"][:, ::-1] if flipped else ex["depth"]
    np.testing.assert_array_equal(out["depth"], expected)


# ---------------------------------------------------------------------------------------------------------
# crops


def test_crop_inside():
  ex = coord_example()
  out = tr.crop(ex, 3, 4, 5, 6)
  np.testing.assert_array_equal(out["depth"], ex["depth"][3:8, 4:10])
  np.testing.assert_array_equal(out["image"], ex["image"][3:8, 4:10])
  np.testing.assert_allclose(out["intrinsics"], [100.0, 120.0, 1.0, 1.0])  # cx 5 - 4, cy 4 - 3
  assert column_of(out, 1).tolist() == [5]
  assert row_of(out, 1).tolist() == [4]


def test_crop_pads_with_ignore_and_invalid_depth():
  ex = coord_example()
  out = tr.crop(ex, -2, -3, H + 4, W + 5)
  assert out["image"].shape == (H + 4, W + 5, 3)
  np.testing.assert_array_equal(out["depth"][2 : 2 + H, 3 : 3 + W], ex["depth"])
  pad = np.ones((H + 4, W + 5), bool)
  pad[2 : 2 + H, 3 : 3 + W] = False
  assert np.all(out["segmentation"][..., 0][pad] == 255)
  assert np.all(out["depth"][pad] == 0)
  assert np.all(out["image"][pad] == 0)
  np.testing.assert_allclose(out["intrinsics"], [100.0, 120.0, 8.0, 6.0])
  assert out["segmentation"].dtype == np.uint8 and out["depth"].dtype == np.float32


def test_center_crop_offsets():
  out = tr.center_crop(coord_example(), (8, 10))
  # top = (12 - 8) // 2 = 2, left = (16 - 10) // 2 = 3.
  assert out["segmentation"][0, 0, 0] == 16 * 2 + 3
  np.testing.assert_allclose(out["intrinsics"], [100.0, 120.0, 2.0, 2.0])


@pytest.mark.parametrize("size", [(5, 7), (12, 16), (15, 20)])
def test_random_crop_is_a_window_and_deterministic(size):
  ex = coord_example()
  offsets = set()
  for seed in range(20):
    out = tr.random_crop(ex, np.random.default_rng(seed), size)
    assert out["depth"].shape == size
    assert_aligned(out)
    again = tr.random_crop(ex, np.random.default_rng(seed), size)
    np.testing.assert_array_equal(out["segmentation"], again["segmentation"])
    # The source pixel (0, 0) or the first labelled pixel fixes the offset; the whole window agrees.
    seg = out["segmentation"][..., 0]
    ys, xs = np.nonzero(seg != 255)
    r0, c0 = divmod(int(seg[ys[0], xs[0]]), 16)
    top, left = r0 - ys[0], c0 - xs[0]
    np.testing.assert_array_equal(out["depth"], tr.crop(ex, top, left, *size)["depth"])
    np.testing.assert_allclose(out["intrinsics"][2:], [5.0 - left, 4.0 - top])
    offsets.add((top, left))
    if size[0] >= H:  # the whole image is inside the window
      assert (seg != 255).sum() == H * W
  if size == (H, W):
    assert offsets == {(0, 0)}
  else:
    assert len(offsets) > 1


# ---------------------------------------------------------------------------------------------------------
# resizing


def test_nearest_indices_hand_computed():
  row = np.arange(16)[None, :, None].repeat(2, axis=0)
  out = tr.resize_nearest(row, (2, 6))
  # floor((j + 0.5) * 16 / 6) for j = 0..5.
  np.testing.assert_array_equal(out[0, :, 0], [1, 4, 6, 9, 12, 14])
  up = tr.resize_nearest(row, (4, 32))
  np.testing.assert_array_equal(up[0, :, 0], np.repeat(np.arange(16), 2))


def test_bilinear_upsample_hand_computed():
  img = np.asarray([0.0, 10.0, 20.0, 30.0], np.float32)[None, :, None]
  out = tr.resize_image(img, (1, 8))
  # Output centres (j + 0.5) / 2 - 0.5 = -0.25, 0.25, ..., 3.25, clamped at the borders.
  np.testing.assert_allclose(out[0, :, 0], [0, 2.5, 7.5, 12.5, 17.5, 22.5, 27.5, 30], atol=1e-5)


def test_bilinear_downsample_hand_computed():
  img = np.asarray([0.0, 10.0, 20.0, 30.0], np.float32)[None, :, None]
  plain = tr.resize_image(img, (1, 2), antialias=False)
  np.testing.assert_allclose(plain[0, :, 0], [5.0, 25.0], atol=1e-5)
  # Antialiased: triangle of radius 2 around centre 0.5: weights 0.75, 0.75, 0.25 on pixels 0, 1, 2.
  aa = tr.resize_image(img, (1, 2))
  np.testing.assert_allclose(aa[0, 0, 0], (0.75 * 10 + 0.25 * 20) / 1.75, atol=1e-5)


@pytest.mark.parametrize("size", [(26, 34), (5, 7), (13, 40), (4, 17), (20, 9)])
def test_bilinear_matches_pil(size):
  rng = np.random.default_rng(0)
  img = rng.random((13, 17, 3)).astype(np.float32)
  out = tr.resize_image(img, size)
  for ch in range(3):
    pil = Image.fromarray(np.ascontiguousarray(img[..., ch])).resize(
      (size[1], size[0]), Image.Resampling.BILINEAR
    )
    np.testing.assert_allclose(out[..., ch], np.asarray(pil), atol=1e-5)


def test_bilinear_uint8_rounds_and_keeps_dtype():
  img = np.asarray([[0, 255]], np.uint8)[..., None]
  out = tr.resize_image(img, (1, 4))
  assert out.dtype == np.uint8
  # centres -0.25, 0.25, 0.75, 1.25 -> 0, 63.75, 191.25, 255.
  np.testing.assert_array_equal(out[0, :, 0], [0, 64, 191, 255])


@pytest.mark.parametrize("size", [(40, 50), (7, 9), (19, 33)])
def test_uint8_fast_path_within_one_of_float(size):
  rng = np.random.default_rng(2)
  img = rng.integers(0, 256, (19, 32, 3), dtype=np.uint8)
  fast = tr.resize_image(img, size).astype(np.int64)
  exact = np.rint(tr.resize_image(img.astype(np.float32), size)).astype(np.int64)
  assert np.abs(fast - exact).max() <= 1
  plain = tr.resize_image(img, size, antialias=False)
  assert plain.dtype == np.uint8 and plain.shape == size + (3,)


@pytest.mark.parametrize("size", [(5, 7), (24, 31), (12, 16), (3, 40)])
def test_resize_never_mixes_valid_and_invalid_depth(size):
  rng = np.random.default_rng(1)
  depth = rng.uniform(2.0, 5.0, (12, 16)).astype(np.float32)
  depth[rng.random((12, 16)) < 0.3] = 0.0
  ex = {"image": np.zeros((12, 16, 3), np.uint8), "depth": depth}
  out = tr.resize(ex, size)["depth"]
  assert out.shape == size
  # Only stored values appear: nothing strictly between 0 and the smallest valid depth.
  assert set(np.unique(out).tolist()) <= set(np.unique(depth).tolist())
  assert not np.any((out > 0) & (out < depth[depth > 0].min()))


def test_resize_keeps_alignment_and_updates_intrinsics():
  ex = coord_example(intrinsics=(100.0, 120.0, 7.5, 5.5))
  out = tr.resize(ex, (6, 8))
  # s = 1/2: fx 50, fy 60, cx = (7.5 + 0.5) / 2 - 0.5 = 3.5, cy = (5.5 + 0.5) / 2 - 0.5 = 2.5.
  np.testing.assert_allclose(out["intrinsics"], [50.0, 60.0, 3.5, 2.5])
  # Agrees with the meta helper's convention.
  m = meta_lib.get_meta("replica")
  assert m.intrinsics is not None
  ref = tr.resize(
    {"image": np.zeros((680, 1200, 3), np.uint8), "intrinsics": np.asarray(m.intrinsics)},
    (170, 300),
  )["intrinsics"]
  np.testing.assert_allclose(ref, m.intrinsics_at(170, 300), rtol=1e-6)
  # Labels and depth come from the same (nearest) source pixel.
  np.testing.assert_array_equal(out["depth"], 1.0 + out["segmentation"][..., 0])


def test_resize_to_cover():
  assert tr.cover_size((480, 640), (228, 304)) == (228, 304)
  assert tr.cover_size((680, 1200), (192, 320)) == (192, 339)  # 1200 * 192 / 680 = 338.8
  assert tr.cover_size((100, 100), (192, 320)) == (320, 320)
  out = tr.resize_to_cover(coord_example(), (24, 24))
  assert out["depth"].shape == (24, 32)


# ---------------------------------------------------------------------------------------------------------
# scale augmentation


def test_scale_divides_depth_and_scales_intrinsics():
  ex = coord_example(zero_depth_at=[(0, 0), (5, 7)])
  out = tr.scale(ex, 2.0)
  assert out["depth"].shape == (24, 32)
  # Nearest upsampling by 2: every source pixel becomes a 2x2 block; depth divided by s = 2.
  np.testing.assert_array_equal(out["depth"][::2, ::2], ex["depth"] / 2.0)
  np.testing.assert_array_equal(out["segmentation"][::2, ::2], ex["segmentation"])
  assert out["depth"][0, 0] == 0 and out["depth"][11, 15] == 0  # invalid stays invalid
  # fx 200, fy 240, cx = (5 + 0.5) * 2 - 0.5 = 10.5, cy = (4 + 0.5) * 2 - 0.5 = 8.5.
  np.testing.assert_allclose(out["intrinsics"], [200.0, 240.0, 10.5, 8.5])
  assert_aligned({**out, "image": tr.resize_nearest(ex["image"], (24, 32))}, depth_factor=2.0)


def test_random_scale_draws_s_uniformly():
  ex = coord_example()
  for seed in range(5):
    s = np.random.default_rng(seed).uniform(1.0, 1.5)
    out = tr.random_scale(ex, np.random.default_rng(seed), 1.0, 1.5)
    assert out["depth"].shape == (round(H * s), round(W * s))
    ratio = (1.0 + out["segmentation"][..., 0]) / out["depth"]
    np.testing.assert_allclose(ratio, s, rtol=1e-5)


def test_unknown_intrinsics_stay_zero():
  ex = coord_example(intrinsics=(0, 0, 0, 0))
  rng = np.random.default_rng(0)
  for out in (
    tr.hflip(ex),
    tr.vflip(ex),
    tr.crop(ex, -1, 2, 5, 5),
    tr.resize(ex, (5, 9)),
    tr.scale(ex, 1.3),
    tr.random_crop(ex, rng, (20, 20)),
  ):
    np.testing.assert_array_equal(out["intrinsics"], 0.0)


# ---------------------------------------------------------------------------------------------------------
# photometric / dtype


def test_to_float():
  out = tr.to_float(coord_example())
  assert out["image"].dtype == np.float32 and out["image"].max() <= 1.0
  np.testing.assert_allclose(out["image"][0, 0], [0, 0, 7 / 255], rtol=1e-6)
  assert out["segmentation"].shape == (H, W) and out["segmentation"].dtype == np.int32
  assert out["depth"].dtype == np.float32


def test_colour_multiplier_matches_independent_draw():
  ex = coord_example()
  out = tr.photometric_jitter(
    ex, np.random.default_rng(3), brightness=0, contrast=0, saturation=0, color=(0.8, 1.2)
  )
  m = np.random.default_rng(3).uniform(0.8, 1.2, size=3)
  np.testing.assert_allclose(out["image"], np.clip(ex["image"] / 255.0 * m, 0, 1), atol=1e-6)


def test_brightness_only():
  ex = coord_example()
  out = tr.photometric_jitter(
    ex, np.random.default_rng(4), brightness=0.2, contrast=0, saturation=0, color=None
  )
  b = np.random.default_rng(4).uniform(0.8, 1.2)
  np.testing.assert_allclose(out["image"], np.clip(ex["image"] / 255.0 * b, 0, 1), atol=1e-6)


def test_saturation_formula():
  ex = coord_example()
  x = ex["image"] / 255.0
  grey = 0.299 * x[..., 0] + 0.587 * x[..., 1] + 0.114 * x[..., 2]
  # g + t (x - g) with t drawn from U[0, 2] (saturation = 1).
  t = np.random.default_rng(5).uniform(0.0, 2.0)
  out = tr.photometric_jitter(
    ex, np.random.default_rng(5), brightness=0, contrast=0, saturation=1.0, color=None
  )
  ref = np.clip(grey[..., None] + t * (x - grey[..., None]), 0, 1)
  np.testing.assert_allclose(out["image"], ref, atol=1e-5)


def test_full_jitter_matches_sequential_reference():
  ex = coord_example()
  x = ex["image"] / 255.0
  ref_rng = np.random.default_rng(11)
  b = ref_rng.uniform(0.9, 1.1)
  c = ref_rng.uniform(0.7, 1.3)
  t = ref_rng.uniform(0.6, 1.4)
  m = ref_rng.uniform(0.8, 1.2, size=3)
  luma = np.asarray([0.299, 0.587, 0.114])
  y = x * b
  mean = np.mean(y @ luma)
  y = mean + c * (y - mean)
  grey = (y @ luma)[..., None]
  y = grey + t * (y - grey)
  y = np.clip(y * m, 0.0, 1.0)
  out = tr.photometric_jitter(
    ex, np.random.default_rng(11), brightness=0.1, contrast=0.3, saturation=0.4, color=(0.8, 1.2)
  )
  np.testing.assert_allclose(out["image"], y, atol=2e-6)


def test_jitter_touches_only_the_image():
  ex = coord_example()
  out = tr.photometric_jitter(ex, np.random.default_rng(0))
  for key in ("depth", "segmentation", "intrinsics"):
    np.testing.assert_array_equal(out[key], ex[key])
  assert out["image"].dtype == np.float32
  assert out["image"].min() >= 0.0 and out["image"].max() <= 1.0
  assert not np.allclose(out["image"], ex["image"] / 255.0)


# ---------------------------------------------------------------------------------------------------------
# composite preprocessing


@pytest.mark.parametrize("size", [(8, 10), (14, 20)])
def test_preprocess_train_geometry_is_aligned(size):
  augment = {"flip": True, "vflip": True, "resize": None}
  for seed in range(8):
    out = tr.preprocess_train(
      coord_example(), np.random.default_rng(seed), image_size=size, augment=augment
    )
    assert out["image"].shape == size + (3,) and out["image"].dtype == np.float32
    assert out["segmentation"].shape == size and out["segmentation"].dtype == np.int32
    assert_aligned(out)
    # The principal point still sits on source column 5 / row 4 (when inside the crop).
    cx, cy = out["intrinsics"][2:]
    if 0 <= cx < size[1] and 0 <= cy < size[0]:
      seg = out["segmentation"]
      col = seg[:, int(cx)][seg[:, int(cx)] != 255] % 16
      row = seg[int(cy), :][seg[int(cy), :] != 255] // 16
      assert set(col.tolist()) <= {5} and set(row.tolist()) <= {4}


def test_preprocess_train_with_scale_is_consistent():
  for seed in range(5):
    out = tr.preprocess_train(
      coord_example(),
      np.random.default_rng(seed),
      image_size=(10, 12),
      augment={"scale": (1.2, 1.6), "flip": True, "resize": None},
    )
    seg = out["segmentation"]
    ok = (seg != 255) & (out["depth"] > 0)
    ratio = (1.0 + seg[ok]) / out["depth"][ok]
    assert ratio.min() >= 1.2 and ratio.max() <= 1.6
    np.testing.assert_allclose(ratio, ratio[0], rtol=1e-5)


def test_preprocess_train_deterministic_and_eigen():
  a = tr.preprocess_train(
    coord_example(), np.random.default_rng(7), image_size=(8, 8), augment=tr.EIGEN_AUGMENT
  )
  b = tr.preprocess_train(
    coord_example(), np.random.default_rng(7), image_size=(8, 8), augment=tr.EIGEN_AUGMENT
  )
  for key in a:
    np.testing.assert_array_equal(a[key], b[key])


def test_check_augment_errors():
  with pytest.raises(ValueError, match="unknown augment key 'shear'"):
    tr.check_augment({"shear": 5})
  for bad in (-1.0, 200, "5", True):
    with pytest.raises(ValueError, match=r"augment\['rotate'\]"):
      tr.check_augment({"rotate": bad})
  assert tr.check_augment({"rotate": 5})["rotate"] == 5
  with pytest.raises(ValueError, match="scale"):
    tr.check_augment({"scale": (1.5, 1.0)})
  with pytest.raises(ValueError, match="crop"):
    tr.check_augment({"crop": "corner"})


def test_preprocess_eval_modes():
  ex = coord_example()
  rows16 = lambda rows, cols: 16 * np.asarray(rows)[:, None] + np.asarray(cols)[None, :]  # noqa: E731
  # center_crop 12x16 -> 8x10: top (12 - 8) // 2 = 2, left (16 - 10) // 2 = 3.
  out = tr.preprocess_eval(ex, image_size=(8, 10), mode="center_crop")
  np.testing.assert_array_equal(out["segmentation"], rows16(range(2, 10), range(3, 13)))
  # resize: nearest rows floor((i + 0.5) * 12 / 8), cols floor((j + 0.5) * 16 / 10).
  out = tr.preprocess_eval(ex, image_size=(8, 10), mode="resize")
  np.testing.assert_array_equal(
    out["segmentation"], rows16([0, 2, 3, 5, 6, 8, 9, 11], [0, 2, 4, 5, 7, 8, 10, 12, 13, 15])
  )
  # cover_crop: scale max(8/12, 10/16) = 2/3 -> 8 x ceil(10.67) = 8 x 11, then centre crop left 0:
  # cols floor((j + 0.5) * 16 / 11) for j = 0..9.
  out = tr.preprocess_eval(ex, image_size=(8, 10), mode="cover_crop")
  np.testing.assert_array_equal(
    out["segmentation"], rows16([0, 2, 3, 5, 6, 8, 9, 11], [0, 2, 3, 5, 6, 8, 9, 10, 12, 13])
  )
  assert out["image"].shape == (8, 10, 3) and out["image"].dtype == np.float32


def test_preprocess_eval_native_and_bad_mode():
  out = tr.preprocess_eval(coord_example())
  assert out["image"].shape == (H, W, 3)
  with pytest.raises(ValueError, match="eval mode"):
    tr.preprocess_eval(coord_example(), image_size=(4, 4), mode="tile")


# ---------------------------------------------------------------------------------------------------------
# in-plane rotation (Eigen et al. 2014)


def test_rotate_quarter_and_half_turns_are_exact_permutations():
  ex = coord_example(h=5, w=5, intrinsics=(100.0, 100.0, 1.0, 3.0))
  ccw = tr.rotate(ex, 90.0)  # counter-clockwise as displayed = np.rot90
  for key in ("image", "depth", "segmentation"):
    np.testing.assert_array_equal(ccw[key], np.rot90(ex[key], 1))
  # Pixel (row 3, col 1) moves to (row 5 - 1 - 1, col 3): cx' = cy = 3, cy' = W - 1 - cx = 3.
  np.testing.assert_allclose(ccw["intrinsics"], [100.0, 100.0, 3.0, 3.0], atol=1e-5)
  cw = tr.rotate(ex, -90.0)
  for key in ("image", "depth", "segmentation"):
    np.testing.assert_array_equal(cw[key], np.rot90(ex[key], -1))
  wide = coord_example(h=3, w=6)
  half = tr.rotate(wide, 180.0)
  for key in ("image", "depth", "segmentation"):
    np.testing.assert_array_equal(half[key], np.asarray(wide[key])[::-1, ::-1])


def test_rotate_nearest_hand_computed():
  # 3x3, 30 degrees: output offset (x', y') reads (x, y) = (c x' - s y', s x' + c y') about (1, 1),
  # c = 0.866, s = 0.5. Corners: (-1, -1) -> col 0.634, row -0.366 -> (0, 1); (1, -1) -> col 2.366,
  # row 0.634 -> (1, 2); (-1, 1) -> col -0.366, row 1.366 -> (1, 0); (1, 1) -> col 1.366, row 2.366 -> (2, 1).
  depth = np.arange(1.0, 10.0, dtype=np.float32).reshape(3, 3)
  got = tr.rotate({"depth": depth}, 30.0)["depth"]
  assert got.dtype == np.float32
  assert (got[0, 0], got[0, 2], got[2, 0], got[2, 2], got[1, 1]) == (2.0, 6.0, 4.0, 8.0, 5.0)
  # 5x5 at 45 degrees: corner (-2, -2) reads row 2 - 2 * 1.414 = -0.83 -> outside: invalid / ignored.
  ex = coord_example(h=5, w=5)
  out = tr.rotate(ex, 45.0)
  for r, c in ((0, 0), (0, 4), (4, 0), (4, 4)):
    assert out["depth"][r, c] == 0.0 and out["segmentation"][r, c, 0] == 255
  assert_aligned({k: out[k] for k in ("depth", "segmentation")} | {"image": _seg_image(out)})


def _seg_image(ex):
  """An image consistent with ``coord_example``'s labels (to reuse ``assert_aligned`` on nearest data)."""
  seg = np.asarray(ex["segmentation"])[..., 0].astype(np.int64)
  r, c = np.divmod(seg, 16)
  img = np.stack([16 * r, 16 * c, np.full_like(r, 7)], axis=-1)
  img[seg == 255] = 0
  return img.astype(np.uint8)


def test_rotate_bilinear_hand_computed():
  # 2x2 at 45 degrees, centre (0.5, 0.5): output (0, 0) reads col 0.5, row 0.5 - 0.7071 = -0.2071, i.e.
  # 0.7929 * (0.5 * 10 + 0.5 * 20) from row 0 plus 0.2071 * 0 from the (black) row above the image.
  img = np.asarray([[10.0, 20.0], [30.0, 40.0]], np.float32)[..., None]
  got = tr.rotate({"image": img}, 45.0)["image"]
  assert got.dtype == np.float32
  np.testing.assert_allclose(got[0, 0, 0], (1 - (math.sqrt(2) / 2 - 0.5)) * 15.0, rtol=1e-5)


@pytest.mark.parametrize("degrees", [150.0, -63.0])
def test_rotate_bilinear_matches_per_pixel_reference_far_outside(degrees):
  # Large angles put many sources several pixels outside the image (the sampler clips those indices onto
  # its zero border). Reference: a per-pixel loop, float64, taps outside the image read 0.
  rng = np.random.default_rng(3)
  H, W = 4, 17
  img = rng.uniform(0.0, 1.0, (H, W, 2)).astype(np.float32)
  got = tr.rotate({"image": img}, degrees)["image"]
  t = math.radians(degrees)
  yc, xc = (H - 1) / 2, (W - 1) / 2
  want = np.zeros((H, W, 2))
  far = 0
  for i in range(H):
    for j in range(W):
      r = yc + math.sin(t) * (j - xc) + math.cos(t) * (i - yc)
      c = xc + math.cos(t) * (j - xc) - math.sin(t) * (i - yc)
      far += r < -2 or r > H + 1 or c < -2 or c > W + 1
      r0, c0 = math.floor(r), math.floor(c)
      for rr, wr in ((r0, 1 - (r - r0)), (r0 + 1, r - r0)):
        for cc, wc in ((c0, 1 - (c - c0)), (c0 + 1, c - c0)):
          if 0 <= rr < H and 0 <= cc < W:
            want[i, j] += wr * wc * img[rr, cc]
  assert far > 0
  np.testing.assert_allclose(got, want, atol=1e-6)


@pytest.mark.parametrize("degrees", [3.7, -4.9, 30.0])
def test_rotate_matches_pil(degrees):
  # PIL rotates about the same centre (w / 2, h / 2 in continuous coordinates), counter-clockwise.
  rng = np.random.default_rng(0)
  labels = rng.integers(0, 250, (37, 53)).astype(np.uint8)
  ours = tr.rotate({"segmentation": labels}, degrees)["segmentation"]
  pil = Image.fromarray(labels).rotate(degrees, resample=Image.Resampling.NEAREST, fillcolor=255)
  np.testing.assert_array_equal(ours, np.asarray(pil))
  img = rng.integers(0, 256, (37, 53, 3)).astype(np.uint8)
  ours = tr.rotate({"image": img}, degrees)["image"].astype(np.int64)
  pil = np.asarray(Image.fromarray(img).rotate(degrees, resample=Image.Resampling.BILINEAR))
  # Where all four bilinear taps are inside the image PIL and we agree up to its fixed-point rounding.
  t = math.radians(degrees)
  yy, xx = np.meshgrid(np.arange(37) - 18.0, np.arange(53) - 26.0, indexing="ij")
  rows = 18.0 + math.sin(t) * xx + math.cos(t) * yy
  cols = 26.0 + math.cos(t) * xx - math.sin(t) * yy
  inside = (rows >= 0) & (rows <= 36) & (cols >= 0) & (cols <= 52)
  assert inside.mean() > 0.5
  assert np.abs(ours - pil.astype(np.int64))[inside].max() <= 1


def test_rotate_keeps_depth_values_and_alignment():
  ex = coord_example(zero_depth_at=((3, 4), (6, 7)))
  out = tr.rotate(ex, 4.0)
  assert_aligned({k: out[k] for k in ("depth", "segmentation")} | {"image": _seg_image(out)})
  valid = out["depth"] > 0
  assert set(out["depth"][valid].tolist()) <= set(np.asarray(ex["depth"]).ravel().tolist())
  assert tr.rotate(ex, 0.0)["depth"] is ex["depth"]
  # Unknown intrinsics stay zero.
  np.testing.assert_array_equal(
    tr.rotate({**ex, "intrinsics": np.zeros(4, np.float32)}, 3.0)["intrinsics"], 0.0
  )


def test_random_rotate_one_draw_and_preprocess_order():
  ex = coord_example()
  got = tr.random_rotate(ex, np.random.default_rng(3), 5.0)
  angle = np.random.default_rng(3).uniform(-5.0, 5.0)
  np.testing.assert_array_equal(got["segmentation"], tr.rotate(ex, angle)["segmentation"])
  with pytest.raises(ValueError, match="rotation range"):
    tr.random_rotate(ex, np.random.default_rng(0), -1.0)
  # In preprocess_train the rotation draw comes after the scale draw and before the crop draws.
  aug = {"scale": (1.2, 1.4), "rotate": 5.0, "resize": None}
  out = tr.preprocess_train(ex, np.random.default_rng(9), image_size=(10, 12), augment=aug)
  rng = np.random.default_rng(9)
  ref = tr.random_crop(
    tr.random_rotate(tr.random_scale(ex, rng, 1.2, 1.4), rng, 5.0), rng, (10, 12)
  )
  np.testing.assert_array_equal(out["segmentation"], ref["segmentation"][..., 0].astype(np.int32))
  np.testing.assert_array_equal(out["depth"], ref["depth"])
  # preprocess_train samples only the crop's pixels (rotate(..., window=)): bitwise the same as the chain.
  np.testing.assert_array_equal(out["image"], tr.to_float(ref)["image"])
  np.testing.assert_array_equal(out["intrinsics"], ref["intrinsics"])


@pytest.mark.parametrize(
  "window",
  [
    (0, 0, 12, 16),
    (1, 2, 10, 12),
    (2, 4, 9, 11),
    (-1, 3, 8, 8),
    (5, 10, 8, 8),
  ],  # last two: not inside
)
@pytest.mark.parametrize("degrees", [0.0, 3.5, -7.0, 90.0])
def test_rotate_window_equals_rotate_then_crop(window, degrees):
  ex = coord_example()
  ex["image"] = np.random.default_rng(0).integers(0, 256, (H, W, 3), dtype=np.uint8)
  got = tr.rotate(ex, degrees, window=window)
  ref = tr.crop(tr.rotate(ex, degrees), *window)
  for k in ("image", "depth", "segmentation", "intrinsics"):
    assert got[k].dtype == ref[k].dtype and got[k].shape == ref[k].shape, k
    np.testing.assert_array_equal(got[k], ref[k], err_msg=k)
