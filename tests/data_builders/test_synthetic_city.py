"""Tests of the synthetic_city renderer and TFDS builder (TF-free, tiny sizes)."""

import math

import numpy as np
import pytest

from data_builders import get_builder_class
from data_builders.synthetic_city import render
from data_builders.synthetic_city import synthetic_city_dataset_builder as scb
from semdepth_jax.data.meta import SSEGDEP_CLASS_NAMES, get_meta

ROAD = SSEGDEP_CLASS_NAMES.index("Road")
SKY = SSEGDEP_CLASS_NAMES.index("Sky")
VEHICLE = SSEGDEP_CLASS_NAMES.index("Vehicle")
SIDEWALK = SSEGDEP_CLASS_NAMES.index("Sidewalk")


# ------------------------------------------------------------------------------------------------
# Ray-primitive intersections against hand-computed hits.
# ------------------------------------------------------------------------------------------------


def test_intersect_box_hand_values():
  o = np.zeros(3)
  d = np.array([[0, 0, 1], [0, 0, 2], [1, 0, 1], [0, 1, 0], [0, 0, -1]], float)
  t, n = render.intersect_box(o, d, lo=(-1, -1, 5), hi=(1, 1, 7))
  np.testing.assert_allclose(t[:2], [5.0, 2.5])
  np.testing.assert_allclose(n[0], [0, 0, -1])
  # (1, 0, 1): at z = 5 it is at x = 5, outside [-1, 1]: miss; (0, 1, 0) and backwards: miss.
  assert np.isinf(t[2:]).all()
  assert (n[2:] == 0).all()
  # Diagonal ray entering through the x = 2 face: t = 2 for direction (1, 0, 1).
  t, n = render.intersect_box(o, np.array([[1.0, 0.0, 1.0]]), lo=(2, -1, -10), hi=(3, 1, 10))
  np.testing.assert_allclose(t, [2.0])
  np.testing.assert_allclose(n[0], [-1, 0, 0])
  # An origin inside the box reports no (entering) hit.
  t, _ = render.intersect_box(np.array([0.0, 0.0, 6.0]), d[:1], lo=(-1, -1, 5), hi=(1, 1, 7))
  assert np.isinf(t).all()


def test_intersect_cylinder_hand_values():
  kw = dict(center_x=0.0, center_z=10.0, radius=1.0, y0=0.0, y1=2.0)
  # Side, head-on: z = 10 - 1.
  t, n = render.intersect_cylinder(np.array([0.0, 1.0, 0.0]), np.array([[0.0, 0.0, 1.0]]), **kw)
  np.testing.assert_allclose(t, [9.0])
  np.testing.assert_allclose(n[0], [0, 0, -1])
  # Off-axis at x = 0.6: enters at z = 10 - sqrt(1 - 0.36) = 9.2, normal (0.6, 0, -0.8).
  t, n = render.intersect_cylinder(np.array([0.6, 1.0, 0.0]), np.array([[0.0, 0.0, 1.0]]), **kw)
  np.testing.assert_allclose(t, [9.2])
  np.testing.assert_allclose(n[0], [0.6, 0.0, -0.8], atol=1e-12)
  # Rising ray: at the side (z = 9) y = 1 + 0.2 * 9 = 2.8 > y1 and it never comes down: miss.
  t, _ = render.intersect_cylinder(np.array([0.0, 1.0, 0.0]), np.array([[0.0, 0.2, 1.0]]), **kw)
  assert np.isinf(t).all()
  # Slightly rising ray hits the side at z = 9 where y = 1.45.
  t, _ = render.intersect_cylinder(np.array([0.0, 1.0, 0.0]), np.array([[0.0, 0.05, 1.0]]), **kw)
  np.testing.assert_allclose(t, [9.0])
  # From above, straight down onto the top cap (y = 2) from y = 5: t = 3 for |d| = 1, 1.5 for |d| = 2.
  t, n = render.intersect_cylinder(
    np.array([0.3, 5.0, 10.0]), np.array([[0.0, -1.0, 0.0], [0.0, -2.0, 0.0]]), **kw
  )
  np.testing.assert_allclose(t, [3.0, 1.5])
  np.testing.assert_allclose(n, [[0, 1, 0], [0, 1, 0]])


