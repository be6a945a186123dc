"""Tests of semdepth_jax.tiling (tile placement, stitching by averaging, flip TTA)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from semdepth_jax import tiling


def test_tile_starts_model_spec_cityscapes_example():
  # model_spec §2.6: 1024x2048 in 321x321 tiles -> 4 rows x 7 cols at round(linspace(0, size - 321, n)).
  # Rows: linspace(0, 703, 4) = 0, 234.33, 468.67, 703.
  assert tiling.tile_starts(1024, 321) == (0, 234, 469, 703)
  # Cols: linspace(0, 1727, 7), step 287.8333: 0, 287.83, 575.67, 863.5 (half up), 1151.33, 1439.17, 1727.
  assert tiling.tile_starts(2048, 321) == (0, 288, 576, 864, 1151, 1439, 1727)


@pytest.mark.parametrize(
  "size,tile,expected",
  [(5, 3, (0, 2)), (6, 3, (0, 3)), (3, 3, (0,)), (2, 3, (0,)), (7, 3, (0, 2, 4)), (1, 1, (0,))],
)
def test_tile_starts_small(size, tile, expected):
  assert tiling.tile_starts(size, tile) == expected


def test_tile_starts_rejects_bad_sizes():
  with pytest.raises(ValueError, match="size and tile"):
    tiling.tile_starts(0, 3)


def test_coverage_counts():
  counts = tiling.coverage_counts(1, 5, (1, 3))
  np.testing.assert_array_equal(counts, [[1, 1, 2, 1, 1]])
  counts = tiling.coverage_counts(5, 6, (3, 3))  # rows (0, 2), cols (0, 3)
  expected = np.ones((5, 6), np.int32)
  expected[2] = 2
  np.testing.assert_array_equal(counts, expected)


def _tile_mean_fn(image, labels):
  """Every pixel of a tile gets the tile's mean of channel 0 (so overlaps show the averaging)."""
  del labels
  m = jnp.mean(image[..., 0], axis=(1, 2), keepdims=True)
  depth = jnp.broadcast_to(m, image.shape[:3])
  return {"depth": depth, "probs": jnp.stack([depth, 1.0 - depth], axis=-1)}


def test_overlap_averaging_by_hand():
  row = np.asarray([0.1, 0.2, 0.3, 0.6, 0.8], np.float32)
  image = np.zeros((1, 1, 5, 3), np.float32)
  image[0, 0, :, 0] = row
  out = tiling.tiled_predict(_tile_mean_fn, jnp.asarray(image), (1, 3))
  m1 = (0.1 + 0.2 + 0.3) / 3  # tile at column 0
  m2 = (0.3 + 0.6 + 0.8) / 3  # tile at column 2
  expected = [m1, m1, (m1 + m2) / 2, m2, m2]
  np.testing.assert_allclose(np.asarray(out["depth"])[0, 0], expected, rtol=1e-6)
  np.testing.assert_allclose(
    np.asarray(out["probs"])[0, 0, :, 1], 1.0 - np.asarray(expected), rtol=1e-6
  )
  assert out["probs"].shape == (1, 1, 5, 2)


def test_overlap_scores_by_maximum_paper_001():
  """probs_combine='max': the label of the tile with the higher normalised score wins (paper 001 §5.1)."""
  row = np.asarray([0.1, 0.2, 0.3, 0.6, 0.8], np.float32)
  image = np.zeros((1, 1, 5, 3), np.float32)
  image[0, 0, :, 0] = row
  out = tiling.tiled_predict(_tile_mean_fn, jnp.asarray(image), (1, 3), probs_combine="max")
  m1, m2 = 0.2, (0.3 + 0.6 + 0.8) / 3  # tile means; probs = (m, 1 - m)
  probs = np.asarray(out["probs"])[0, 0]
  np.testing.assert_allclose(probs[2], [max(m1, m2), max(1 - m1, 1 - m2)], rtol=1e-6)
  # The overlap pixel: tile 1 gives class 1 a score of 0.8, the highest of any tile -> class 1.
  assert np.argmax(probs[2]) == 1
  np.testing.assert_allclose(probs[0], [m1, 1 - m1], rtol=1e-6)
  np.testing.assert_allclose(probs[4], [m2, 1 - m2], rtol=1e-6)
  # Depth is still averaged.
  np.testing.assert_allclose(np.asarray(out["depth"])[0, 0, 2], (m1 + m2) / 2, rtol=1e-6)
  with pytest.raises(ValueError, match="probs_combine must be one of"):
    tiling.tiled_predict(_tile_mean_fn, jnp.asarray(image), (1, 3), probs_combine="vote")


