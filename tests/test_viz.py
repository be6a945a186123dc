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


def test_overlay_labels_by_hand():
  img = np.full((2, 3, 3), 100, np.uint8)
  labels = np.asarray([[0, 1, 255], [1, 0, 0]])
  colors = [(0, 0, 0), (200, 100, 50)]
  ov = viz.overlay_labels(img, labels, colors, alpha=0.5)
  np.testing.assert_array_equal(ov[0, 0], [50, 50, 50])
  np.testing.assert_array_equal(ov[0, 1], [150, 100, 75])
  np.testing.assert_array_equal(ov[0, 2], [100, 100, 100])  # ignored: the image is kept
  ov = viz.overlay_labels(img.astype(np.float32) / 255.0, labels, colors, alpha=1.0)
  np.testing.assert_array_equal(ov[1, 0], [200, 100, 50])
  with pytest.raises(ValueError, match="same"):
    viz.overlay_labels(img, labels[:, :2], colors)


@pytest.mark.parametrize("h,k", [(200, 1), (48, 4), (161, 1), (159, 2)])
def test_depth_colorbar_image_keeps_fixed_colours(h, k):
  depth = np.linspace(0.5, 90.0, h * 30, dtype=np.float32).reshape(h, 30)
  im = viz.depth_colorbar_image(depth, 1.0, 80.0)
  assert im.dtype == np.uint8 and im.shape[0] == k * h and im.shape[1] > k * 30
  ref = np.repeat(np.repeat(viz.colourise_depth(depth, 1.0, 80.0), k, axis=0), k, axis=1)
  np.testing.assert_array_equal(im[:, : k * 30], ref)
  # The colour bar panel is drawn (not blank).
  bar = im[:, k * 30 :]
  assert (bar != 255).any()


def test_prediction_figure_and_legend(tmp_path):
  meta = meta_lib.get_meta("synthetic_city")
  img = np.zeros((24, 40, 3), np.uint8)
  fig = viz.prediction_figure(img, meta, depth=np.full((24, 40), 10.0), labels=None, title="x")
  path = viz.save_figure(fig, tmp_path / "f.png")
  with Image.open(path) as im:
    assert im.size[1] == round(viz.ROW_HEIGHT_IN * 100)
  handles = viz.dataset_legend(meta, [3, 1])
  assert [h.get_label() for h in handles] == ["3 Road", "1 Sky"]
  assert len(viz.dataset_legend(meta)) == meta.num_classes


def test_summary_images_and_writer():
  meta = meta_lib.get_meta("synthetic_city")
  rng = np.random.default_rng(0)
  B, H, W, C = 3, 8, 12, meta.num_classes
  batch = {
    "image": rng.uniform(size=(B, H, W, 3)).astype(np.float32),
    "depth": rng.uniform(1, 80, (B, H, W)).astype(np.float32),
    "segmentation": rng.integers(0, C, (B, H, W)).astype(np.int32),
    "mask": np.asarray([True, False, True]),
    "has_depth": np.asarray([True, True, False]),
  }
  pred = np.full((B, H // 2, W // 2, 1), 40.0, np.float32)  # decoded predictions are metres
  logits = np.zeros((B, H // 2, W // 2, C), np.float32)
  logits[..., 3] = 1.0
  images = viz.summary_images(batch, {"depth": pred, "seg_logits": logits}, meta)
  assert sorted(images) == ["examples/0", "examples/2"]  # the padding example is skipped
  g = viz.SUMMARY_GAP
  img0 = images["examples/0"]
  assert img0.shape == (H, 5 * W + 4 * g, 3)
  np.testing.assert_array_equal(
    img0[:, 2 * (W + g) : 3 * W + 2 * g], viz.colourise_depth(np.full((H, W), 40.0), 1, 80)
  )
  np.testing.assert_array_equal(
    img0[:, 4 * (W + g) :], np.broadcast_to(np.asarray(meta.class_colors[3], np.uint8), (H, W, 3))
  )
  assert (images["examples/2"][:, W + g : 2 * W + g] == 128).all()  # no depth: grey panel

  calls = []

  class FakeWriter:
    def add_image(self, tag, img, step, dataformats):
      calls.append((tag, img.shape, step, dataformats))

  viz.write_image_summaries(FakeWriter(), 7, images, prefix="eval/")
  assert calls == [
    ("eval/examples/0", img0.shape, 7, "HWC"),
    ("eval/examples/2", img0.shape, 7, "HWC"),
  ]
  viz.write_image_summaries(None, 7, images)  # no-op


def test_image_summaries_to_tensorboard_files(tmp_path):
  from tensorboardX import SummaryWriter

  with SummaryWriter(str(tmp_path)) as w:
    viz.write_image_summaries(w, 1, {"examples/0": np.zeros((4, 6, 3), np.uint8)})
  files = list(tmp_path.glob("events.out.tfevents.*"))
  assert len(files) == 1 and b"examples/0" in files[0].read_bytes()
