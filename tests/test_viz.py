"""Tests of semdepth_jax.viz (colourisation, legends, example grids)."""

import matplotlib
import numpy as np
import pytest
from PIL import Image

from semdepth_jax import viz
from semdepth_jax.data import meta as meta_lib


def cmap_rgb(name, t):
  return np.rint(np.asarray(matplotlib.colormaps[name](t))[..., :3] * 255).astype(np.int64)


def test_colourise_depth_fixed_range_and_invalid():
  depth = np.asarray([[0.0, 1.0, 80.0], [200.0, 0.5, np.nan]], np.float32)
  rgb = viz.colourise_depth(depth, 1.0, 80.0, cmap="viridis")
  assert rgb.dtype == np.uint8 and rgb.shape == (2, 3, 3)
  np.testing.assert_array_equal(rgb[0, 0], [0, 0, 0])  # invalid 0
  np.testing.assert_array_equal(rgb[1, 2], [0, 0, 0])  # NaN
  np.testing.assert_array_equal(rgb[0, 1], cmap_rgb("viridis", 0.0))  # vmin
  np.testing.assert_array_equal(rgb[0, 2], cmap_rgb("viridis", 1.0))  # vmax
  np.testing.assert_array_equal(rgb[1, 0], cmap_rgb("viridis", 1.0))  # beyond: saturates
  np.testing.assert_array_equal(rgb[1, 1], cmap_rgb("viridis", 0.0))  # below vmin but valid


def test_colourise_depth_is_not_rescaled_per_frame():
  a = np.full((4, 4), 10.0, np.float32)
  b = a.copy()
  b[0, 0] = 50.0  # a different frame content must not change the colour of 10 m
  ra, rb = viz.colourise_depth(a, 1.0, 80.0), viz.colourise_depth(b, 1.0, 80.0)
  np.testing.assert_array_equal(ra[1:, 1:], rb[1:, 1:])
  mid = viz.colourise_depth(np.full((1, 1), 40.5, np.float32), 1.0, 80.0, cmap="viridis")
  np.testing.assert_allclose(mid[0, 0], cmap_rgb("viridis", 0.5), atol=3)
  with pytest.raises(ValueError, match="vmax > vmin"):
    viz.colourise_depth(a, 5.0, 5.0)


def test_colourise_labels():
  colors = [(10, 20, 30), (40, 50, 60), (70, 80, 90)]
  labels = np.asarray([[0, 1], [2, 255]], np.uint8)[..., None]
  rgb = viz.colourise_labels(labels, colors)
  np.testing.assert_array_equal(rgb, [[[10, 20, 30], [40, 50, 60]], [[70, 80, 90], [0, 0, 0]]])
  with pytest.raises(ValueError, match=r"label ids \[3\]"):
    viz.colourise_labels(np.asarray([[3]]), colors)


def test_classes_present_and_legend():
  labels = np.asarray([[2, 2, 2, 255], [0, 2, 0, 255]])
  assert viz.classes_present(labels) == [2, 0]  # most frequent first, ignore excluded
  handles = viz.legend_handles([2, 0], ["a", "b", "c"], [(255, 0, 0), (0, 255, 0), (0, 0, 255)])
  assert [h.get_label() for h in handles] == ["2 c", "0 a"]
  np.testing.assert_allclose(handles[0].get_facecolor()[:3], [0, 0, 1])


def grid_examples(n, h=24, w=40):
  rng = np.random.default_rng(0)
  out = []
  for i in range(n):
    depth = rng.uniform(1, 80, (h, w)).astype(np.float32)
    depth[:4] = 0
    out.append(
      {
        "image": rng.integers(0, 256, (h, w, 3), dtype=np.uint8),
        "depth": depth,
        "segmentation": rng.integers(0, 14, (h, w, 1), dtype=np.uint8),
        "has_depth": i != 1,
        "has_segmentation": True,
        "file_name": f"ex{i}".encode(),
      }
    )
  return out


@pytest.mark.parametrize("n", [1, 3])
def test_example_grid_png_size(tmp_path, n):
  meta = meta_lib.get_meta("synthetic_city")
  fig = viz.dataset_grid(grid_examples(n), meta, dpi=50)
  path = viz.save_figure(fig, tmp_path / "sub" / "grid.png")
  with Image.open(path) as im:
    width, height = im.size
  assert height == round(n * viz.ROW_HEIGHT_IN * 50)
  assert width > 3 * viz.ROW_HEIGHT_IN * 40 / 24 * 50  # three panels of the images' aspect
  with pytest.raises(ValueError, match="at least one"):
    viz.dataset_grid([], meta)
