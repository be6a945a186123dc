"""Numpy transforms on single examples, shared by the training and evaluation pipelines.

Every function takes an *example dict* and returns a new dict (the input is never modified; keys a
transform does not know are passed through unchanged). Keys:

* ``image``: (H, W, 3) uint8 in [0, 255] or float32 in [0, 1].
* ``depth``: (H, W) float32 metres; ``0`` = invalid / no measurement.
* ``segmentation``: (H, W) or (H, W, 1) integer training ids; ``IGNORE_INDEX`` (255) = ignore.
* ``intrinsics``: (4,) float32 pinhole ``(fx, fy, cx, cy)`` in pixels of this image, or all zeros when
  unknown. Every geometric transform updates known intrinsics consistently and leaves unknown (all-zero)
  intrinsics at zero.
* anything else (``has_depth``, ``has_segmentation``, ``file_name``, ...): passed through.

Pixel-coordinate convention: pixel ``i`` covers ``[i, i + 1)`` and has its centre at ``i + 0.5`` in
continuous coordinates, i.e. integer pixel indices are the centres ("half-pixel centres", as in
``tf.image.resize``, PIL and OpenCV). Under a resize from ``n`` to ``m`` pixels (factor ``s = m / n``)
a pixel index maps as ``x' = (x + 0.5) * s - 0.5``, so ``fx' = s * fx`` and ``cx' = (cx + 0.5) * s - 0.5``
(the same formula as ``DatasetMeta.intrinsics_at``).

Interpolation: RGB is resized with a bilinear (triangle) filter, labels and depth with nearest neighbour.
Depth is never interpolated: nearest neighbour copies stored values, so a resized depth map only contains
values of the input (no value between an invalid 0 and a valid neighbour can appear).

Augmentation follows Eigen et al. 2014 ("Depth map prediction from a single image using a multi-scale deep
network", §3.3; model_spec §3.3): random scaling ``s`` with depth divided by ``s``, in-plane rotation by
``r`` in ``[-5, 5]`` degrees (``rotate``; nearest neighbour for labels and depth), random crops, horizontal
flips and a global colour multiplier in ``[0.8, 1.2]^3``; brightness / contrast / saturation jitter as
commonly added on top.

All random transforms take a ``np.random.Generator``; given the generator's state they are deterministic.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np

from semdepth_jax import resize as resize_lib
from semdepth_jax.data.meta import IGNORE_INDEX

Example = dict[str, Any]

# Rec. 601 luma weights used for the grey level in contrast/saturation jitter.
_LUMA = np.asarray([0.299, 0.587, 0.114], np.float32)

DEFAULT_JITTER = {"brightness": 0.2, "contrast": 0.2, "saturation": 0.2, "color": (0.8, 1.2)}
"""Photometric jitter strengths used when ``augment['jitter']`` is ``True`` (see ``photometric_jitter``)."""

DEFAULT_AUGMENT: dict[str, Any] = {
  "resize": "cover",
  "scale": None,
  "rotate": None,
  "flip": False,
  "vflip": False,
  "jitter": False,
  "crop": "random",
}
"""Training preprocessing without augmentation: resize to cover the crop, then a random crop.