def test_intersect_ellipsoid_hand_values():
  c = (0.0, 0.0, 10.0)
  t, n = render.intersect_ellipsoid(np.zeros(3), np.array([[0.0, 0.0, 1.0]]), c, (1.0, 2.0, 3.0))
  np.testing.assert_allclose(t, [7.0])
  np.testing.assert_allclose(n[0], [0, 0, -1])
  t, n = render.intersect_ellipsoid(
    np.array([0.0, -5.0, 10.0]), np.array([[0.0, 1.0, 0.0]]), c, (1.0, 2.0, 3.0)
  )
  np.testing.assert_allclose(t, [3.0])
  np.testing.assert_allclose(n[0], [0, -1, 0])
  # Sphere of radius 2, ray at x = 1: z = 10 - sqrt(3), normal (1, 0, -sqrt(3)) / 2.
  t, n = render.intersect_ellipsoid(
    np.array([1.0, 0.0, 0.0]), np.array([[0.0, 0.0, 1.0]]), c, (2,) * 3
  )
  np.testing.assert_allclose(t, [10.0 - math.sqrt(3.0)])
  np.testing.assert_allclose(n[0], [0.5, 0.0, -math.sqrt(3.0) / 2])
  t, _ = render.intersect_ellipsoid(
    np.array([3.0, 0.0, 0.0]), np.array([[0.0, 0.0, 1.0]]), c, (2,) * 3
  )
  assert np.isinf(t).all()


def test_intersect_plane_hand_values():
  o = np.array([0.0, 1.5, 0.0])
  d = np.array([[0.0, -1.0, 1.0], [0.0, -0.5, 2.0], [0.0, 0.0, 1.0], [0.0, 1.0, 1.0]])
  t, n = render.intersect_plane(o, d, (0.0, 1.0, 0.0), 0.0)
  np.testing.assert_allclose(t[:2], [1.5, 3.0])
  assert np.isinf(t[2:]).all()
  np.testing.assert_allclose(n[:2], [[0, 1, 0], [0, 1, 0]])


# ------------------------------------------------------------------------------------------------
# A hand-built scene: exact depth / labels from the camera model.
# ------------------------------------------------------------------------------------------------


def _flat_layout(**kw):
  args = dict(
    lane_width=8.0,
    num_lanes=1,
    road_left=4.0,
    road_right=4.0,
    sidewalk_left=3.0,
    sidewalk_right=3.0,
    centre_double=False,
    dash_length=3.0,
    dash_period=9.0,
    dash_phase=0.0,
    line_width=0.15,
    crosswalk_z=float("nan"),
    crosswalk_length=4.0,
    street_end=60.0,
  )
  args.update(kw)
  return render.Layout(**args)


def _lighting():
  return render.sample_lighting(np.random.default_rng(0))


def test_render_scene_box_and_ground_exact():
  H, W, h = 31, 41, 1.5
  cam = render.make_camera(H, W, hfov_deg=90.0, cam_height=h)
  fx = (W / 2) / math.tan(math.radians(45.0))
  assert cam.fx == pytest.approx(fx) and cam.fy == pytest.approx(fx)
  assert (cam.cx, cam.cy) == (20.0, 15.0)
  objects = [
    render.SceneObject(
      render.GroundPlane(), ROAD, (0.3, 0.3, 0.3), "ground", (0.5, 0.5, 0.5), (0.6,)
    ),
    render.SceneObject(render.Box((-1.0, 0.0, 10.0), (1.0, 3.0, 12.0)), VEHICLE, (0.8, 0.1, 0.1)),
  ]
  far = 20.0  # the ground at row 16 (z = 30.75 m) lies beyond it
  f = render.render_scene(
    objects, cam, _flat_layout(), _lighting(), np.random.default_rng(1), far=far
  )
  # Centre pixel: optical axis hits the box front face z = 10.
  assert f.labels[15, 20] == VEHICLE
  assert f.depth[15, 20] == pytest.approx(10.0)
  assert f.hit_t[15, 20] == pytest.approx(10.0)
  # Box occupies columns with |u - cx| <= fx * 1 / 10 at z = 10 and rows from y = 3 m (above camera)
  # to where the bottom edge meets z = 10 (y = 0 below the camera).
  rows_box = [v for v in range(H) if -(3.0 - h) * fx / 10 <= v - 15 <= h * fx / 10]
  for v in rows_box:
    assert f.labels[v, 20] == VEHICLE
  # Ground rows (below the box, no roll / pitch): z = h * fy / (v - cy); beyond far -> depth 0.
  # The road is |x| <= 4 m (edge lines at the kerbs, +-0.075 m), then sidewalk.
  for v in range(16, H):
    for u in (0, 5, 35, 40):
      z = h * fx / (v - 15)
      x = (u - 20) / fx * z
      if abs(x) < 3.9:
        assert f.labels[v, u] == ROAD, (v, u)
      elif abs(x) > 4.1:
        assert f.labels[v, u] == SIDEWALK, (v, u)
      assert f.hit_t[v, u] == pytest.approx(z, rel=1e-12)
      if z < far:
        assert f.depth[v, u] == pytest.approx(z, rel=1e-6)
      else:
        assert f.depth[v, u] == 0.0
  # Top rows above the box: sky, depth 0.
  assert (f.labels[0] == SKY).all() and (f.depth[0] == 0).all()
  assert f.image.dtype == np.uint8 and f.image.shape == (H, W, 3)