def test_overlap_max_and_mean_pick_different_labels():
  """Tile 1 scores (0.6, 0.4, 0), tile 2 (0, 0.5, 0.5) on their overlap: the mean (0.3, 0.45, 0.25) picks
  class 1, the maximum (0.6, 0.5, 0.5) class 0 (the tile with the highest score decides)."""

  def fn(image, labels):
    del labels
    first = image[:, :1, :1, :1] > 0.5  # (B, 1, 1, 1): the marker pixel is only in the first tile
    probs = jnp.where(first, jnp.asarray([0.6, 0.4, 0.0]), jnp.asarray([0.0, 0.5, 0.5]))
    return {"probs": jnp.broadcast_to(probs, image.shape[:3] + (3,))}

  image = np.zeros((1, 1, 5, 3), np.float32)
  image[0, 0, 0, 0] = 1.0  # tiles start at columns 0 and 2; only the first sees column 0
  mean = np.asarray(tiling.tiled_predict(fn, jnp.asarray(image), (1, 3))["probs"])[0, 0, 2]
  best = tiling.tiled_predict(fn, jnp.asarray(image), (1, 3), probs_combine="max")["probs"]
  best = np.asarray(best)[0, 0, 2]
  np.testing.assert_allclose(mean, [0.3, 0.45, 0.25], rtol=1e-6)
  np.testing.assert_allclose(best, [0.6, 0.5, 0.5], rtol=1e-6)
  assert np.argmax(mean) == 1 and np.argmax(best) == 0


def test_overlap_averaging_2d_by_hand():
  rng = np.random.default_rng(0)
  image = rng.uniform(size=(2, 5, 6, 3)).astype(np.float32)
  out = np.asarray(tiling.tiled_predict(_tile_mean_fn, jnp.asarray(image), (3, 3))["depth"])
  # Tiles start at rows (0, 2), cols (0, 3).
  expected = np.zeros((2, 5, 6))
  count = np.zeros((5, 6))
  for r in (0, 2):
    for c in (0, 3):
      expected[:, r : r + 3, c : c + 3] += image[:, r : r + 3, c : c + 3, 0].mean(axis=(1, 2))[
        :, None, None
      ]
      count[r : r + 3, c : c + 3] += 1
  np.testing.assert_allclose(out, expected / count, rtol=1e-6)


def _pointwise(image, labels):
  depth = 1.0 + 2.0 * image[..., 0] - image[..., 1]
  logits = jnp.stack([image[..., 2], image[..., 0] * image[..., 1]], axis=-1)
  out = {"depth": depth, "probs": jax.nn.softmax(logits, axis=-1)}
  if labels is not None:
    out["lab"] = labels.astype(jnp.float32)
  return out


@pytest.mark.parametrize(
  "shape,tile", [((2, 11, 17), (4, 6)), ((1, 3, 4), (4, 6)), ((1, 9, 5), (4, 6))]
)
def test_pointwise_function_tiled_equals_untiled(shape, tile):
  # Images larger and smaller (padded) than the tile; labels are tiled alongside the image.
  rng = np.random.default_rng(1)
  image = jnp.asarray(rng.uniform(size=shape + (3,)).astype(np.float32))
  labels = jnp.asarray(rng.integers(0, 5, size=shape).astype(np.int32))
  tiled = tiling.tiled_predict(_pointwise, image, tile, labels)
  full = _pointwise(image, labels)
  for k in ("depth", "probs", "lab"):
    np.testing.assert_allclose(np.asarray(tiled[k]), np.asarray(full[k]), rtol=1e-6, atol=1e-7)


def test_tiled_predict_is_jittable_and_checks_output_size():
  image = jnp.ones((1, 7, 9, 3))
  out = jax.jit(lambda x: tiling.tiled_predict(_pointwise, x, (4, 4)))(image)
  assert out["depth"].shape == (1, 7, 9)

  def wrong_size(x, lab):
    return {"depth": x[:, ::2, ::2, 0]}

  with pytest.raises(ValueError, match="tile size"):
    tiling.tiled_predict(wrong_size, image, (4, 4))


def test_flip_tta_by_hand():
  # fn adds the column index: TTA gives x0 + (col + (W - 1 - col)) / 2 = x0 + (W - 1) / 2 everywhere.
  rng = np.random.default_rng(2)
  image = rng.uniform(size=(2, 3, 5, 3)).astype(np.float32)

  def fn(x, lab):
    cols = jnp.arange(x.shape[2], dtype=jnp.float32)[None, None, :]
    return {"depth": x[..., 0] + cols}

  out = np.asarray(tiling.flip_tta(fn, jnp.asarray(image))["depth"])
  np.testing.assert_allclose(out, image[..., 0] + 2.0, rtol=1e-6)


def test_flip_tta_flips_labels_too():
  labels = jnp.asarray(np.arange(6, dtype=np.int32).reshape(1, 1, 6))
  image = jnp.zeros((1, 1, 6, 3))
  out = tiling.flip_tta(_pointwise, image, labels)
  # The flipped pass sees flipped labels; flipped back they line up again, so the mean is the labels.
  np.testing.assert_allclose(np.asarray(out["lab"]), np.asarray(labels, np.float32))