Keys (see ``preprocess_train``): ``resize`` (``"cover"``, ``None`` or ``(height, width)``), ``scale``
(``None`` or ``(s_min, s_max)``), ``rotate`` (``None`` / 0 or the maximal in-plane rotation in degrees,
``r ~ U[-rotate, rotate]``), ``flip`` (horizontal, p = 0.5), ``vflip`` (vertical, p = 0.5), ``jitter``
(``False``, ``True`` for ``DEFAULT_JITTER``, or a dict of ``photometric_jitter`` keyword arguments), ``crop``
(``"random"`` or ``"center"``).
"""

EIGEN_AUGMENT: dict[str, Any] = {
  **DEFAULT_AUGMENT,
  "scale": (1.0, 1.5),
  "rotate": 5.0,
  "flip": True,
  "jitter": True,
}
"""Eigen et al. 2014 §3.3 augmentation (scale s in [1, 1.5] with depth / s, in-plane rotation in [-5, 5]
degrees, random crop, horizontal flip, colour multiplier in [0.8, 1.2]^3, plus brightness/contrast/saturation
jitter)."""


# ----------------------------------------------------------------------------------------------------------
# helpers


def _hw(example: Mapping[str, Any]) -> tuple[int, int]:
  """(H, W) of the example, taken from the first of image / depth / segmentation present."""
  for key in ("image", "depth", "segmentation"):
    if key in example:
      shape = np.shape(example[key])
      return int(shape[0]), int(shape[1])
  raise KeyError(f"example has none of image/depth/segmentation; keys: {sorted(example)}")


def _check_size(size, name: str) -> tuple[int, int]:
  try:
    h, w = (int(v) for v in size)
  except (TypeError, ValueError):
    raise ValueError(f"{name} must be (height, width), got {size!r}") from None
  if h <= 0 or w <= 0:
    raise ValueError(f"{name} must be positive, got {size!r}")
  return h, w


def _known(intrinsics) -> bool:
  return intrinsics is not None and bool(np.any(np.asarray(intrinsics) != 0))


def _update_intrinsics(example: Example, fn) -> None:
  """Applies ``fn(fx, fy, cx, cy) -> (fx, fy, cx, cy)`` to known intrinsics in place of the new dict."""
  k = example.get("intrinsics")
  if _known(k):
    example["intrinsics"] = np.asarray(fn(*np.asarray(k, np.float64)), np.float32)


def _linear_taps(in_size: int, out_size: int, antialias: bool) -> tuple[np.ndarray, np.ndarray]:
  """Source indices and weights, both (out_size, K), of a 1-D triangle-filter resize.

  The output pixel ``i`` is centred at ``c_i = (i + 0.5) * in / out - 0.5`` in input pixels. Weights are
  ``max(0, 1 - |j - c_i| / r)`` over input pixels ``j`` inside the image, renormalised to sum to one, with
  radius ``r = 1`` (plain bilinear; at the borders this equals clamping ``c_i`` into ``[0, in - 1]``) or, when
  downscaling with ``antialias``, ``r = in / out`` (the triangle widened by the scale factor, as in PIL).
  """
  ratio = in_size / out_size
  radius = ratio if (antialias and ratio > 1.0) else 1.0
  centres = (np.arange(out_size, dtype=np.float64) + 0.5) * ratio - 0.5
  # Taps with non-zero weight lie in the open interval (c - r, c + r): at most 2 * ceil(r) of them.
  taps = 2 * math.ceil(radius)
  first = np.floor(centres - radius).astype(np.int64) + 1
  idx = first[:, None] + np.arange(taps)[None, :]
  w = np.maximum(0.0, 1.0 - np.abs(idx - centres[:, None]) / radius)
  w[(idx < 0) | (idx >= in_size)] = 0.0
  w /= w.sum(axis=1, keepdims=True)
  return np.clip(idx, 0, in_size - 1), w.astype(np.float32)


def _resize_axis_linear(x: np.ndarray, out_size: int, axis: int, antialias: bool) -> np.ndarray:
  """Triangle-filter resize of float32 ``x`` along ``axis`` (0 or 1)."""
  if x.shape[axis] == out_size:
    return x
  idx, w = _linear_taps(x.shape[axis], out_size, antialias)
  xm = np.moveaxis(x, axis, 0)
  out = np.zeros((out_size,) + xm.shape[1:], np.float32)
  wshape = (out_size,) + (1,) * (xm.ndim - 1)
  for k in range(idx.shape[1]):
    wk = w[:, k]
    if not np.any(wk):
      continue
    out += wk.reshape(wshape) * xm[idx[:, k]]
  return np.moveaxis(out, 0, axis)


# ----------------------------------------------------------------------------------------------------------
# image resizing


def resize_image(image: np.ndarray, size: tuple[int, int], *, antialias: bool = True) -> np.ndarray:
  """Resizes an RGB image with a bilinear (triangle) filter and half-pixel centres.

  Upscaling is exact bilinear interpolation (``tf.image.resize(method='bilinear')``, OpenCV
  ``INTER_LINEAR``). Downscaling with ``antialias=True`` widens the triangle by the scale factor (PIL
  ``BILINEAR``, ``tf.image.resize(..., antialias=True)``), which avoids aliasing for large factors.

  Args:
    image: (H, W, C) uint8 or float array.
    size: output (height, width) in pixels.
    antialias: widen the filter when downscaling.

  Returns:
    (height, width, C) array of the input dtype (uint8 results are rounded and clipped to [0, 255]; with
    ``antialias`` 1- and 3-channel uint8 images go through PIL's implementation of the same filter,
    whose fixed-point weights may differ from the float result by 1).

  Raises:
    ValueError: ``size`` is not two positive integers or the image is not (H, W, C).
  """
  h, w = _check_size(size, "size")
  image = np.asarray(image)
  if image.ndim != 3:
    raise ValueError(f"resize_image expects (H, W, C), got shape {image.shape}")
  if image.shape[:2] == (h, w):
    return image
  if antialias and image.dtype == np.uint8 and image.shape[-1] in (1, 3):
    # Same filter in PIL's C code (8-bit fixed-point weights: within 1 of the float result), ~10x faster.
    from PIL import Image

    pil = Image.fromarray(image[..., 0] if image.shape[-1] == 1 else image)
    out = np.asarray(pil.resize((w, h), Image.Resampling.BILINEAR))
    return out.reshape(h, w, image.shape[-1])
  x = image.astype(np.float32)
  x = _resize_axis_linear(x, h, 0, antialias)
  x = _resize_axis_linear(x, w, 1, antialias)
  if image.dtype == np.uint8:
    return np.clip(np.rint(x), 0, 255).astype(np.uint8)
  return x.astype(image.dtype, copy=False)


def resize_nearest(array: np.ndarray, size: tuple[int, int]) -> np.ndarray:
  """Nearest-neighbour resize of the first two axes (labels, depth); values are copied, never mixed.

  Output pixel ``(i, j)`` takes input pixel ``(floor((i + 0.5) * H / h), floor((j + 0.5) * W / w))``.

  Args:
    array: (H, W, ...) array of any dtype.
    size: output (height, width).

  Returns:
    (height, width, ...) array of the input dtype.
  """
  h, w = _check_size(size, "size")
  array = np.asarray(array)
  if array.shape[:2] == (h, w):
    return array
  rows = resize_lib.nearest_indices(array.shape[0], h)
  cols = resize_lib.nearest_indices(array.shape[1], w)
  return array[rows[:, None], cols[None, :]]


def resize(example: Mapping[str, Any], size: tuple[int, int], *, antialias: bool = True) -> Example:
  """Resizes every spatial entry of an example to ``size`` (anisotropic if the aspect changes).

  ``image``: bilinear (``resize_image``); ``segmentation`` and ``depth``: nearest neighbour, so depth is never
  interpolated across invalid zeros (resized depth only contains input values). Depth values are unchanged
  (a resize changes the resolution, not the scene). Intrinsics: ``fx *= sx``, ``fy *= sy``,
  ``cx = (cx + 0.5) * sx - 0.5``, ``cy = (cy + 0.5) * sy - 0.5`` with ``sx = width / W``, ``sy = height / H``.

  Args:
    example: example dict (see module docstring).
    size: output (height, width) in pixels.
    antialias: see ``resize_image``.

  Returns:
    New example dict at ``size``.
  """
  h, w = _check_size(size, "size")
  H, W = _hw(example)
  out = dict(example)
  if (h, w) == (H, W):
    return out
  if "image" in out:
    out["image"] = resize_image(out["image"], (h, w), antialias=antialias)
  for key in ("depth", "segmentation"):
    if key in out:
      out[key] = resize_nearest(out[key], (h, w))
  sx, sy = w / W, h / H
  _update_intrinsics(
    out, lambda fx, fy, cx, cy: (fx * sx, fy * sy, (cx + 0.5) * sx - 0.5, (cy + 0.5) * sy - 0.5)
  )
  return out


def cover_size(in_size: tuple[int, int], target: tuple[int, int]) -> tuple[int, int]:
  """Size of an isotropic resize of ``in_size`` that just covers ``target`` (both (height, width)).

  The scale is ``max(th / H, tw / W)``; the result is rounded up so both sides are ``>=`` the target.
  """
  H, W = in_size
  th, tw = _check_size(target, "target")
  s = max(th / H, tw / W)
  return max(th, math.ceil(H * s - 1e-6)), max(tw, math.ceil(W * s - 1e-6))


def resize_to_cover(
  example: Mapping[str, Any], size: tuple[int, int], *, antialias: bool = True
) -> Example:
  """Isotropically resizes an example so that it just covers ``size`` (a following crop fits exactly).

  Same interpolation and intrinsics rules as ``resize``; the aspect ratio is kept (up to rounding).
  """
  return resize(example, cover_size(_hw(example), size), antialias=antialias)


# ----------------------------------------------------------------------------------------------------------
# scale augmentation


def scale(example: Mapping[str, Any], s: float, *, antialias: bool = True) -> Example:
  """Scales the image by ``s`` and divides depth by ``s`` (Eigen et al. 2014, §3.3).

  Enlarging an image by ``s`` makes the scene look as if the camera were ``s`` times closer, so the depth
  targets are divided by ``s`` (invalid zeros stay zero). The output size is
  ``(round(H * s), round(W * s))``; image/labels/depth are resized as in ``resize`` and the intrinsics are
  rescaled for the new pixel grid (``fx * s'``, ``cx = (cx + 0.5) * s' - 0.5`` with the realised per-axis
  factor ``s'``). Note that the pair (scaled intrinsics, depth / s) is Eigen's convention, not a
  physically consistent camera: the depth corresponds to the *original* focal length.

  Args:
    example: example dict.
    s: scale factor > 0.
    antialias: see ``resize_image``.

  Returns:
    New example dict of size ``(round(H * s), round(W * s))``.

  Raises:
    ValueError: ``s <= 0`` or the scaled image would be empty.
  """
  if not s > 0:
    raise ValueError(f"scale factor must be > 0, got {s}")
  H, W = _hw(example)
  h, w = round(H * s), round(W * s)
  if h < 1 or w < 1:
    raise ValueError(f"scaling a {H}x{W} example by {s} gives an empty image")
  out = resize(example, (h, w), antialias=antialias)
  if "depth" in out:
    out["depth"] = (np.asarray(out["depth"], np.float32) / np.float32(s)).astype(np.float32)
  return out


def random_scale(
  example: Mapping[str, Any], rng: np.random.Generator, s_min: float, s_max: float
) -> Example:
  """``scale`` by ``s = rng.uniform(s_min, s_max)`` (one draw from ``rng``)."""
  if not 0 < s_min <= s_max:
    raise ValueError(f"scale range must satisfy 0 < s_min <= s_max, got ({s_min}, {s_max})")
  s = float(rng.uniform(s_min, s_max))
  return scale(example, s)


# ----------------------------------------------------------------------------------------------------------
# in-plane rotation


def _rotation_sources(
  H: int, W: int, degrees: float, window: tuple[int, int, int, int] | None = None
) -> tuple[np.ndarray, np.ndarray]:
  """Source coordinates (rows, cols), both float64 (H, W), of each output pixel of ``rotate``.

  Index coordinates (pixel ``i`` centred at ``i``) relative to the image centre ``((H - 1) / 2,
  (W - 1) / 2)``. The content turns counter-clockwise as displayed (rows grow downwards), so an output pixel
  at offset ``(x', y')`` (columns, rows) reads the input at ``(c x' - s y', s x' + c y')``. With ``window``
  ``(top, left, h, w)``: only those output pixels, (h, w) (the same values as that part of the full map).
  """
  top, left, h, w = (0, 0, H, W) if window is None else window
  t = math.radians(float(degrees))
  c, s = math.cos(t), math.sin(t)
  yc, xc = (H - 1) / 2.0, (W - 1) / 2.0
  y = np.arange(top, top + h, dtype=np.float64)[:, None] - yc
  x = np.arange(left, left + w, dtype=np.float64)[None, :] - xc
  return yc + s * x + c * y, xc + c * x - s * y


def _sample_nearest(a: np.ndarray, rows: np.ndarray, cols: np.ndarray, fill) -> np.ndarray:
  """``a[round(rows), round(cols)]`` (half up), ``fill`` where the nearest pixel is outside ``a``."""
  H, W = a.shape[:2]
  r = np.floor(rows + 0.5).astype(np.int64)
  q = np.floor(cols + 0.5).astype(np.int64)
  inside = (r >= 0) & (r < H) & (q >= 0) & (q < W)
  out = a[np.clip(r, 0, H - 1), np.clip(q, 0, W - 1)]
  out[~inside] = fill
  return out


def _sample_bilinear(a: np.ndarray, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
  """Bilinear interpolation of (H, W, C) ``a`` at float (rows, cols); taps outside the image count as 0.

  The image gets a two-pixel border of zeros and each top-left tap index is clipped into [-2, H] x [-2, W]
  first: a tap outside the image then lands on the border (both taps of a clipped index do) and reads 0
  without a mask, and the four taps are the top-left tap's flat index plus 0, 1, ``W + 4`` and ``W + 5``,
  gathered from the flattened image. Sums in the fixed order top-left, top-right, bottom-left,
  bottom-right, each ``(w_row * w_col) * tap`` in float32.
  """
  H, W = a.shape[:2]
  Wp = W + 4
  x = np.zeros((H + 4, Wp) + a.shape[2:], np.float32)
  x[2:-2, 2:-2] = a
  flat = x.reshape((H + 4) * Wp, -1)
  r0 = np.floor(rows)
  q0 = np.floor(cols)
  fr = (rows - r0).astype(np.float32)[..., None]
  fq = (cols - q0).astype(np.float32)[..., None]
  r = (np.clip(r0, -2, H) + 2).astype(np.intp)
  q = (np.clip(q0, -2, W) + 2).astype(np.intp)
  top_left = r * Wp + q
  out = np.zeros(rows.shape + a.shape[2:], np.float32)
  wr0, wq0 = 1.0 - fr, 1.0 - fq
  for offset, wr, wq in ((0, wr0, wq0), (1, wr0, fq), (Wp, fr, wq0), (Wp + 1, fr, fq)):
    tap = np.take(flat, top_left + offset, axis=0).reshape(out.shape)
    out += wr * wq * tap
  return out


def rotate(
  example: Mapping[str, Any], degrees: float, *, window: tuple[int, int, int, int] | None = None
) -> Example:
  """Rotates an example in-plane about the image centre (Eigen et al. 2014 §3.3; model_spec §3.3).

  The content turns by ``degrees`` counter-clockwise as displayed; the size stays (H, W). ``image``:
  bilinear, pixels whose source lies outside the image are 0 (black; border pixels blend towards it);
  ``depth``: nearest neighbour, outside = 0 (invalid), values unchanged (a roll of the camera about its
  optical axis keeps every point's z-depth); ``segmentation``: nearest, outside = ``IGNORE_INDEX``. Nearest
  rounds half up (``floor(v + 0.5)``). Intrinsics: the principal point turns with the content about the
  centre, ``fx`` / ``fy`` are kept (exact for square pixels, ``fx == fy``: the result is the image of the
  rolled camera).

  Args:
    example: example dict.
    degrees: rotation angle in degrees (positive = counter-clockwise as displayed).
    window: ``(top, left, height, width)``: return only that window of the rotated example, the same as
      ``crop(rotate(example, degrees), *window)`` but sampling only the window's pixels (the training
      pipeline's rotate-then-crop). A window that is not inside the image is cropped after rotating.

  Returns:
    New example dict of the same size (the window's with ``window``); a rotation by 0 returns the entries
    unchanged (cropped with ``window``).
  """
  H, W = _hw(example)
  if window is not None:
    top, left, h, w = (int(v) for v in window)
    h, w = _check_size((h, w), "rotate window")
    if float(degrees) == 0.0 or not (top >= 0 and left >= 0 and top + h <= H and left + w <= W):
      return crop(rotate(example, degrees), top, left, h, w)
    window = (top, left, h, w)
  out = dict(example)
  if float(degrees) == 0.0:
    return out
  rows, cols = _rotation_sources(H, W, degrees, window)
  if "image" in out:
    img = np.asarray(out["image"])
    res = _sample_bilinear(img, rows, cols)
    if img.dtype == np.uint8:
      res = np.clip(np.rint(res), 0, 255)
    out["image"] = res.astype(img.dtype)
  if "depth" in out:
    out["depth"] = _sample_nearest(np.asarray(out["depth"]), rows, cols, 0)
  if "segmentation" in out:
    out["segmentation"] = _sample_nearest(np.asarray(out["segmentation"]), rows, cols, IGNORE_INDEX)
  t = math.radians(float(degrees))
  c, s = math.cos(t), math.sin(t)
  yc, xc = (H - 1) / 2.0, (W - 1) / 2.0

  def turn(fx, fy, cx, cy):
    dx, dy = cx - xc, cy - yc
    return fx, fy, xc + c * dx + s * dy, yc - s * dx + c * dy

  _update_intrinsics(out, turn)
  if window is not None:
    _update_intrinsics(out, lambda fx, fy, cx, cy: (fx, fy, cx - window[1], cy - window[0]))
  return out


def random_rotate(
  example: Mapping[str, Any], rng: np.random.Generator, max_degrees: float
) -> Example:
  """``rotate`` by ``r = rng.uniform(-max_degrees, max_degrees)`` (one draw from ``rng``).

  Raises:
    ValueError: ``max_degrees`` < 0.
  """
  return rotate(example, _draw_degrees(rng, max_degrees))


def _draw_degrees(rng: np.random.Generator, max_degrees: float) -> float:
  if not max_degrees >= 0:
    raise ValueError(f"rotation range must be >= 0 degrees, got {max_degrees}")
  return float(rng.uniform(-max_degrees, max_degrees))


# ----------------------------------------------------------------------------------------------------------
# crops and flips


def crop(example: Mapping[str, Any], top: int, left: int, height: int, width: int) -> Example:
  """Crops the window ``[top, top + height) x [left, left + width)``, padding outside the image.

  The window may extend beyond the image (negative ``top``/``left`` or past the far border); uncovered
  pixels are filled with image 0, depth 0 (invalid) and segmentation ``IGNORE_INDEX``. Intrinsics:
  ``cx -= left``, ``cy -= top``.

  Args:
    example: example dict.
    top: first row of the window (may be negative).
    left: first column of the window (may be negative).
    height: window height in pixels (> 0).
    width: window width in pixels (> 0).

  Returns:
    New example dict of size (height, width).
  """
  height, width = _check_size((height, width), "crop size")
  H, W = _hw(example)
  top, left = int(top), int(left)
  out = dict(example)
  inside = top >= 0 and left >= 0 and top + height <= H and left + width <= W
  y0, y1 = max(top, 0), min(top + height, H)
  x0, x1 = max(left, 0), min(left + width, W)
  for key, fill in (("image", 0), ("depth", 0), ("segmentation", IGNORE_INDEX)):
    if key not in out:
      continue
    a = np.asarray(out[key])
    if inside:
      out[key] = a[top : top + height, left : left + width]
      continue
    res = np.full((height, width) + a.shape[2:], fill, a.dtype)
    if y1 > y0 and x1 > x0:
      res[y0 - top : y1 - top, x0 - left : x1 - left] = a[y0:y1, x0:x1]
    out[key] = res
  _update_intrinsics(out, lambda fx, fy, cx, cy: (fx, fy, cx - left, cy - top))
  return out


def center_crop(example: Mapping[str, Any], size: tuple[int, int]) -> Example:
  """Crops the central ``size`` window (``top = floor((H - h) / 2)``), padding if the image is smaller."""
  return crop(example, *_crop_window(_hw(example), size, None))


def random_crop(
  example: Mapping[str, Any], rng: np.random.Generator, size: tuple[int, int]
) -> Example:
  """Crops a uniformly random ``size`` window (two draws from ``rng``: top, then left).

  If the image is larger than the window along an axis, the offset is uniform in ``[0, H - h]``; if it is
  smaller, the image is placed at a uniform offset inside the window and the rest is padded (see ``crop``).
  """
  return crop(example, *_crop_window(_hw(example), size, rng))


def _crop_window(
  image_hw: tuple[int, int], size: tuple[int, int], rng: np.random.Generator | None
) -> tuple[int, int, int, int]:
  """(top, left, h, w): ``random_crop``'s window (two draws) with ``rng``, ``center_crop``'s without."""
  h, w = _check_size(size, "size")
  H, W = image_hw
  if rng is None:
    return (H - h) // 2, (W - w) // 2, h, w
  top = int(rng.integers(min(0, H - h), max(0, H - h) + 1))
  left = int(rng.integers(min(0, W - w), max(0, W - w) + 1))
  return top, left, h, w


def hflip(example: Mapping[str, Any]) -> Example:
  """Mirrors an example left-right; intrinsics ``cx -> W - 1 - cx`` (pixel-centre convention)."""
  _, W = _hw(example)
  out = dict(example)
  for key in ("image", "depth", "segmentation"):
    if key in out:
      out[key] = np.asarray(out[key])[:, ::-1]
  _update_intrinsics(out, lambda fx, fy, cx, cy: (fx, fy, W - 1 - cx, cy))
  return out


def vflip(example: Mapping[str, Any]) -> Example:
  """Flips an example upside down; intrinsics ``cy -> H - 1 - cy``.

  Paper 001 trains with "flipping and mirroring"; vertical flips break the ground-plane depth prior, so
  they are off by default (docs/model_spec.md §2.5).
  """
  H, _ = _hw(example)
  out = dict(example)
  for key in ("image", "depth", "segmentation"):
    if key in out:
      out[key] = np.asarray(out[key])[::-1]
  _update_intrinsics(out, lambda fx, fy, cx, cy: (fx, fy, cx, H - 1 - cy))
  return out


def random_flip(
  example: Mapping[str, Any], rng: np.random.Generator, p: float = 0.5, *, vertical: bool = False
) -> Example:
  """``hflip`` (or ``vflip``) with probability ``p`` (one draw ``rng.random() < p``)."""
  if rng.random() < p:
    return vflip(example) if vertical else hflip(example)
  return dict(example)


# ----------------------------------------------------------------------------------------------------------
# photometric and dtype transforms


def to_float(example: Mapping[str, Any]) -> Example:
  """Converts dtypes to the batch format.

  ``image``: uint8 -> float32 ``/ 255`` in [0, 1] (float input is cast to float32 unchanged);
  ``segmentation``: (H, W, 1) or (H, W) -> int32 (H, W); ``depth``: float32; ``intrinsics``: float32 (4,);
  ``has_depth`` / ``has_segmentation``: numpy bool.
  """
  out = dict(example)
  if "image" in out:
    img = np.asarray(out["image"])
    if img.dtype == np.uint8:
      out["image"] = img.astype(np.float32) / np.float32(255.0)
    else:
      out["image"] = img.astype(np.float32)
  if "segmentation" in out:
    seg = np.asarray(out["segmentation"])
    if seg.ndim == 3:
      if seg.shape[-1] != 1:
        raise ValueError(f"segmentation must be (H, W) or (H, W, 1), got {seg.shape}")
      seg = seg[..., 0]
    out["segmentation"] = seg.astype(np.int32)
  if "depth" in out:
    out["depth"] = np.asarray(out["depth"], np.float32)
  if "intrinsics" in out:
    out["intrinsics"] = np.asarray(out["intrinsics"], np.float32).reshape(4)
  for key in ("has_depth", "has_segmentation"):
    if key in out:
      out[key] = np.bool_(out[key])
  return out


def photometric_jitter(
  example: Mapping[str, Any],
  rng: np.random.Generator,
  *,
  brightness: float = 0.2,
  contrast: float = 0.2,
  saturation: float = 0.2,
  color: tuple[float, float] | None = (0.8, 1.2),
) -> Example:
  """Random brightness, contrast, saturation and per-channel colour gains on the image only.

  With ``x`` the image in [0, 1] (uint8 input is divided by 255) and ``g(x)`` its Rec. 601 grey level, in
  this order: brightness ``x * b`` with ``b ~ U[1 - brightness, 1 + brightness]``; contrast
  ``mean(g) + c * (x - mean(g))`` with ``c ~ U[1 - contrast, 1 + contrast]``; saturation
  ``g + t * (x - g)`` with ``t ~ U[1 - saturation, 1 + saturation]``; colour ``x * m`` with
  ``m ~ U[color]^3`` (Eigen et al. 2014 use ``[0.8, 1.2]^3``); finally clipped to [0, 1]. A strength of 0
  (or ``color=None``) skips that step without drawing from ``rng``. Depth, labels and intrinsics are not
  touched.

  Args:
    example: example dict with ``image`` (H, W, 3) uint8 or float.
    rng: random generator.
    brightness: maximal relative brightness change, in [0, 1).
    contrast: maximal relative contrast change, in [0, 1).
    saturation: maximal relative saturation change, in [0, 1].
    color: range of the per-channel multiplier, or None.

  Returns:
    New example dict whose ``image`` is float32 (H, W, 3) in [0, 1].
  """
  out = dict(example)
  x = to_float({"image": example["image"]})["image"]
  # Every step is affine per pixel (the contrast mean is a scalar of the whole image), so the four steps
  # compose into one (3, 3) matrix and offset: x -> x @ M + offset, applied in a single pass.
  M = np.eye(3)
  offset = np.zeros(3)
  if brightness:
    M = M * rng.uniform(1 - brightness, 1 + brightness)
  if contrast:
    c = rng.uniform(1 - contrast, 1 + contrast)
    channel_mean = np.mean(x.reshape(-1, 3), axis=0, dtype=np.float64)
    grey_mean = float((channel_mean @ M + offset) @ _LUMA)
    M, offset = c * M, c * offset + (1 - c) * grey_mean
  if saturation:
    t = rng.uniform(1 - saturation, 1 + saturation)
    S = t * np.eye(3) + (1 - t) * np.outer(_LUMA, np.ones(3))
    M, offset = M @ S, offset @ S
  if color is not None:
    m = rng.uniform(color[0], color[1], size=3)
    M, offset = M * m[None, :], offset * m
  x = x @ M.astype(np.float32) + offset.astype(np.float32)
  out["image"] = np.clip(x, 0.0, 1.0).astype(np.float32)
  return out


# ----------------------------------------------------------------------------------------------------------
# composite preprocessing used by the pipeline


def check_augment(augment: Mapping[str, Any] | None) -> dict[str, Any]:
  """Returns ``DEFAULT_AUGMENT`` updated with ``augment``, validating keys and values.

  Raises:
    ValueError: unknown key (the message lists the known ones) or an invalid value.
  """
  cfg = dict(DEFAULT_AUGMENT)
  for key, value in dict(augment or {}).items():
    if key not in DEFAULT_AUGMENT:
      raise ValueError(f"unknown augment key {key!r}; known: {', '.join(DEFAULT_AUGMENT)}")
    cfg[key] = value
  r = cfg["resize"]
  if not (r is None or r == "cover" or (not isinstance(r, str) and len(tuple(r)) == 2)):
    raise ValueError(f"augment['resize'] must be 'cover', None or (height, width), got {r!r}")
  if cfg["scale"] is not None:
    lo, hi = cfg["scale"]
    if not 0 < lo <= hi:
      raise ValueError(
        f"augment['scale'] must be (s_min, s_max) with 0 < s_min <= s_max, got {cfg['scale']}"
      )
  rot = cfg["rotate"]
  if rot is not None and (
    isinstance(rot, bool) or not isinstance(rot, int | float) or not 0 <= rot <= 180
  ):
    raise ValueError(
      f"augment['rotate'] must be None or the maximal rotation in degrees in [0, 180], got {rot!r}"
    )
  if cfg["crop"] not in ("random", "center"):
    raise ValueError(f"augment['crop'] must be 'random' or 'center', got {cfg['crop']!r}")
  j = cfg["jitter"]
  if j is True:
    cfg["jitter"] = dict(DEFAULT_JITTER)
  elif j in (False, None):
    cfg["jitter"] = None
  elif isinstance(j, Mapping):
    unknown = set(j) - set(DEFAULT_JITTER)
    if unknown:
      raise ValueError(f"unknown jitter keys {sorted(unknown)}; known: {', '.join(DEFAULT_JITTER)}")
    cfg["jitter"] = {**DEFAULT_JITTER, **j}
  else:
    raise ValueError(f"augment['jitter'] must be a bool or a dict, got {j!r}")
  return cfg


def preprocess_train(
  example: Mapping[str, Any],
  rng: np.random.Generator,
  *,
  image_size: tuple[int, int],
  augment: Mapping[str, Any] | None = None,
) -> Example:
  """Training preprocessing: base resize, random scale, rotation, crop, flips, dtype conversion, jitter.

  Order (Eigen et al. 2014's: scale, rotation, translation, flip, colour): ``resize`` (``"cover"``:
  ``resize_to_cover(image_size)``; a (h, w) tuple: ``resize``; None: keep) -> ``random_scale`` (depth / s)
  -> ``random_rotate`` -> ``random_crop`` / ``center_crop`` to ``image_size`` (padding if smaller) ->
  ``random_flip`` -> vertical ``random_flip`` -> ``to_float`` -> ``photometric_jitter``. Random draws
  happen in that order from ``rng`` (a disabled step draws nothing).

  Args:
    example: decoded stored example (image uint8 (H, W, 3), depth float32 (H, W) metres, segmentation
      (H, W, 1) uint8, intrinsics (4,), flags).
    rng: random generator (the pipeline seeds it per (seed, epoch, example index)).
    image_size: output (height, width).
    augment: overrides of ``DEFAULT_AUGMENT`` (see there); validated by ``check_augment``.

  Returns:
    Example dict with image float32 (h, w, 3) in [0, 1], depth float32 (h, w) metres, segmentation int32
    (h, w), intrinsics float32 (4,) and the flags / other keys passed through.
  """
  cfg = check_augment(augment)
  size = _check_size(image_size, "image_size")
  ex = dict(example)
  if cfg["resize"] == "cover":
    ex = resize_to_cover(ex, size)
  elif cfg["resize"] is not None:
    ex = resize(ex, tuple(cfg["resize"]))
  if cfg["scale"] is not None and tuple(cfg["scale"]) != (1.0, 1.0):
    ex = random_scale(ex, rng, *cfg["scale"])
  # Rotation and crop in one pass: only the crop's pixels are sampled (same result and draws as
  # random_rotate, then random_crop / center_crop; the rotation was most of the per-example time).
  degrees = _draw_degrees(rng, float(cfg["rotate"])) if cfg["rotate"] else 0.0
  window = _crop_window(_hw(ex), size, rng if cfg["crop"] == "random" else None)
  ex = rotate(ex, degrees, window=window)
  if cfg["flip"]:
    ex = random_flip(ex, rng)
  if cfg["vflip"]:
    ex = random_flip(ex, rng, vertical=True)
  ex = to_float(ex)
  if cfg["jitter"] is not None:
    ex = photometric_jitter(ex, rng, **cfg["jitter"])
  return ex


EVAL_MODES = ("resize", "cover_crop", "center_crop")


def preprocess_eval(
  example: Mapping[str, Any], *, image_size: tuple[int, int] | None = None, mode: str = "resize"
) -> Example:
  """Deterministic evaluation preprocessing to a fixed size, then ``to_float``.

  Args:
    example: decoded stored example.
    image_size: output (height, width), or None to keep the stored size.
    mode: ``"resize"`` (``resize`` to ``image_size``, aspect may change), ``"cover_crop"``
      (``resize_to_cover`` then ``center_crop``) or ``"center_crop"`` (``center_crop`` only, padding if
      smaller).

  Returns:
    Example dict in the batch dtypes (see ``to_float``).

  Raises:
    ValueError: unknown ``mode``.
  """
  if mode not in EVAL_MODES:
    raise ValueError(f"eval mode must be one of {EVAL_MODES}, got {mode!r}")
  ex = dict(example)
  if image_size is not None:
    size = _check_size(image_size, "image_size")
    if mode == "resize":
      ex = resize(ex, size)
    elif mode == "cover_crop":
      ex = center_crop(resize_to_cover(ex, size), size)
    else:
      ex = center_crop(ex, size)
  return to_float(ex)