def test_ground_labels_of_the_layout():
  lay = _flat_layout(
    lane_width=3.5,
    num_lanes=2,
    road_left=5.7,
    road_right=4.0,
    crosswalk_z=20.0,
    crosswalk_length=4.0,
  )
  lanemark = SSEGDEP_CLASS_NAMES.index("Lanemark")
  cases = [
    ((1.75, 1.0), ROAD),  # lane centre
    ((0.0, 1.0), lanemark),  # dashed centre line: z mod 9 = 1 < 3
    ((0.0, 5.0), ROAD),  # its gap: z mod 9 = 5
    ((3.5, 5.0), lanemark),  # edge lines at +-drive_half = +-3.5
    ((-3.5, 5.0), lanemark),
    ((-4.5, 5.0), ROAD),  # left parking strip
    ((4.5, 5.0), SIDEWALK),  # beyond the right kerb (4.0)
    ((-6.0, 5.0), SIDEWALK),
    ((-20.0, 5.0), SIDEWALK),
    ((-3.1, 22.0), lanemark),  # zebra stripe (|x| <= 3.5 - 0.3): (x + 3.5) mod 1 = 0.4 < 0.5
    ((-2.75, 22.0), ROAD),  # between stripes
    ((1.0, 18.7), lanemark),  # stop line 1.1-1.5 m before the crossing, right half
    ((-1.0, 18.7), ROAD),
  ]
  xz = np.array([c[0] for c in cases])
  got = lay.ground_labels(xz[:, 0], xz[:, 1])
  np.testing.assert_array_equal(got, [c[1] for c in cases])
  double = _flat_layout(
    lane_width=3.5, num_lanes=2, road_left=3.5, road_right=3.5, centre_double=True
  )
  got = double.ground_labels(np.array([0.0, 0.1, -0.1, 0.2]), np.array([5.0, 5.0, 5.0, 5.0]))
  np.testing.assert_array_equal(got, [ROAD, lanemark, lanemark, ROAD])


def test_culling_does_not_change_the_result():
  f = render.render_frame(36, 60, seed=5, split="train", index=2)
  t1, n1, i1, _ = render.raycast(f.objects, f.camera)
  t2, n2, i2, _ = render.raycast(f.objects, f.camera, cull=False)
  np.testing.assert_array_equal(i1, i2)
  np.testing.assert_array_equal(t1, t2)
  np.testing.assert_array_equal(n1, n2)


# ------------------------------------------------------------------------------------------------
# Random frames against an independent camera model.
# ------------------------------------------------------------------------------------------------


def _world_rays(cam, H, W):
  """Ray directions built from the camera angles without render.camera_rotation."""
  th, psi, phi = cam.pitch, cam.yaw, cam.roll
  forward = np.array([math.cos(th) * math.sin(psi), -math.sin(th), math.cos(th) * math.cos(psi)])
  right0 = np.array([math.cos(psi), 0.0, -math.sin(psi)])  # horizontal, perpendicular to forward
  down0 = np.cross(forward, right0)
  if down0[1] > 0:  # pick the perpendicular that points down
    down0 = -down0
  right = math.cos(phi) * right0 + math.sin(phi) * down0
  down = -math.sin(phi) * right0 + math.cos(phi) * down0
  u = (np.arange(W) - (W - 1) / 2) / cam.fx
  v = (np.arange(H) - (H - 1) / 2) / cam.fy
  return u[None, :, None] * right + v[:, None, None] * down + forward


