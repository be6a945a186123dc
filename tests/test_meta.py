import pytest

from semdepth_jax.data import meta


def test_every_dataset_is_consistent():
  for name in meta.known_datasets():
    m = meta.get_meta(name)
    assert m.name == name
    assert len(m.class_names) == len(m.class_colors) == m.num_classes
    assert len(set(m.class_names)) == m.num_classes, f"{name}: duplicate class names"
    assert m.ignore_index == 255 and m.num_classes <= 255
    assert all(0 <= c <= 255 for rgb in m.class_colors for c in rgb)
    lo, hi = m.depth_vis_range
    assert 0 < lo < hi


def test_default_config_and_version_suffix():
  assert meta.get_meta("nyu_depth_v2_labeled").num_classes == 40
  assert meta.get_meta("nyu_depth_v2_labeled/13").num_classes == 13
  assert meta.get_meta("replica:1.0.0").num_classes == 101
  assert meta.get_meta("synthetic_city").class_names[0] == "Miscellaneous"


def test_unknown_dataset_lists_known():
  with pytest.raises(KeyError, match="camvid"):
    meta.get_meta("no_such_set")


def test_intrinsics_scaled_with_half_pixel_centres():
  m = meta.get_meta("replica")  # fx = fy = 600, cx = 599.5, cy = 339.5 at 680 x 1200.
  fx, fy, cx, cy = m.intrinsics_at(340, 600)
  assert fx == pytest.approx(300.0) and fy == pytest.approx(300.0)
  # Half-pixel centres: the optical centre of the 1200-wide image (x = 599.5) maps to x = 299.5.
  assert cx == pytest.approx(299.5) and cy == pytest.approx(169.5)
  assert meta.get_meta("camvid").intrinsics_at(10, 10) is None


def test_generated_palette_is_distinct_and_deterministic():
  p = meta.generated_palette(101)
  assert p == meta.generated_palette(101)
  assert len(set(p)) == 101


def test_bad_meta_rejected():
  with pytest.raises(ValueError, match="class names"):
    meta.DatasetMeta(
      name="x", class_names=("a",), class_colors=(), has_depth=True, has_segmentation=True,
      min_depth=1e-3, max_depth=None, depth_vis_range=(1, 2), eval_crop=None, native_size=(1, 1),
      intrinsics=None, splits=("train",), scene_type="indoor",
    )  # fmt: skip


def test_configs_that_do_not_change_classes_share_the_base_meta():
  assert meta.get_meta("replica/default") is meta.get_meta("replica")
  assert meta.get_meta("synthetic_city/tiny:1.0.0") is meta.get_meta("synthetic_city")
  with pytest.raises(KeyError):
    meta.get_meta("nope/default")