@pytest.mark.parametrize("index", [0, 1, 2])
def test_random_frame_geometry(index):
  H, W = 48, 80
  f = render.render_frame(H, W, seed=11, split="validation", index=index)
  cam = f.camera
  # Intrinsics: fx = fy = (W / 2) / tan(80 deg / 2), centred principal point.
  fx = (W / 2) / math.tan(math.radians(40.0))
  np.testing.assert_allclose(cam.intrinsics, [fx, fx, (W - 1) / 2, (H - 1) / 2], rtol=1e-6)
  assert 1.3 < cam.position[1] < 1.75 and 0 <= cam.pitch < math.radians(4.01)
  rays = _world_rays(cam, H, W)
  h = cam.position[1]
  # Road pixels: exact intersection with the ground plane y = 0.
  road = f.labels == ROAD
  assert road.sum() > 0.1 * H * W
  z = -h / rays[..., 1][road]
  assert (z > 0).all()
  d = f.depth[road]
  np.testing.assert_allclose(d[d > 0], z[d > 0], rtol=2e-6)
  assert (z[d == 0] >= f.far).all()
  # Sky: no hit, depth 0, and the ray points above the horizon.
  sky = f.labels == SKY
  assert sky.any()
  assert (f.depth[sky] == 0).all() and (rays[..., 1][sky] > 0).all()
  # Everything: finite, in [0, far), labels 0..13, non-sky zeros only beyond the far limit.
  assert f.depth.dtype == np.float32 and np.isfinite(f.depth).all()
  assert (f.depth >= 0).all() and (f.depth < f.far).all()
  assert f.labels.dtype == np.uint8 and f.labels.max() < 14
  zero_hit = (f.depth == 0) & ~sky
  assert (f.hit_t[zero_hit] >= f.far).all()
  assert f.far == get_meta("synthetic_city").max_depth


def test_road_depth_matches_pitch_formula():
  """With yaw but no roll, road depth is h * fy / ((v - cy) cos(pitch) + fy sin(pitch)) at any column."""
  base = render.render_frame(40, 64, seed=2, split="train", index=4)
  pitch, h = math.radians(3.0), 1.55
  cam = render.make_camera(40, 64, hfov_deg=80.0, cam_height=h, pitch=pitch, yaw=0.05, x=1.7)
  f = render.render_scene(
    base.objects, cam, base.layout, base.lighting, np.random.default_rng(0), far=80.0
  )
  rows, cols = np.nonzero((f.labels == ROAD) & (f.depth > 0))
  assert len(rows) > 100
  v = rows - cam.cy
  expected = h * cam.fy / (v * math.cos(pitch) + cam.fy * math.sin(pitch))
  np.testing.assert_allclose(f.depth[rows, cols], expected, rtol=2e-6)


# ------------------------------------------------------------------------------------------------
# Determinism.
# ------------------------------------------------------------------------------------------------


def test_frames_are_deterministic_and_seed_dependent():
  a = render.render_frame(24, 40, seed=7, split="train", index=3)
  b = render.render_frame(24, 40, seed=7, split="train", index=3)
  for x, y in ((a.image, b.image), (a.depth, b.depth), (a.labels, b.labels)):
    np.testing.assert_array_equal(x, y)
  for other in (
    render.render_frame(24, 40, seed=8, split="train", index=3),
    render.render_frame(24, 40, seed=7, split="test", index=3),
    render.render_frame(24, 40, seed=7, split="train", index=4),
  ):
    assert not np.array_equal(a.depth, other.depth)
    assert not np.array_equal(a.image, other.image)


def test_parallel_rendering_matches_serial():
  jobs = [(16, 24, 3, "train", i, 80.0, 80.0) for i in range(3)]
  serial = list(scb.iter_rendered(jobs, 1))
  parallel = list(scb.iter_rendered(jobs, 2))
  for s, p in zip(serial, parallel, strict=True):
    for x, y in zip(s, p, strict=True):
      np.testing.assert_array_equal(x, y)


def test_frame_seed_and_errors():
  s1 = render.frame_seed(0, "train", 1).generate_state(4)
  np.testing.assert_array_equal(s1, render.frame_seed(0, "train", 1).generate_state(4))
  assert not np.array_equal(s1, render.frame_seed(0, "validation", 1).generate_state(4))
  with pytest.raises(ValueError, match="index"):
    render.frame_seed(0, "train", -1)
  with pytest.raises(ValueError, match="hfov_deg"):
    render.make_camera(8, 8, hfov_deg=180.0, cam_height=1.5)
  with pytest.raises(ValueError, match="num_train"):
    scb.SyntheticCityConfig(name="bad", num_train=-1)
  with pytest.raises(ValueError, match="num_workers"):
    scb.SyntheticCity(config="tiny", num_workers=0)


# ------------------------------------------------------------------------------------------------
# The TFDS builder (tiny config, array_record, no TensorFlow).
# ------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tiny_build(tmp_path_factory):
  data_dir = tmp_path_factory.mktemp("synthetic_city")
  builder = get_builder_class("synthetic_city")(config="tiny", data_dir=str(data_dir))
  builder.download_and_prepare()
  return builder


def test_builder_registration():
  cls = get_builder_class("synthetic_city")
  assert cls is scb.SyntheticCity and cls.name == "synthetic_city"
  assert scb.Builder is scb.SyntheticCity
  assert [c.name for c in cls.BUILDER_CONFIGS] == ["default", "tiny"]
  cfg = {c.name: c for c in cls.BUILDER_CONFIGS}
  assert (cfg["default"].height, cfg["default"].width) == get_meta("synthetic_city").native_size
  assert (cfg["tiny"].height, cfg["tiny"].width) == (48, 80)


def test_tiny_build_reads_back(tiny_build):
  meta = get_meta("synthetic_city")
  assert str(tiny_build.info.file_format.value) == "array_record"
  counts = {"train": 16, "validation": 8, "test": 8}
  seen_classes = set()
  fx = 40 / math.tan(math.radians(40.0))
  for split, n in counts.items():
    source = tiny_build.as_data_source(split)
    assert len(source) == n
    names = set()
    for i in range(n):
      ex = source[i]
      assert ex["image"].dtype == np.uint8 and ex["image"].shape == (48, 80, 3)
      assert ex["depth"].dtype == np.float32 and ex["depth"].shape == (48, 80)
      assert ex["segmentation"].dtype == np.uint8 and ex["segmentation"].shape == (48, 80, 1)
      assert bool(ex["has_depth"]) and bool(ex["has_segmentation"])
      np.testing.assert_allclose(ex["intrinsics"], [fx, fx, 39.5, 23.5], rtol=1e-6)
      depth, seg = ex["depth"], ex["segmentation"][..., 0]
      assert np.isfinite(depth).all() and depth.min() >= 0 and depth.max() < meta.max_depth
      assert seg.max() < meta.num_classes
      assert (depth[seg == SKY] == 0).all()
      seen_classes.update(np.unique(seg).tolist())
      name = ex["file_name"]
      name = name.decode() if isinstance(name, bytes) else str(name)
      names.add(name)
    assert names == {f"{split}_{i:05d}" for i in range(n)}
  assert seen_classes == set(range(meta.num_classes)), sorted(set(range(14)) - seen_classes)


def test_stored_example_equals_rendered_frame(tiny_build):
  source = tiny_build.as_data_source("validation")
  by_name = {}
  for i in range(len(source)):
    ex = source[i]
    name = ex["file_name"]
    by_name[name.decode() if isinstance(name, bytes) else str(name)] = ex
  cfg = tiny_build.builder_config
  for index in (0, 5):
    f = render.render_frame(48, 80, seed=cfg.seed, split="validation", index=index)
    ex = by_name[f"validation_{index:05d}"]
    np.testing.assert_array_equal(ex["image"], f.image)
    np.testing.assert_array_equal(ex["depth"], f.depth)
    np.testing.assert_array_equal(ex["segmentation"][..., 0], f.labels)


def test_custom_config_skips_empty_split(tmp_path):
  cfg = scb.SyntheticCityConfig(
    name="custom", height=16, width=24, num_train=2, num_validation=0, num_test=1, seed=4
  )
  builder = scb.SyntheticCity(config=cfg, data_dir=str(tmp_path))
  builder.download_and_prepare()
  assert {k: v.num_examples for k, v in builder.info.splits.items()} == {"train": 2, "test": 1}
  ex = builder.as_data_source("test")[0]
  assert ex["image"].shape == (16, 24, 3)
  np.testing.assert_array_equal(
    ex["depth"], render.render_frame(16, 24, seed=4, split="test", index=0).depth
  )
