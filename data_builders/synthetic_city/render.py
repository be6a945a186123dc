"""Numpy ray caster for the procedural ``synthetic_city`` street scenes.

Every pixel's ray is intersected with analytic primitives (a ground plane, axis-aligned boxes, vertical
cylinders and axis-aligned ellipsoids); a z-buffer keeps the nearest hit. Depth and labels are therefore
exact at pixel centres, and the RGB image is shaded from the same hits (Lambertian sun + sky ambient,
procedural textures, distance haze, sky gradient, sensor noise).

Coordinate frames (all lengths in metres):

* World: ``X`` right (across the street), ``Y`` up, ``Z`` forward (along the street); the ground is ``Y = 0``.
  (This frame is left-handed, like the camera's with ``y`` flipped; rotations are plain matrices, so
  nothing depends on handedness.)
* Camera (OpenCV): ``x`` right, ``y`` down, ``z`` forward (optical axis). Pixel ``(u, v)`` = (column, row);
  its centre ray in camera coordinates is ``((u - cx) / fx, (v - cy) / fy, 1)``. Because that ray has
  camera-``z`` component 1, the ray parameter ``t`` of a hit *is* its planar depth ``z`` (metres along the
  optical axis), which is what is stored.

Far limit: hits with planar depth ``>= far`` (default 80 m = ``get_meta('synthetic_city').max_depth``) keep
their label and colour but get depth 0 (invalid). A row of backdrop buildings closes the street at 45-75 m,
so this only affects the odd ray through a gap between buildings. Sky (no hit) has label Sky and depth 0.

Determinism: :func:`render_frame` seeds a ``numpy.random.Generator`` from ``(seed, split, index)``
(:func:`frame_seed`), so each frame is reproducible on its own.
"""

from __future__ import annotations

import dataclasses
import math
import zlib
from collections.abc import Sequence

import numpy as np

from semdepth_jax.data.meta import SSEGDEP_CLASS_NAMES

# Training ids of the 14 SSegDep-Net classes (model_spec §9.1), in semdepth_jax.data.meta order.
MISC, SKY, BUILDING, ROAD, SIDEWALK, FENCE, VEGETATION, POLE = range(8)
VEHICLE, SIGN, PEDESTRIAN, CYCLIST, LANEMARK, TRAFFIC_LIGHT = range(8, 14)
NUM_CLASSES = 14
_EXPECTED_NAMES = (
  "Miscellaneous", "Sky", "Building", "Road", "Sidewalk", "Fence", "Vegetation", "Pole", "Vehicle",
  "Sign", "Pedestrian", "Cyclist", "Lanemark", "Traffic light",
)  # fmt: skip
if tuple(SSEGDEP_CLASS_NAMES) != _EXPECTED_NAMES:
  raise ImportError(
    "data_builders/synthetic_city/render.py: semdepth_jax.data.meta.SSEGDEP_CLASS_NAMES changed; "
    f"expected {_EXPECTED_NAMES}, got {tuple(SSEGDEP_CLASS_NAMES)}"
  )

DEFAULT_FAR = 80.0
"""Far limit in metres: hits at planar depth >= this are stored as depth 0 (see module docstring)."""

_T_MIN = 1e-9
_NEAR = 0.05  # near plane (m) used only for screen-space culling of primitives.


# ----------------------------------------------------------------------------------------------------
# Ray-primitive intersections. All take an origin (3,) and directions (N, 3) (any length, not normalised)
# and return (t, normal): t (N,) float64 with p = origin + t * dirs at the first hit in front of the
# origin (t > 0), np.inf where the ray misses; normal (N, 3) unit outward normal at the hit (zeros on a miss).
# ----------------------------------------------------------------------------------------------------


def _as_rays(origin, dirs) -> tuple[np.ndarray, np.ndarray]:
  o = np.asarray(origin, np.float64).reshape(3)
  d = np.asarray(dirs, np.float64)
  if d.ndim != 2 or d.shape[1] != 3:
    raise ValueError(f"render.py: ray directions must have shape (N, 3), got {d.shape}")
  return o, d


def intersect_plane(origin, dirs, normal, offset: float) -> tuple[np.ndarray, np.ndarray]:
  """Intersects rays with the plane ``normal . p = offset``.

  Args:
    origin: (3,) ray origin (metres).
    dirs: (N, 3) ray directions (any non-zero length).
    normal: (3,) plane normal (any non-zero length; normalised here).
    offset: plane offset so that ``normal_unit . p = offset`` (metres, along the normalised normal).

  Returns:
    ``t`` (N,) float64 ray parameter of the hit (``inf`` on a miss: parallel or behind the origin) and
    ``normals`` (N, 3): the unit plane normal, flipped to face the incoming ray.
  """
  o, d = _as_rays(origin, dirs)
  n = np.asarray(normal, np.float64).reshape(3)
  n = n / np.linalg.norm(n)
  nd = d @ n
  with np.errstate(divide="ignore", invalid="ignore"):
    t = (offset - float(n @ o)) / nd
  t = np.where(np.isfinite(t) & (t > _T_MIN), t, np.inf)
  side = np.where(nd > 0, -1.0, 1.0)
  normals = np.where(np.isfinite(t)[:, None], side[:, None] * n[None, :], 0.0)
  return t, normals


def intersect_box(origin, dirs, lo, hi) -> tuple[np.ndarray, np.ndarray]:
  """Intersects rays with the axis-aligned box ``lo <= p <= hi`` (slab method).

  Only entering hits count: a ray whose origin is inside the box reports a miss.

  Args:
    origin: (3,) ray origin (metres).
    dirs: (N, 3) ray directions.
    lo: (3,) minimum corner (metres).
    hi: (3,) maximum corner, ``lo < hi`` component-wise (metres).

  Returns:
    ``t`` (N,) (``inf`` on a miss) and ``normals`` (N, 3): the outward normal of the entered face.
  """
  o, d = _as_rays(origin, dirs)
  lo = np.asarray(lo, np.float64).reshape(3)
  hi = np.asarray(hi, np.float64).reshape(3)
  zero = d == 0.0
  with np.errstate(divide="ignore", invalid="ignore"):
    inv = 1.0 / d
    t1 = (lo - o) * inv
    t2 = (hi - o) * inv
  tmin = np.minimum(t1, t2)
  tmax = np.maximum(t1, t2)
  if zero.any():
    inside = (o >= lo) & (o <= hi)  # (3,)
    tmin = np.where(zero, np.where(inside, -np.inf, np.inf), tmin)
    tmax = np.where(zero, np.where(inside, np.inf, -np.inf), tmax)
  axis = np.argmax(tmin, axis=1)
  t_near = np.take_along_axis(tmin, axis[:, None], axis=1)[:, 0]
  t_far = np.min(tmax, axis=1)
  hit = (t_near <= t_far) & (t_near > _T_MIN)
  t = np.where(hit, t_near, np.inf)
  normals = np.zeros_like(d)
  rows = np.nonzero(hit)[0]
  ax = axis[rows]
  normals[rows, ax] = -np.sign(d[rows, ax])
  return t, normals


def intersect_cylinder(
  origin, dirs, center_x: float, center_z: float, radius: float, y0: float, y1: float
) -> tuple[np.ndarray, np.ndarray]:
  """Intersects rays with a closed vertical (``Y``-axis) cylinder with flat caps.

  The solid is ``(x - center_x)^2 + (z - center_z)^2 <= radius^2``, ``y0 <= y <= y1``. Only entering hits
  count (an origin inside the solid reports a miss).

  Args:
    origin: (3,) ray origin (metres).
    dirs: (N, 3) ray directions.
    center_x: axis world X (metres).
    center_z: axis world Z (metres).
    radius: > 0 (metres).
    y0: bottom height (metres).
    y1: top height, ``y0 < y1`` (metres).

  Returns:
    ``t`` (N,) (``inf`` on a miss) and ``normals`` (N, 3): radial on the side, (0, +-1, 0) on the caps.
  """
  o, d = _as_rays(origin, dirs)
  ox, oz = o[0] - center_x, o[2] - center_z
  with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
    a = d[:, 0] ** 2 + d[:, 2] ** 2
    b = 2.0 * (ox * d[:, 0] + oz * d[:, 2])
    c = ox * ox + oz * oz - radius * radius
    disc = b * b - 4.0 * a * c
    t_side = (-b - np.sqrt(disc)) / (2.0 * a)
    y_side = o[1] + t_side * d[:, 1]
    ok_side = (a > 1e-18) & (disc >= 0) & (t_side > _T_MIN) & (y_side >= y0) & (y_side <= y1)
    t_side = np.where(ok_side, t_side, np.inf)
    # Caps: only when the origin is above the top (top cap) or below the bottom (bottom cap).
    cap_y = y1 if o[1] > y1 else y0
    t_cap = (cap_y - o[1]) / d[:, 1]
    px = ox + t_cap * d[:, 0]
    pz = oz + t_cap * d[:, 2]
    outside_y = (o[1] > y1) or (o[1] < y0)
    ok_cap = (
      outside_y & np.isfinite(t_cap) & (t_cap > _T_MIN) & (px * px + pz * pz <= radius * radius)
    )
  t_cap = np.where(ok_cap, t_cap, np.inf)
  t = np.minimum(t_side, t_cap)
  normals = np.zeros_like(d)
  side = np.isfinite(t_side) & (t_side <= t_cap)
  cap = np.isfinite(t_cap) & ~side
  ts = t_side[side]
  normals[side, 0] = (ox + ts * d[side, 0]) / radius
  normals[side, 2] = (oz + ts * d[side, 2]) / radius
  normals[cap, 1] = 1.0 if cap_y == y1 else -1.0
  return t, normals


def intersect_ellipsoid(origin, dirs, center, radii) -> tuple[np.ndarray, np.ndarray]:
  """Intersects rays with the axis-aligned ellipsoid ``sum(((p - center) / radii)^2) <= 1``.

  A sphere is ``radii = (r, r, r)``. Only entering hits count.

  Args:
    origin: (3,) ray origin (metres).
    dirs: (N, 3) ray directions.
    center: (3,) centre (metres).
    radii: (3,) semi-axes along X, Y, Z, all > 0 (metres).

  Returns:
    ``t`` (N,) (``inf`` on a miss) and ``normals`` (N, 3): unit outward surface normals.
  """
  o, d = _as_rays(origin, dirs)
  center = np.asarray(center, np.float64).reshape(3)
  radii = np.asarray(radii, np.float64).reshape(3)
  os_ = (o - center) / radii
  ds = d / radii
  with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
    a = np.sum(ds * ds, axis=1)
    b = 2.0 * (ds @ os_)
    c = float(os_ @ os_) - 1.0
    disc = b * b - 4.0 * a * c
    t = (-b - np.sqrt(disc)) / (2.0 * a)
    ok = (disc >= 0) & (a > 0) & (t > _T_MIN) & (c > 0)
  t = np.where(ok, t, np.inf)
  normals = np.zeros_like(d)
  rows = np.nonzero(ok)[0]
  p = o + t[rows, None] * d[rows]
  g = (p - center) / (radii * radii)
  normals[rows] = g / np.linalg.norm(g, axis=1, keepdims=True)
  return t, normals


# ----------------------------------------------------------------------------------------------------
# Shapes, materials, scene objects.
# ----------------------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class GroundPlane:
  """The ground ``Y = 0`` (infinite); its label comes from the street layout at the hit's (X, Z)."""

  def intersect(self, origin, dirs):
    """See :func:`intersect_plane`."""
    return intersect_plane(origin, dirs, (0.0, 1.0, 0.0), 0.0)

  def bounds(self):
    """None: unbounded (never culled)."""
    return None


@dataclasses.dataclass(frozen=True)
class Box:
  """Axis-aligned box ``lo <= p <= hi`` (metres)."""

  lo: tuple[float, float, float]
  hi: tuple[float, float, float]

  def intersect(self, origin, dirs):
    """See :func:`intersect_box`."""
    return intersect_box(origin, dirs, self.lo, self.hi)

  def bounds(self):
    """Axis-aligned bounding box (lo, hi)."""
    return np.asarray(self.lo, np.float64), np.asarray(self.hi, np.float64)


@dataclasses.dataclass(frozen=True)
class Cylinder:
  """Vertical closed cylinder: axis at (center_x, center_z), ``y0 <= Y <= y1`` (metres)."""

  center_x: float
  center_z: float
  radius: float
  y0: float
  y1: float

  def intersect(self, origin, dirs):
    """See :func:`intersect_cylinder`."""
    return intersect_cylinder(
      origin, dirs, self.center_x, self.center_z, self.radius, self.y0, self.y1
    )

  def bounds(self):
    """Axis-aligned bounding box (lo, hi)."""
    r = self.radius
    return (
      np.array([self.center_x - r, self.y0, self.center_z - r]),
      np.array([self.center_x + r, self.y1, self.center_z + r]),
    )


@dataclasses.dataclass(frozen=True)
class Ellipsoid:
  """Axis-aligned ellipsoid (a sphere when the radii are equal), metres."""

  center: tuple[float, float, float]
  radii: tuple[float, float, float]

  def intersect(self, origin, dirs):
    """See :func:`intersect_ellipsoid`."""
    return intersect_ellipsoid(origin, dirs, self.center, self.radii)

  def bounds(self):
    """Axis-aligned bounding box (lo, hi)."""
    c = np.asarray(self.center, np.float64)
    r = np.asarray(self.radii, np.float64)
    return c - r, c + r


Shape = GroundPlane | Box | Cylinder | Ellipsoid

# Texture kinds (shading only; they never change depth or labels).
TEXTURES = ("ground", "plain", "facade", "foliage", "vehicle", "fence", "sign", "traffic_light")
_NUM_PARAMS = 8


@dataclasses.dataclass(frozen=True)
class SceneObject:
  """One primitive of a scene.

  Attributes:
    shape: the geometry.
    label: training id 0..13 (ignored for the ground, whose label comes from the layout).
    color: (3,) base colour, display RGB in [0, 1].
    texture: one of ``TEXTURES``.
    color2: (3,) secondary colour (windows, bars, borders, lamps), display RGB in [0, 1].
    params: up to 8 texture parameters (meaning depends on ``texture``).
  """

  shape: Shape
  label: int
  color: tuple[float, float, float]
  texture: str = "plain"
  color2: tuple[float, float, float] = (0.0, 0.0, 0.0)
  params: tuple[float, ...] = ()


@dataclasses.dataclass(frozen=True)
class Camera:
  """Pinhole camera (OpenCV axes) placed in the world.

  Attributes:
    height, width: image size in pixels.
    fx, fy, cx, cy: intrinsics in pixels (``cx = (W - 1) / 2``, ``cy = (H - 1) / 2``).
    position: (3,) optical centre in world metres (``position[1]`` = height above the ground).
    rotation: (3, 3) camera-to-world rotation; its columns are the camera x (right), y (down) and
      z (forward) axes in world coordinates.
    pitch, yaw, roll: the angles (radians) ``rotation`` was built from: pitch > 0 tilts the view down,
      yaw > 0 turns it right (towards +X), roll turns the image about the optical axis.
  """

  height: int
  width: int
  fx: float
  fy: float
  cx: float
  cy: float
  position: np.ndarray
  rotation: np.ndarray
  pitch: float = 0.0
  yaw: float = 0.0
  roll: float = 0.0

  @property
  def intrinsics(self) -> np.ndarray:
    """float32 (4,) = (fx, fy, cx, cy) in pixels."""
    return np.array([self.fx, self.fy, self.cx, self.cy], np.float32)

  def ray_directions(self) -> np.ndarray:
    """World-space ray directions of all pixel centres, (H, W, 3) float64, camera-z component 1."""
    u = (np.arange(self.width, dtype=np.float64) - self.cx) / self.fx
    v = (np.arange(self.height, dtype=np.float64) - self.cy) / self.fy
    cam = np.stack(np.broadcast_arrays(u[None, :], v[:, None], np.ones((1, 1))), axis=-1)
    return cam @ self.rotation.T

  def to_camera(self, points: np.ndarray) -> np.ndarray:
    """World points (N, 3) -> camera coordinates (N, 3) (x right, y down, z forward; metres)."""
    return (np.asarray(points, np.float64) - self.position) @ self.rotation


def camera_rotation(pitch: float, yaw: float, roll: float) -> np.ndarray:
  """Camera-to-world rotation (3, 3) for the world/camera frames of the module docstring.

  ``R = R_y(yaw) @ R_x(pitch) @ B @ R_z(roll)`` where ``B`` maps camera (x right, y down, z forward) to
  world (X right, Y up, Z forward), ``R_x(pitch)`` tilts the optical axis down by ``pitch`` and
  ``R_y(yaw)`` turns it towards +X by ``yaw``; ``R_z(roll)`` rotates the image plane. Angles in radians.
  """
  cp, sp = math.cos(pitch), math.sin(pitch)
  cy_, sy_ = math.cos(yaw), math.sin(yaw)
  cr, sr = math.cos(roll), math.sin(roll)
  rx = np.array([[1, 0, 0], [0, cp, -sp], [0, sp, cp]], np.float64)
  ry = np.array([[cy_, 0, sy_], [0, 1, 0], [-sy_, 0, cy_]], np.float64)
  rz = np.array([[cr, -sr, 0], [sr, cr, 0], [0, 0, 1]], np.float64)
  base = np.diag([1.0, -1.0, 1.0])
  return ry @ rx @ base @ rz


def make_camera(
  height: int,
  width: int,
  *,
  hfov_deg: float,
  cam_height: float,
  pitch: float = 0.0,
  yaw: float = 0.0,
  roll: float = 0.0,
  x: float = 0.0,
  z: float = 0.0,
) -> Camera:
  """Builds a :class:`Camera` with ``fx = fy = (W / 2) / tan(hfov / 2)`` and a centred principal point.

  Args:
    height: image height in pixels (>= 1).
    width: image width in pixels (>= 1).
    hfov_deg: horizontal field of view in degrees, in (0, 180).
    cam_height: optical centre height above the ground (metres, > 0).
    pitch: radians, > 0 looks down (see :class:`Camera`).
    yaw: radians, > 0 looks towards +X.
    roll: radians, rotation of the image about the optical axis.
    x: optical centre world X (metres).
    z: optical centre world Z (metres).

  Raises:
    ValueError: non-positive size or height, or a field of view outside (0, 180).
  """
  if height < 1 or width < 1:
    raise ValueError(f"render.py: image size must be >= 1, got {height}x{width}")
  if not 0.0 < hfov_deg < 180.0:
    raise ValueError(f"render.py: hfov_deg must be in (0, 180), got {hfov_deg}")
  if cam_height <= 0:
    raise ValueError(f"render.py: cam_height must be > 0 metres, got {cam_height}")
  f = (width / 2.0) / math.tan(math.radians(hfov_deg) / 2.0)
  return Camera(
    height=height,
    width=width,
    fx=f,
    fy=f,
    cx=(width - 1) / 2.0,
    cy=(height - 1) / 2.0,
    position=np.array([x, cam_height, z], np.float64),
    rotation=camera_rotation(pitch, yaw, roll),
    pitch=pitch,
    yaw=yaw,
    roll=roll,
  )


@dataclasses.dataclass(frozen=True)
class Layout:
  """Street layout: what the ground plane shows where (world X/Z, metres).

  The road covers ``-road_left <= X <= road_right``; driving lanes (``num_lanes`` x ``lane_width``) are
  centred on ``X = 0`` and parking strips fill the rest. Sidewalks run from the kerbs outwards over
  ``sidewalk_left`` / ``sidewalk_right``; ground beyond them (setbacks, alleys) is paved, label Sidewalk.

  Attributes:
    lane_width: metres.
    num_lanes: driving lanes.
    road_left, road_right: kerb distances from ``X = 0`` (metres, > 0).
    sidewalk_left, sidewalk_right: sidewalk widths (metres).
    centre_double: True for a double solid centre line, else dashed.
    dash_length, dash_period, dash_phase: dashed lane lines (metres along Z).
    line_width: painted line width (metres).
    crosswalk_z: start Z of a zebra crossing or NaN for none.
    crosswalk_length: its extent along Z (metres).
    street_end: Z of the backdrop buildings that close the street (metres).
  """

  lane_width: float
  num_lanes: int
  road_left: float
  road_right: float
  sidewalk_left: float
  sidewalk_right: float
  centre_double: bool
  dash_length: float
  dash_period: float
  dash_phase: float
  line_width: float
  crosswalk_z: float
  crosswalk_length: float
  street_end: float

  @property
  def drive_half(self) -> float:
    """Half width of the driving lanes (metres)."""
    return self.num_lanes * self.lane_width / 2.0

  def kerb(self, side: int) -> float:
    """Signed X of the kerb on ``side`` (-1 left, +1 right)."""
    return -self.road_left if side < 0 else self.road_right

  def sidewalk_outer(self, side: int) -> float:
    """Signed X of the outer edge of the sidewalk on ``side``."""
    return (
      -(self.road_left + self.sidewalk_left) if side < 0 else self.road_right + self.sidewalk_right
    )

  def ground_labels(self, x: np.ndarray, z: np.ndarray) -> np.ndarray:
    """Labels (Road / Sidewalk / Lanemark) of ground points at world ``x``, ``z`` (same shapes), uint8."""
    x = np.asarray(x, np.float64)
    z = np.asarray(z, np.float64)
    on_road = (x >= -self.road_left) & (x <= self.road_right)
    lab = np.where(on_road, ROAD, SIDEWALK).astype(np.uint8)
    hw = self.line_width / 2.0
    dh = self.drive_half
    mark = np.zeros(x.shape, bool)
    # Solid edge lines between the driving lanes and the parking strips / kerbs.
    for xe in (-dh, dh):
      mark |= np.abs(x - xe) <= hw
    dashed = np.mod(z + self.dash_phase, self.dash_period) < self.dash_length
    for k in range(1, self.num_lanes):
      xb = -dh + k * self.lane_width
      if 2 * k == self.num_lanes and self.centre_double:
        mark |= np.abs(np.abs(x - xb) - 1.5 * hw) <= hw / 2.0 + 1e-12
      else:
        mark |= (np.abs(x - xb) <= hw) & dashed
    if np.isfinite(self.crosswalk_z):
      z0, z1 = self.crosswalk_z, self.crosswalk_z + self.crosswalk_length
      in_cw = (z >= z0) & (z <= z1) & (np.abs(x) <= dh - 0.3)
      mark |= in_cw & (np.mod(x + dh, 1.0) < 0.5)
      stop = (z >= z0 - 1.5) & (z <= z0 - 1.1) & (x >= 0.0) & (x <= dh)
      mark |= stop
    return np.where(on_road & mark, LANEMARK, lab).astype(np.uint8)


@dataclasses.dataclass(frozen=True)
class Lighting:
  """Sun, sky and camera response of one frame (display RGB in [0, 1])."""

  sun_dir: np.ndarray  # (3,) unit vector towards the sun (world).
  sun_strength: float
  ambient: float
  sky_zenith: np.ndarray
  sky_horizon: np.ndarray
  cloud_cover: float
  visibility: float  # haze e-folding distance (metres).
  exposure: float
  noise_sigma: float  # sensor noise std in [0, 1] units.


@dataclasses.dataclass
class Frame:
  """One rendered frame and everything needed to check it.

  Attributes:
    image: uint8 (H, W, 3) RGB.
    depth: float32 (H, W) planar depth z in metres; 0 = sky or beyond ``far``.
    labels: uint8 (H, W) training ids 0..13.
    camera: the :class:`Camera` (intrinsics, pose and angles).
    layout: the :class:`Layout` of the ground.
    objects: the scene's :class:`SceneObject` list (index 0 is the ground plane).
    lighting: the :class:`Lighting`.
    far: the far limit (metres) used for ``depth``.
    hit_t: float64 (H, W) planar depth of the nearest hit before the far cut (``inf`` for sky).
    object_index: int32 (H, W) index into ``objects`` of the nearest hit (-1 for sky).
  """

  image: np.ndarray
  depth: np.ndarray
  labels: np.ndarray
  camera: Camera
  layout: Layout
  objects: list[SceneObject]
  lighting: Lighting
  far: float
  hit_t: np.ndarray
  object_index: np.ndarray


# ----------------------------------------------------------------------------------------------------
# Colours and noise.
# ----------------------------------------------------------------------------------------------------


def _hsv(rng: np.random.Generator, h, s, v) -> tuple[float, float, float]:
  hh = rng.uniform(*h) % 1.0
  ss = rng.uniform(*s)
  vv = rng.uniform(*v)
  i = int(hh * 6.0) % 6
  f = hh * 6.0 - int(hh * 6.0)
  p, q, t = vv * (1 - ss), vv * (1 - f * ss), vv * (1 - (1 - f) * ss)
  rgb = [(vv, t, p), (q, vv, p), (p, vv, t), (p, q, vv), (t, p, vv), (vv, p, q)][i]
  return tuple(float(c) for c in rgb)


# Per-class colour families (hue, saturation, value ranges); families overlap across classes on purpose.
_GREY = ((0.0, 1.0), (0.0, 0.08), (0.2, 0.75))
_FAMILIES = {
  "building": [
    _GREY,
    ((0.07, 0.14), (0.15, 0.45), (0.5, 0.9)),
    ((0.0, 0.05), (0.4, 0.65), (0.35, 0.65)),
    ((0.0, 1.0), (0.08, 0.3), (0.55, 0.9)),
  ],
  "vehicle": [((0.0, 1.0), (0.0, 0.9), (0.1, 0.95)), _GREY, ((0.0, 1.0), (0.0, 0.1), (0.05, 0.2))],
  "fence": [_GREY, ((0.05, 0.1), (0.3, 0.6), (0.3, 0.6)), ((0.3, 0.42), (0.3, 0.6), (0.2, 0.5))],
  "vegetation": [
    ((0.17, 0.3), (0.35, 0.8), (0.2, 0.6)),
    ((0.25, 0.4), (0.35, 0.8), (0.15, 0.5)),
    ((0.2, 0.35), (0.3, 0.7), (0.2, 0.55)),
    ((0.05, 0.15), (0.4, 0.8), (0.35, 0.7)),
  ],
  "pole": [_GREY, ((0.33, 0.45), (0.3, 0.5), (0.15, 0.35)), ((0.0, 1.0), (0.0, 0.1), (0.05, 0.2))],
  "sign": [
    ((0.57, 0.65), (0.6, 0.9), (0.5, 0.85)),
    ((0.98, 1.02), (0.7, 0.95), (0.6, 0.9)),
    ((0.12, 0.16), (0.7, 0.95), (0.7, 0.95)),
    ((0.3, 0.4), (0.6, 0.9), (0.35, 0.6)),
    ((0.0, 1.0), (0.0, 0.05), (0.8, 0.95)),
  ],
  "light": [((0.0, 1.0), (0.0, 0.1), (0.05, 0.25)), ((0.12, 0.15), (0.7, 0.9), (0.6, 0.9)), _GREY],
  "clothes": [((0.0, 1.0), (0.0, 0.8), (0.08, 0.9)), _GREY],
  "skin": [((0.04, 0.09), (0.25, 0.6), (0.3, 0.9))],
  "misc": [((0.0, 1.0), (0.0, 0.8), (0.15, 0.8)), _GREY],
  "road": [((0.0, 1.0), (0.0, 0.06), (0.16, 0.38))],
  "sidewalk": [((0.05, 0.13), (0.0, 0.15), (0.4, 0.72)), _GREY],
}


def _color(rng: np.random.Generator, family: str) -> tuple[float, float, float]:
  fams = _FAMILIES[family]
  return _hsv(rng, *fams[int(rng.integers(len(fams)))])


def _noise(tile: np.ndarray, x: np.ndarray, y: np.ndarray) -> np.ndarray:
  """Bilinear, wrapping lookup of a random square tile (side a power of two): value noise in [0, 1]."""
  n = tile.shape[0]
  flat = tile.ravel()
  x0 = np.floor(x)
  y0 = np.floor(y)
  fx = x - x0
  fy = y - y0
  fx = fx * fx * (3 - 2 * fx)
  fy = fy * fy * (3 - 2 * fy)
  i0 = x0.astype(np.int64) & (n - 1)
  j0 = (y0.astype(np.int64) & (n - 1)) * n
  i1 = (i0 + 1) & (n - 1)
  j1 = (j0 + n) & (n * n - 1)
  a = flat.take(j0 + i0)
  a += (flat.take(j0 + i1) - a) * fx
  b = flat.take(j1 + i0)
  b += (flat.take(j1 + i1) - b) * fx
  return a + (b - a) * fy


def _fbm(tile: np.ndarray, x: np.ndarray, y: np.ndarray, octaves: int = 3) -> np.ndarray:
  total = np.zeros(np.shape(x))
  amp, freq, norm = 1.0, 1.0, 0.0
  for o in range(octaves):
    total += amp * _noise(tile, x * freq + 17.3 * o, y * freq + 5.1 * o)
    norm += amp
    amp *= 0.5
    freq *= 2.03
  return total / norm


def _cell_random(tile: np.ndarray, i: np.ndarray, j: np.ndarray) -> np.ndarray:
  """A random value in [0, 1) per integer cell (i, j) (for per-window variation)."""
  n = tile.shape[0]
  ii = (i.astype(np.int64) * 7 + j.astype(np.int64) * 3) % n
  jj = (j.astype(np.int64) * 13 + i.astype(np.int64) * 5 + 11) % n
  return tile[jj, ii]


# ----------------------------------------------------------------------------------------------------
# Scene generation.
# ----------------------------------------------------------------------------------------------------


class _Builder:
  """Accumulates scene objects and keeps simple occupancy records to avoid overlaps."""

  def __init__(self, rng: np.random.Generator, layout: Layout, cam_x: float):
    self.rng = rng
    self.layout = layout
    self.cam_x = cam_x
    self.objects: list[SceneObject] = []
    self.discs: list[tuple[float, float, float]] = []  # (x, z, radius) on sidewalks.
    self.lane_spans: list[tuple[float, float, float, float]] = []  # (x0, x1, z0, z1) in the road.

  def add(self, shape, label, color, texture="plain", color2=(0.0, 0.0, 0.0), params=()):
    self.objects.append(SceneObject(shape, int(label), color, texture, color2, tuple(params)))

  def free_disc(self, x, z, r) -> bool:
    return all((x - a) ** 2 + (z - b) ** 2 >= (r + c) ** 2 for a, b, c in self.discs)

  def place_on_sidewalk(self, side, z_range, radius, where=(0.15, 0.85), tries=25):
    """Returns (x, z) on the sidewalk of ``side`` free of other sidewalk objects, or None."""
    lay = self.layout
    k, o = lay.kerb(side), lay.sidewalk_outer(side)
    for _ in range(tries):
      f = self.rng.uniform(*where)
      x = k + f * (o - k)
      z = self.rng.uniform(*z_range)
      if self.free_disc(x, z, radius):
        self.discs.append((x, z, radius))
        return x, z
    return None

  def free_span(self, x0, x1, z0, z1) -> bool:
    for a0, a1, b0, b1 in self.lane_spans:
      if x0 < a1 and a0 < x1 and z0 < b1 + 1.0 and b0 < z1 + 1.0:
        return False
    return True


def _add_building(b: _Builder, x0, x1, z0, z1, height):
  rng = b.rng
  wall = _color(rng, "building")
  glass = _hsv(rng, (0.5, 0.65), (0.05, 0.4), (0.08, 0.35))
  floor_h = rng.uniform(2.8, 3.8)
  col_w = rng.uniform(1.6, 3.6)
  params = (
    floor_h,
    col_w,
    rng.uniform(0.35, 0.75),  # window width fraction
    rng.uniform(0.35, 0.65),  # window height fraction
    rng.uniform(3.0, 4.5) if rng.random() < 0.7 else 0.0,  # shop floor height (0 = none)
    height,
    rng.uniform(0.0, 10.0),  # column phase
    rng.uniform(0.0, 1.0),  # lit-window fraction
  )
  b.add(Box((x0, 0.0, z0), (x1, height, z1)), BUILDING, wall, "facade", glass, params)


def _add_buildings(b: _Builder, side: int):
  rng, lay = b.rng, b.layout
  outer = abs(lay.sidewalk_outer(side))
  z = rng.uniform(-12.0, -4.0)
  fence_added = False
  while z < lay.street_end:
    w = rng.uniform(7.0, 26.0)
    z1 = min(z + w, lay.street_end + 2.0)
    if rng.random() < 0.18:  # alley / gap; a back building and maybe a fence across it.
      gap_z1 = z + rng.uniform(3.0, 9.0)
      if rng.random() < 0.5:
        x = side * (outer + rng.uniform(0.3, 2.0))
        _add_fence(b, x, x, z, gap_z1)
        fence_added = True
      xb = outer + rng.uniform(12.0, 25.0)
      _add_building(
        b, *sorted((side * xb, side * (xb + 15.0))), z - 2, gap_z1 + 2, rng.uniform(8, 30)
      )
      z = gap_z1
      continue
    setback = 0.0 if rng.random() < 0.45 else rng.uniform(0.8, 6.0)
    xf = outer + setback
    depth = rng.uniform(10.0, 22.0)
    height = float(np.clip(rng.lognormal(math.log(14.0), 0.5), 5.0, 45.0))
    _add_building(b, *sorted((side * xf, side * (xf + depth))), z, z1, height)
    if setback > 1.2 and z1 > 2.0:
      r = rng.random()
      if r < 0.4:
        x = side * (outer + 0.15)
        _add_fence(b, x, x, max(z, 1.0), z1)
        fence_added = True
      elif r < 0.75:
        xh = outer + rng.uniform(0.2, 0.6)
        th = rng.uniform(0.6, 1.2)
        _add_hedge(b, *sorted((side * xh, side * (xh + th))), max(z, 1.0), z1)
      elif r < 0.95:
        for _ in range(int(rng.integers(1, 4))):
          zc = rng.uniform(max(z, 1.0), z1)
          xc = side * (outer + rng.uniform(0.5, setback - 0.3))
          rr = rng.uniform(0.4, 1.1)
          b.add(
            Ellipsoid((xc, rng.uniform(0.0, 0.4) * rr, zc), (rr, rr * rng.uniform(0.6, 1.0), rr)),
            VEGETATION,
            _color(rng, "vegetation"),
            "foliage",
            params=(rng.uniform(1.5, 4.0),),
          )
    z = z1 + (rng.uniform(0.0, 0.5) if rng.random() < 0.3 else 0.0)
  return fence_added


def _add_backdrop(b: _Builder):
  rng, lay = b.rng, b.layout
  x = -80.0
  while x < 80.0:
    w = rng.uniform(12.0, 35.0)
    zb = lay.street_end + rng.uniform(0.0, 6.0)
    h = rng.uniform(8.0, max(9.0, 0.33 * lay.street_end))
    _add_building(b, x, x + w, zb, zb + 15.0, h)
    x += w


def _add_fence(b: _Builder, x0, x1, z0, z1, height=None):
  rng = b.rng
  height = rng.uniform(0.9, 1.9) if height is None else height
  t = rng.uniform(0.03, 0.07)
  if x0 == x1:  # along Z
    lo, hi = (x0 - t / 2, 0.0, z0), (x0 + t / 2, height, z1)
  else:  # along X
    lo, hi = (x0, 0.0, z0 - t / 2), (x1, height, z0 + t / 2)
  col = _color(rng, "fence")
  dark = tuple(c * rng.uniform(0.25, 0.5) for c in col)
  spacing = rng.uniform(0.1, 0.25)
  b.add(Box(lo, hi), FENCE, col, "fence", dark, (spacing, rng.uniform(0.25, 0.6), height))


def _add_hedge(b: _Builder, x0, x1, z0, z1):
  rng = b.rng
  h = rng.uniform(0.7, 1.6)
  b.add(
    Box((x0, 0.0, z0), (x1, h, z1)),
    VEGETATION,
    _color(rng, "vegetation"),
    "foliage",
    params=(rng.uniform(2.0, 5.0),),
  )


def _add_tree(b: _Builder, x, z):
  rng = b.rng
  trunk_h = rng.uniform(1.8, 3.5)
  rt = rng.uniform(0.1, 0.2)
  bark = _hsv(rng, (0.05, 0.1), (0.2, 0.5), (0.15, 0.35))
  b.add(Cylinder(x, z, rt, 0.0, trunk_h + 0.5), VEGETATION, bark, "plain", params=(3.0, 0.25))
  rx = rng.uniform(1.1, 2.6)
  ry = rng.uniform(1.3, 3.0)
  b.add(
    Ellipsoid((x, trunk_h + 0.75 * ry, z), (rx, ry, rx * rng.uniform(0.8, 1.2))),
    VEGETATION,
    _color(rng, "vegetation"),
    "foliage",
    params=(rng.uniform(1.5, 4.0),),
  )


def _add_lamp(b: _Builder, side, x, z):
  rng = b.rng
  col = _color(rng, "pole")
  h = rng.uniform(5.0, 9.0)
  r = rng.uniform(0.06, 0.11)
  b.add(Cylinder(x, z, r, 0.0, h), POLE, col, "plain", params=(1.0, 0.1))
  if rng.random() < 0.75:  # arm over the road with a lamp head.
    arm = rng.uniform(0.8, 2.5)
    xa = x - side * arm
    b.add(Box((min(x, xa), h - 0.12, z - 0.05), (max(x, xa), h, z + 0.05)), POLE, col)
    b.add(
      Box((xa - 0.3, h - 0.2, z - 0.15), (xa + 0.3, h - 0.02, z + 0.15)),
      POLE,
      col,
      "plain",
      params=(1.0, 0.1),
    )


def _add_sign(b: _Builder, x, z):
  rng = b.rng
  pole_h = rng.uniform(2.0, 3.0)
  b.add(Cylinder(x, z, rng.uniform(0.03, 0.05), 0.0, pole_h), POLE, _color(rng, "pole"))
  w = rng.uniform(0.5, 0.9)
  h = w * rng.uniform(0.7, 1.3)
  t = 0.03
  yc = pole_h + h / 2 - 0.1
  r = rng.random()
  if r < 0.2:  # facing the road (normal along X)
    lo, hi = (x - t / 2, yc - h / 2, z - w / 2), (x + t / 2, yc + h / 2, z + w / 2)
  else:  # facing the camera (r < 0.8) or away from it (its back: same plate, painted on the front)
    lo, hi = (x - w / 2, yc - h / 2, z + 0.05), (x + w / 2, yc + h / 2, z + 0.05 + t)
  border = (
    _hsv(rng, (0.0, 1.0), (0.0, 0.05), (0.8, 0.95)) if rng.random() < 0.6 else (0.8, 0.1, 0.1)
  )
  back = r >= 0.8
  b.add(
    Box(lo, hi),
    SIGN,
    _color(rng, "sign"),
    "sign",
    border,
    (0.5 * (lo[0] + hi[0]), yc, 0.5 * (lo[2] + hi[2]), w, h, float(back), rng.uniform(0, 1)),
  )


def _add_traffic_light(b: _Builder, side, x, z):
  rng = b.rng
  col = _color(rng, "pole")
  housing = _color(rng, "light")
  lit = int(rng.integers(3))
  lamp = [(0.95, 0.15, 0.1), (1.0, 0.7, 0.1), (0.2, 0.95, 0.4)][lit]
  pole_h = rng.uniform(2.6, 3.6)
  b.add(Cylinder(x, z, rng.uniform(0.06, 0.1), 0.0, pole_h), POLE, col)
  heads = [(x, pole_h + 0.5)]
  if rng.random() < 0.5:  # mast arm over the road with a second head
    mast_h = rng.uniform(5.0, 6.2)
    b.add(Cylinder(x, z + 0.3, 0.12, 0.0, mast_h), POLE, col)
    arm = rng.uniform(3.0, 6.0)
    xa = x - side * arm
    b.add(
      Box((min(x, xa), mast_h - 0.25, z + 0.22), (max(x, xa), mast_h - 0.1, z + 0.38)), POLE, col
    )
    heads.append((xa + side * 0.3, mast_h - 0.75))
  for hx, hy in heads:
    lo = (hx - 0.17, hy - 0.45, z - 0.13)
    hi = (hx + 0.17, hy + 0.45, z + 0.13)
    b.add(Box(lo, hi), TRAFFIC_LIGHT, housing, "traffic_light", lamp, (hx, hy, float(lit), 0.1))


def _add_vehicle(b: _Builder, xc, z0):
  """Adds a car / van / bus with its rear face at z0 and centre line at xc; returns its span or None."""
  rng = b.rng
  kind = rng.random()
  if kind < 0.78:  # car
    length, width = rng.uniform(3.8, 4.9), rng.uniform(1.65, 1.95)
  elif kind < 0.93:  # van
    length, width = rng.uniform(4.8, 6.0), rng.uniform(1.9, 2.2)
  else:  # truck / bus
    length, width = rng.uniform(7.0, 12.0), rng.uniform(2.3, 2.55)
  x0, x1, z1 = xc - width / 2, xc + width / 2, z0 + length
  if not b.free_span(x0, x1, z0, z1):
    return None
  b.lane_spans.append((x0, x1, z0, z1))
  paint = _color(rng, "vehicle")
  glass = _hsv(rng, (0.5, 0.65), (0.05, 0.3), (0.04, 0.16))
  clear = 0.3 if kind < 0.78 else 0.35
  if kind < 0.78:
    body_top = clear + rng.uniform(0.55, 0.75)
    b.add(
      Box((x0, clear, z0), (x1, body_top, z1)),
      VEHICLE,
      paint,
      "vehicle",
      glass,
      (0.0, 0.0, body_top - 0.15, xc, width),
    )
    cab_h = rng.uniform(0.45, 0.6)
    inset = 0.08 * width
    c0 = z0 + length * rng.uniform(0.25, 0.35)
    c1 = c0 + length * rng.uniform(0.42, 0.52)
    b.add(
      Box((x0 + inset, body_top, c0), (x1 - inset, body_top + cab_h, c1)),
      VEHICLE,
      paint,
      "vehicle",
      glass,
      (body_top + 0.06, body_top + cab_h - 0.06, -1.0, xc, width - 2 * inset),
    )
  else:
    top = clear + (rng.uniform(1.6, 2.2) if kind < 0.93 else rng.uniform(2.6, 3.2))
    b.add(
      Box((x0, clear, z0), (x1, top, z1)),
      VEHICLE,
      paint,
      "vehicle",
      glass,
      (top - rng.uniform(0.8, 1.1), top - 0.2, clear + 0.55, xc, width),
    )
  tyre = (0.06, 0.06, 0.07)
  rw = 0.32 if kind < 0.78 else 0.45
  for zw in (z0 + 0.18 * length, z1 - 0.18 * length):
    for xw in (x0 + 0.12, x1 - 0.12):
      b.add(Ellipsoid((xw, rw, zw), (0.11, rw, rw)), VEHICLE, tyre)
  return x0, x1, z0, z1


def _add_pedestrian(b: _Builder, x, z):
  rng = b.rng
  s = rng.uniform(0.85, 1.1) if rng.random() < 0.9 else rng.uniform(0.6, 0.75)
  leg_h = rng.uniform(0.78, 0.92) * s
  torso_h = rng.uniform(0.52, 0.65) * s
  b.add(Cylinder(x, z, rng.uniform(0.12, 0.16) * s, 0.0, leg_h), PEDESTRIAN, _color(rng, "clothes"))
  b.add(
    Cylinder(x, z, rng.uniform(0.17, 0.23) * s, leg_h, leg_h + torso_h),
    PEDESTRIAN,
    _color(rng, "clothes"),
  )
  rh = rng.uniform(0.1, 0.12) * s
  b.add(
    Ellipsoid((x, leg_h + torso_h + 0.9 * rh, z), (rh, 1.15 * rh, rh)),
    PEDESTRIAN,
    _color(rng, "skin"),
  )


def _add_cyclist(b: _Builder, x, z0):
  rng = b.rng
  length = rng.uniform(1.6, 1.8)
  if not b.free_span(x - 0.35, x + 0.35, z0, z0 + length):
    return False
  b.lane_spans.append((x - 0.35, x + 0.35, z0, z0 + length))
  frame = _color(rng, "vehicle")
  rw = rng.uniform(0.31, 0.35)
  for zw in (z0 + rw, z0 + length - rw):
    b.add(Ellipsoid((x, rw, zw), (0.025, rw, rw)), CYCLIST, (0.05, 0.05, 0.05))
  b.add(
    Box((x - 0.03, rw + 0.05, z0 + rw), (x + 0.03, 2 * rw + 0.12, z0 + length - rw)), CYCLIST, frame
  )
  zm = z0 + length * 0.42
  seat = 2 * rw + 0.2
  b.add(Cylinder(x, zm, 0.11, rw * 0.7, seat), CYCLIST, _color(rng, "clothes"))
  torso = rng.uniform(0.5, 0.6)
  b.add(Cylinder(x, zm + 0.12, 0.19, seat, seat + torso), CYCLIST, _color(rng, "clothes"))
  rh = 0.115
  b.add(
    Ellipsoid((x, seat + torso + 0.1, zm + 0.18), (rh, 1.1 * rh, rh)),
    CYCLIST,
    _color(rng, "clothes"),
  )
  return True


def _add_misc(b: _Builder, x, z, side):
  rng = b.rng
  col = _color(rng, "misc")
  r = rng.random()
  if r < 0.35:  # bin
    b.add(
      Cylinder(x, z, rng.uniform(0.25, 0.35), 0.0, rng.uniform(0.8, 1.1)),
      MISC,
      col,
      "plain",
      params=(4.0, 0.15),
    )
  elif r < 0.6:  # bench facing the road
    w, d = rng.uniform(1.4, 2.0), 0.45
    sx = x
    b.add(Box((sx - d / 2, 0.0, z - w / 2), (sx + d / 2, 0.45, z + w / 2)), MISC, col)
    bx = sx + side * d / 2
    b.add(
      Box(
        (min(bx, bx + side * 0.08), 0.45, z - w / 2), (max(bx, bx + side * 0.08), 0.95, z + w / 2)
      ),
      MISC,
      col,
    )
  elif r < 0.8:  # utility cabinet / post box
    w = rng.uniform(0.5, 1.1)
    b.add(
      Box((x - 0.3, 0.0, z - w / 2), (x + 0.3, rng.uniform(1.0, 1.5), z + w / 2)),
      MISC,
      col,
      "plain",
      params=(3.0, 0.2),
    )
  else:  # bollards
    for k in range(int(rng.integers(2, 5))):
      b.add(Cylinder(x, z + 1.2 * k, 0.08, 0.0, rng.uniform(0.8, 1.0)), MISC, col)


def sample_layout(rng: np.random.Generator) -> Layout:
  """Draws a random street :class:`Layout`."""
  lane_w = rng.uniform(3.0, 3.6)
  num_lanes = int(rng.choice([2, 2, 3, 4]))
  half = num_lanes * lane_w / 2.0
  park_l = rng.uniform(2.0, 2.5) if rng.random() < 0.5 else rng.uniform(0.3, 0.6)
  park_r = rng.uniform(2.0, 2.5) if rng.random() < 0.5 else rng.uniform(0.3, 0.6)
  return Layout(
    lane_width=lane_w,
    num_lanes=num_lanes,
    road_left=half + park_l,
    road_right=half + park_r,
    sidewalk_left=rng.uniform(1.8, 4.5),
    sidewalk_right=rng.uniform(1.8, 4.5),
    centre_double=bool(rng.random() < 0.4),
    dash_length=rng.uniform(2.5, 4.0),
    dash_period=rng.uniform(7.0, 12.0),
    dash_phase=rng.uniform(0.0, 12.0),
    line_width=rng.uniform(0.12, 0.18),
    crosswalk_z=rng.uniform(10.0, 32.0) if rng.random() < 0.4 else float("nan"),
    crosswalk_length=rng.uniform(3.0, 5.0),
    street_end=rng.uniform(45.0, 75.0),
  )


def build_scene(rng: np.random.Generator, layout: Layout, cam_x: float) -> list[SceneObject]:
  """Places the objects of one street scene (index 0 = ground plane).

  Every frame gets at least one instance of every object class (vehicle, pedestrian, cyclist, pole, sign,
  traffic light, fence, vegetation, miscellaneous) placed 14-30 m ahead, where it is normally in view.

  Args:
    rng: source of randomness (the scene is a deterministic function of its state).
    layout: the street layout.
    cam_x: camera world X (metres), kept clear of vehicles ahead.

  Returns:
    List of :class:`SceneObject`, the ground plane first.
  """
  b = _Builder(rng, layout, cam_x)
  lay = layout
  road = _color(rng, "road")
  b.add(
    GroundPlane(),
    ROAD,
    road,
    "ground",
    _color(rng, "sidewalk"),
    (rng.uniform(0.4, 0.9), rng.uniform(0.0, 1.0), rng.uniform(0.85, 0.97)),
  )
  fence = False
  for side in (-1, 1):
    fence |= _add_buildings(b, side)
  _add_backdrop(b)
  near = (14.0, 30.0)
  far_z = (4.0, lay.street_end - 3.0)
  # Vegetation: rows of trees near the kerb.
  trees = 0
  for side in (-1, 1):
    if rng.random() < 0.6:
      z = rng.uniform(5.0, 12.0)  # crowns reach ~3 m along Z: keep them off the camera
      step = rng.uniform(7.0, 14.0)
      while z < lay.street_end - 3:
        k = lay.kerb(side)
        x = k + side * rng.uniform(0.7, 1.2)
        if b.free_disc(x, z, 0.6):
          b.discs.append((x, z, 0.6))
          _add_tree(b, x, z)
          trees += 1
        z += step * rng.uniform(0.85, 1.15)
  if trees == 0:
    side = int(rng.choice([-1, 1]))
    pos = b.place_on_sidewalk(side, near, 0.6, where=(0.2, 0.5))
    if pos is not None:
      _add_tree(b, *pos)
  # Poles: street lamps near the kerb.
  lamps = 0
  for side in (-1, 1):
    if rng.random() < 0.7 or (side == 1 and lamps == 0):
      z = rng.uniform(5.0, 20.0)
      step = rng.uniform(15.0, 28.0)
      while z < lay.street_end - 3:
        x = lay.kerb(side) + side * 0.4
        if b.free_disc(x, z, 0.3):
          b.discs.append((x, z, 0.3))
          _add_lamp(b, side, x, z)
          lamps += 1
        z += step
  # Signs.
  for i in range(int(rng.integers(1, 4))):
    side = int(rng.choice([-1, 1])) if i else 1
    pos = b.place_on_sidewalk(side, near if i == 0 else far_z, 0.4, where=(0.05, 0.3))
    if pos is not None:
      _add_sign(b, *pos)
  # Traffic lights (at the crossing when there is one).
  zc = lay.crosswalk_z if np.isfinite(lay.crosswalk_z) else rng.uniform(*near)
  for side in (1, -1) if rng.random() < 0.5 else (1,):
    x = lay.kerb(side) + side * 0.5
    z = zc - 0.5 if side == 1 else zc + lay.crosswalk_length + 0.5
    b.discs.append((x, z, 0.4))
    _add_traffic_light(b, side, x, z)
  # Fences (besides those in front of set-back buildings).
  if not fence or rng.random() < 0.3:
    side = int(rng.choice([-1, 1]))
    z0 = rng.uniform(*near)
    x = lay.sidewalk_outer(side) - side * 0.1
    _add_fence(b, x, x, z0, z0 + rng.uniform(4.0, 15.0))
  # Vehicles: parked along parking strips, moving in the lanes.
  dh = lay.drive_half
  for side in (-1, 1):
    strip = (lay.road_left if side < 0 else lay.road_right) - dh
    if strip > 1.5 and rng.random() < 0.85:
      z = rng.uniform(3.0, 12.0)
      while z < lay.street_end - 5:
        if rng.random() < 0.75:
          xc = side * (dh + strip / 2 + rng.uniform(-0.1, 0.1))
          span = _add_vehicle(b, xc, z)
          z = (span[3] if span else z + 4.5) + rng.uniform(0.6, 2.5)
        else:
          z += rng.uniform(3.0, 9.0)
  n_moving = int(rng.integers(1, 6))
  placed = 0
  for i in range(n_moving * 3):
    if placed >= n_moving:
      break
    lane = int(rng.integers(lay.num_lanes))
    xc = -dh + (lane + 0.5) * lay.lane_width + rng.uniform(-0.3, 0.3)
    z0 = rng.uniform(*near) if i == 0 else rng.uniform(8.0, lay.street_end - 8.0)
    if abs(xc - cam_x) < 2.0 and z0 < 9.0:
      continue
    if _add_vehicle(b, xc, z0) is not None:
      placed += 1
  # Cyclists near the right edge of the driving lanes (or the left, riding towards us).
  n_cyc = int(rng.integers(1, 3))
  for i in range(n_cyc * 4):
    if n_cyc == 0:
      break
    side = 1 if rng.random() < 0.7 else -1
    x = side * (dh - rng.uniform(0.5, 0.9))
    z0 = rng.uniform(*near) if i == 0 else rng.uniform(6.0, lay.street_end - 6.0)
    if abs(x - cam_x) < 1.2 and z0 < 8.0:
      continue
    if _add_cyclist(b, x, z0):
      n_cyc -= 1
  # Pedestrians on the sidewalks (one may be crossing at the zebra).
  for i in range(int(rng.integers(1, 9))):
    side = int(rng.choice([-1, 1]))
    pos = b.place_on_sidewalk(side, near if i == 0 else far_z, 0.35)
    if pos is not None:
      _add_pedestrian(b, *pos)
  if np.isfinite(lay.crosswalk_z) and rng.random() < 0.4:
    x = rng.uniform(-dh + 0.5, dh - 0.5)
    zp = lay.crosswalk_z + rng.uniform(0.5, lay.crosswalk_length - 0.5)
    if b.free_span(x - 0.3, x + 0.3, zp - 0.3, zp + 0.3) and abs(x - cam_x) > 0.5:
      _add_pedestrian(b, x, zp)
  # Miscellaneous street furniture.
  for i in range(int(rng.integers(1, 6))):
    side = int(rng.choice([-1, 1]))
    pos = b.place_on_sidewalk(side, near if i == 0 else far_z, 0.6, where=(0.55, 0.9))
    if pos is not None:
      _add_misc(b, *pos, side)
  return b.objects


def sample_lighting(rng: np.random.Generator) -> Lighting:
  """Draws sun direction and strength, sky colours, haze, exposure and sensor noise."""
  az = rng.uniform(0.0, 2 * math.pi)
  el = math.radians(rng.uniform(15.0, 70.0))
  sun = np.array([math.cos(el) * math.sin(az), math.sin(el), math.cos(el) * math.cos(az)])
  overcast = rng.random() < 0.25
  zen = np.array(_hsv(rng, (0.55, 0.62), (0.35, 0.65), (0.6, 0.9)))
  hor = np.array(_hsv(rng, (0.52, 0.62), (0.05, 0.2), (0.8, 0.97)))
  if overcast:
    g = rng.uniform(0.6, 0.85)
    zen = np.full(3, g) * np.array([0.97, 0.99, 1.03])
    hor = np.full(3, min(g + 0.1, 0.95))
  return Lighting(
    sun_dir=sun,
    sun_strength=rng.uniform(0.15, 0.3) if overcast else rng.uniform(0.55, 0.85),
    ambient=rng.uniform(0.6, 0.8) if overcast else rng.uniform(0.3, 0.45),
    sky_zenith=zen,
    sky_horizon=hor,
    cloud_cover=rng.uniform(0.0, 0.6),
    visibility=rng.uniform(150.0, 600.0),
    exposure=rng.uniform(0.9, 1.15),
    noise_sigma=rng.uniform(0.003, 0.012),
  )


# ----------------------------------------------------------------------------------------------------
# Rendering.
# ----------------------------------------------------------------------------------------------------


def _screen_rects(camera: Camera, lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
  """Pixel rectangles containing the projections of boxes ``[lo, hi]`` (K, 3), conservative.

  Returns:
    int64 (K, 4) rows ``(r0, r1, c0, c1)`` (half-open, clipped to the image); ``r0 >= r1`` or
    ``c0 >= c1`` means the box cannot be seen (behind the camera or outside the image).
  """
  bits = np.array([[i, j, k] for i in (0, 1) for j in (0, 1) for k in (0, 1)], bool)  # (8, 3)
  corners = np.where(bits[None], hi[:, None, :], lo[:, None, :])  # (K, 8, 3)
  pc = (corners - camera.position) @ camera.rotation  # camera coordinates
  z = pc[..., 2]
  front = z > _NEAR
  rects = np.zeros((len(lo), 4), np.int64)
  umin = np.full(len(lo), np.inf)
  umax = np.full(len(lo), -np.inf)
  vmin = np.full(len(lo), np.inf)
  vmax = np.full(len(lo), -np.inf)
  all_front = front.all(axis=1)
  if all_front.any():
    p = pc[all_front]
    u = camera.fx * p[..., 0] / p[..., 2] + camera.cx
    v = camera.fy * p[..., 1] / p[..., 2] + camera.cy
    umin[all_front], umax[all_front] = u.min(axis=1), u.max(axis=1)
    vmin[all_front], vmax[all_front] = v.min(axis=1), v.max(axis=1)
  for k in np.nonzero(front.any(axis=1) & ~all_front)[0]:
    # Straddles the near plane: add the points where the 12 box edges cross it.
    pts = [pc[k][front[k]]]
    for a in range(8):
      for bit in (1, 2, 4):
        bb = a | bit
        if bb != a and front[k, a] != front[k, bb]:
          s = (_NEAR - z[k, a]) / (z[k, bb] - z[k, a])
          pts.append((pc[k, a] + s * (pc[k, bb] - pc[k, a]))[None])
    p = np.concatenate(pts)
    u = camera.fx * p[:, 0] / p[:, 2] + camera.cx
    v = camera.fy * p[:, 1] / p[:, 2] + camera.cy
    umin[k], umax[k], vmin[k], vmax[k] = u.min(), u.max(), v.min(), v.max()
  seen = np.isfinite(umin)
  big = 1e9  # keeps the float -> int conversion finite for far-off-screen projections
  rects[seen, 0] = np.clip(np.floor(np.clip(vmin[seen], -big, big)), 0, camera.height)
  rects[seen, 1] = np.clip(np.ceil(np.clip(vmax[seen], -big, big)) + 1, 0, camera.height)
  rects[seen, 2] = np.clip(np.floor(np.clip(umin[seen], -big, big)), 0, camera.width)
  rects[seen, 3] = np.clip(np.ceil(np.clip(umax[seen], -big, big)) + 1, 0, camera.width)
  return rects


def raycast(
  objects: Sequence[SceneObject], camera: Camera, *, cull: bool = True
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
  """Z-buffered ray casting of all pixel centres against ``objects``.

  Each primitive is only tested against the pixels of the screen rectangle that bounds its projected
  bounding box (exact and conservative: boxes straddling the near plane are clipped first).

  Args:
    objects: the scene (any shapes with ``intersect`` / ``bounds``).
    camera: the :class:`Camera`.
    cull: False tests every primitive against every pixel (same result, slower; for checks).

  Returns:
    ``(t, normals, index, dirs)``: planar depth of the nearest hit (H, W) float64 (``inf`` = no hit),
    its unit normal (H, W, 3), the index into ``objects`` (H, W) int32 (-1 = no hit) and the ray
    directions (H, W, 3) (camera-z component 1).
  """
  H, W = camera.height, camera.width
  dirs = camera.ray_directions()
  t_buf = np.full((H, W), np.inf)
  n_buf = np.zeros((H, W, 3))
  i_buf = np.full((H, W), -1, np.int32)
  origin = camera.position
  bounded = [k for k, o in enumerate(objects) if o.shape.bounds() is not None]
  rects = np.tile(np.array([0, H, 0, W], np.int64), (len(objects), 1))
  if bounded and cull:
    lo, hi = (np.array(v) for v in zip(*(objects[k].shape.bounds() for k in bounded), strict=True))
    rects[bounded] = _screen_rects(camera, lo, hi)
  for k, obj in enumerate(objects):
    rect = rects[k]
    if rect[0] >= rect[1] or rect[2] >= rect[3]:
      continue
    r0, r1, c0, c1 = (int(v) for v in rect)
    sub = dirs[r0:r1, c0:c1].reshape(-1, 3)
    t, n = obj.shape.intersect(origin, sub)
    t = t.reshape(r1 - r0, c1 - c0)
    tb = t_buf[r0:r1, c0:c1]
    closer = t < tb
    if not closer.any():
      continue
    tb[closer] = t[closer]
    n_buf[r0:r1, c0:c1][closer] = n.reshape(r1 - r0, c1 - c0, 3)[closer]
    i_buf[r0:r1, c0:c1][closer] = k
  return t_buf, n_buf, i_buf, dirs


def _shade_albedo(objects, idx, P, N, layout, tile, labels_ground):
  """Per-pixel albedo (M, 3) and emission (M, 3) of the hit pixels (textures)."""
  K = len(objects)
  base = np.array([o.color for o in objects], np.float64)
  col2 = np.array([o.color2 for o in objects], np.float64)
  params = np.zeros((K, _NUM_PARAMS))
  for k, o in enumerate(objects):
    params[k, : len(o.params)] = o.params
  tex = np.array([TEXTURES.index(o.texture) for o in objects])
  albedo = base[idx].copy()
  emit = np.zeros_like(albedo)
  tx = tex[idx]
  prm = params[idx]
  P = P.astype(np.float32)
  N = N.astype(np.float32)
  tile = tile.astype(np.float32)
  X, Y, Z = P[:, 0], P[:, 1], P[:, 2]
  axis = np.argmax(np.abs(N), axis=1)
  # In-surface coordinates: the two world axes orthogonal to the dominant normal axis.
  su = np.where(axis == 0, Z, X)
  sv = np.where(axis == 1, Z, Y)

  m = np.flatnonzero(tx == TEXTURES.index("ground"))
  if m.size:
    g = prm[m]
    lab = labels_ground[m]
    x, z = X[m], Z[m]
    a = np.empty((m.size, 3), albedo.dtype)
    r = np.flatnonzero(lab == ROAD)  # asphalt: fine grain + large patches
    xr, zr = x[r], z[r]
    grain = (
      0.8
      + 0.35 * _fbm(tile, xr * 2.5, zr * 2.5)
      + 0.25 * (_noise(tile, xr * 0.15, zr * 0.15) - 0.5)
    )
    a[r] = base[idx[m[r]]] * grain[:, None]
    r = np.flatnonzero(lab == SIDEWALK)  # paving slabs, lighter kerb stones
    xs, zs, slab = x[r], z[r], g[r, 0]
    side = col2[idx[m[r]]] * (0.85 + 0.25 * _fbm(tile, xs * 4.0 + 50, zs * 4.0, 2))[:, None]
    lines = (np.mod(xs, slab) < 0.03) | (np.mod(zs, slab) < 0.03)
    side[lines] *= 0.75
    kerb = (np.abs(xs + layout.road_left) < 0.18) | (np.abs(xs - layout.road_right) < 0.18)
    side[kerb] = np.clip(side[kerb] * 1.15 + 0.05, 0, 1)
    a[r] = side
    r = np.flatnonzero(lab == LANEMARK)  # white paint, yellow centre lines in some frames
    xl, zl = x[r], z[r]
    yellow = (g[r, 1] >= 0.5) & (np.abs(xl) < layout.lane_width * 0.3)
    paint = np.where(yellow[:, None], np.array([[0.95, 0.8, 0.3]]), 1.0) * g[r, 2:3]
    a[r] = paint * (0.85 + 0.15 * _noise(tile, xl * 8.0, zl * 8.0))[:, None]
    albedo[m] = a

  m = np.flatnonzero(tx == TEXTURES.index("plain"))
  if m.size:
    freq = np.where(prm[m, 0] > 0, prm[m, 0], 2.0)
    amp = np.where(prm[m, 1] > 0, prm[m, 1], 0.1)
    nz = _fbm(tile, su[m] * freq + 3.0, sv[m] * freq, 2) - 0.5
    albedo[m] *= (1.0 + 2.0 * amp * nz)[:, None]

  m = np.flatnonzero(tx == TEXTURES.index("foliage"))
  if m.size:
    freq = prm[m, 0]
    nz = _fbm(tile, (su[m] + 0.37 * sv[m]) * freq * 2, (sv[m] - 0.21 * su[m]) * freq * 2, 3)
    albedo[m] *= (0.45 + 1.1 * nz)[:, None]

  m = np.flatnonzero(tx == TEXTURES.index("facade"))
  if m.size:
    p = prm[m]
    s, y = su[m] + p[:, 6], Y[m]
    floor_h, col_w, ww, wh, shop, top, lit_frac = (p[:, i] for i in (0, 1, 2, 3, 4, 5, 7))
    wall_n = 0.88 + 0.22 * _fbm(tile, s * 1.5, y * 1.5, 2)
    a = base[idx[m]] * wall_n[:, None]
    ci = np.floor(s / col_w)
    fs = s / col_w - ci
    yy = y - shop
    fj = np.floor(yy / floor_h)
    fy = yy / floor_h - fj
    vertical = axis[m] != 1
    win = (
      vertical
      & (yy > 0.3)
      & (y < top - 0.8)
      & (np.abs(fs - 0.5) < ww / 2)
      & (np.abs(fy - 0.55) < wh / 2)
    )
    r = _cell_random(tile, ci, fj)
    glass = col2[idx[m]] * (0.7 + 0.6 * r)[:, None]
    glass = glass + (0.25 * (1 - fy))[:, None] * 0.3  # sky reflection towards the top
    lit = r < lit_frac * 0.25
    glass = np.where(lit[:, None], np.array([[0.9, 0.8, 0.55]]), glass)
    sill = (
      vertical
      & (yy > 0.3)
      & (np.abs(fs - 0.5) < ww / 2 + 0.04)
      & (np.abs(fy - 0.55 + wh / 2) < 0.03)
    )
    a = np.where(sill[:, None], a * 1.25, a)
    shopwin = (
      vertical
      & (shop > 0)
      & (y > 0.4)
      & (y < shop - 0.6)
      & (np.abs(np.mod(s, 2 * col_w) / (2 * col_w) - 0.5) < 0.38)
    )
    band = vertical & (shop > 0) & (y >= shop - 0.6) & (y < shop - 0.05)
    a = np.where(band[:, None], a * 0.6, a)
    a = np.where((win | shopwin)[:, None], glass, a)
    albedo[m] = a

  m = np.flatnonzero(tx == TEXTURES.index("vehicle"))
  if m.size:
    p = prm[m]
    y = Y[m]
    a = base[idx[m]].copy()
    wy0, wy1, light_y, xc, wdt = (p[:, i] for i in range(5))
    band = (y >= wy0) & (y <= wy1) & (wy1 > wy0)
    pillar = (axis[m] == 0) & (np.mod(Z[m], 1.3) < 0.1)
    glass = col2[idx[m]] * (1.0 + 0.4 * (y - wy0) / np.maximum(wy1 - wy0, 1e-3))[:, None]
    a = np.where((band & ~pillar)[:, None], glass, a)
    dx = np.abs(X[m] - xc)
    lamp = (axis[m] == 2) & (light_y > 0) & (np.abs(y - light_y) < 0.08)
    lamp &= (dx > wdt / 2 - 0.35) & (dx < wdt / 2 - 0.06)
    a = np.where(lamp[:, None], np.array([[0.8, 0.1, 0.08]]), a)
    a *= (0.95 + 0.1 * _noise(tile, su[m] * 3, sv[m] * 3))[:, None]
    albedo[m] = a

  m = np.flatnonzero(tx == TEXTURES.index("fence"))
  if m.size:
    p = prm[m]
    spacing, bar_frac, height = p[:, 0], p[:, 1], p[:, 2]
    s = su[m]
    bar = (
      (np.mod(s, spacing) / spacing < bar_frac)
      | (Y[m] > height - 0.07)
      | (np.abs(Y[m] - 0.15) < 0.04)
    )
    post = np.mod(s, 2.5) < 0.08
    a = np.where((bar | post)[:, None], base[idx[m]], col2[idx[m]])
    albedo[m] = a * (0.9 + 0.2 * _noise(tile, s * 2, Y[m] * 2))[:, None]

  m = np.flatnonzero(tx == TEXTURES.index("sign"))
  if m.size:
    p = prm[m]
    xc, yc, zc, w, h, back = (p[:, i] for i in range(6))
    face = axis[m] != 1
    hor = np.where(axis[m] == 2, X[m] - xc, Z[m] - zc)
    du = np.abs(hor) / (w / 2)
    dv = np.abs(Y[m] - yc) / (h / 2)
    border = np.maximum(du, dv) > 0.82
    symbol = (dv < 0.18) & (du < 0.55)
    a = base[idx[m]].copy()
    a = np.where(symbol[:, None], col2[idx[m]], a)
    a = np.where(border[:, None], col2[idx[m]], a)
    grey = np.array([[0.55, 0.56, 0.58]])
    show_back = (back > 0.5) & (N[m, 2] < -0.5)
    a = np.where((~face | show_back)[:, None], grey, a)
    albedo[m] = a

  m = np.flatnonzero(tx == TEXTURES.index("traffic_light"))
  if m.size:
    p = prm[m]
    xc, yc, lit, rr = (p[:, i] for i in range(4))
    front = N[m, 2] < -0.5
    a = base[idx[m]].copy()
    e = np.zeros_like(a)
    for i in range(3):
      cy = yc + 0.28 * (1 - i)
      disc = front & ((X[m] - xc) ** 2 + (Y[m] - cy) ** 2 < rr**2)
      on = disc & (lit == i)
      a = np.where(disc[:, None], 0.08, a)
      e = np.where(on[:, None], col2[idx[m]] * 1.2, e)
    albedo[m] = a
    emit[m] = e
  return np.clip(albedo, 0.0, 1.0), emit


def _sky(dirs: np.ndarray, lighting: Lighting, tile: np.ndarray) -> np.ndarray:
  """Sky colour (M, 3) of rays ``dirs`` (M, 3): horizon-to-zenith gradient, clouds, sun glow."""
  d = dirs / np.linalg.norm(dirs, axis=-1, keepdims=True)
  el = np.clip(d[:, 1], -1.0, 1.0)
  f = np.clip(el / 0.6, 0.0, 1.0) ** 0.6
  sky = lighting.sky_horizon * (1 - f[:, None]) + lighting.sky_zenith * f[:, None]
  if lighting.cloud_cover > 0:
    inv = 3.0 / np.maximum(el, 0.03)
    c = _fbm(tile, d[:, 0] * inv + 101.0, d[:, 2] * inv + 37.0, 3)
    cover = np.clip((c - (1.0 - lighting.cloud_cover)) * 4.0, 0.0, 1.0)
    cover *= np.clip(el / 0.08, 0, 1)
    sky = sky * (1 - cover[:, None]) + np.array([0.95, 0.95, 0.97]) * cover[:, None]
  sun_glow = np.clip(d @ lighting.sun_dir, 0, 1) ** 64 * 0.35
  return sky + sun_glow[:, None]


def render_scene(
  objects: Sequence[SceneObject],
  camera: Camera,
  layout: Layout,
  lighting: Lighting,
  rng: np.random.Generator,
  *,
  far: float = DEFAULT_FAR,
) -> Frame:
  """Ray-casts and shades a scene.

  Args:
    objects: the scene; ``objects[0]`` must be the :class:`GroundPlane` if the scene has ground (its pixels
      are labelled by ``layout.ground_labels``); other objects use their ``label``.
    camera: the :class:`Camera`.
    layout: the street :class:`Layout` (ground labels and markings).
    lighting: the :class:`Lighting`.
    rng: source of the noise textures and sensor noise.
    far: far limit in metres (> 0): hits at planar depth >= far get depth 0 (label kept).

  Returns:
    The :class:`Frame`.

  Raises:
    ValueError: ``far <= 0`` or a label outside 0..13.
  """
  if not far > 0:
    raise ValueError(f"render.py: far must be > 0 metres, got {far}")
  for o in objects:
    if not 0 <= o.label < NUM_CLASSES:
      raise ValueError(f"render.py: object label {o.label} outside 0..{NUM_CLASSES - 1}")
  t, normals, index, dirs = raycast(objects, camera)
  H, W = camera.height, camera.width
  hw = H * W
  t_f, idx_f, dirs_f = t.reshape(hw), index.reshape(hw), dirs.reshape(hw, 3)
  hit = np.flatnonzero(idx_f >= 0)
  sky = np.flatnonzero(idx_f < 0)
  idx_hit = idx_f[hit]
  obj_labels = np.array([o.label for o in objects], np.uint8)
  labels = np.full(hw, SKY, np.uint8)
  lab_hit = obj_labels[idx_hit]
  points = camera.position + t_f[hit, None] * dirs_f[hit]
  if objects and isinstance(objects[0].shape, GroundPlane):
    g = np.flatnonzero(idx_hit == 0)
    lab_hit[g] = layout.ground_labels(points[g, 0], points[g, 2])
  labels[hit] = lab_hit
  labels = labels.reshape(H, W)
  depth = np.where((index >= 0) & (t < far), t, 0.0).astype(np.float32)

  tile = rng.random((128, 128), dtype=np.float32)
  rgb = np.zeros((hw, 3), np.float32)
  rgb[sky] = _sky(dirs_f[sky], lighting, tile)
  if hit.size:
    N = normals.reshape(hw, 3)[hit]
    albedo, emit = _shade_albedo(objects, idx_hit, points, N, layout, tile, lab_hit)
    sun = np.clip(N @ lighting.sun_dir, 0.0, None)
    sky_light = lighting.ambient * (0.7 + 0.3 * N[:, 1])
    shade = lighting.sun_strength * sun + sky_light
    col = albedo * shade[:, None] + emit
    dist = t_f[hit] * np.sqrt(np.einsum("ij,ij->i", dirs_f[hit], dirs_f[hit]))
    fog = 1.0 - np.exp(-dist / lighting.visibility)
    col = col * (1 - fog[:, None]) + lighting.sky_horizon * fog[:, None]
    rgb[hit] = col
  noise = rng.standard_normal(rgb.shape, dtype=np.float32)
  rgb = rgb * lighting.exposure + lighting.noise_sigma * noise
  image = (np.clip(rgb, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8).reshape(H, W, 3)
  return Frame(
    image=image,
    depth=depth,
    labels=labels,
    camera=camera,
    layout=layout,
    objects=list(objects),
    lighting=lighting,
    far=float(far),
    hit_t=t,
    object_index=index,
  )


def frame_seed(seed: int, split: str, index: int) -> np.random.SeedSequence:
  """Seed sequence of frame ``index`` of ``split``: ``SeedSequence([seed, crc32(split), index])``.

  Independent of how many frames are built or in what order (stable across processes and Python
  versions: no ``hash()``).
  """
  if index < 0 or seed < 0:
    raise ValueError(f"render.py: seed and index must be >= 0, got seed={seed}, index={index}")
  return np.random.SeedSequence([int(seed), zlib.crc32(split.encode("utf-8")), int(index)])


def render_frame(
  height: int,
  width: int,
  *,
  seed: int,
  split: str,
  index: int,
  hfov_deg: float = 80.0,
  far: float = DEFAULT_FAR,
) -> Frame:
  """Renders frame ``index`` of ``split`` (deterministic given the arguments).

  Camera: fx = fy = (W / 2) / tan(hfov / 2), principal point at the image centre; optical centre
  1.35-1.7 m above the ground in a right-hand driving lane, pitch 0-4 deg down, yaw +-4 deg,
  roll +-1.5 deg.

  Args:
    height: image height in pixels.
    width: image width in pixels.
    seed: base seed (>= 0).
    split: split name (e.g. ``"train"``); part of the frame's seed.
    index: frame index (>= 0).
    hfov_deg: horizontal field of view in degrees.
    far: far limit (metres) for the stored depth.

  Returns:
    The :class:`Frame` (image uint8 (H, W, 3), depth float32 (H, W) metres with 0 = invalid, labels uint8
    (H, W) in 0..13, and the camera / layout / objects it was rendered from).
  """
  rng = np.random.default_rng(frame_seed(seed, split, index))
  layout = sample_layout(rng)
  first_lane = layout.num_lanes // 2
  lane = int(rng.integers(first_lane, layout.num_lanes))
  cam_x = -layout.drive_half + (lane + 0.5) * layout.lane_width + rng.uniform(-0.3, 0.3)
  camera = make_camera(
    height,
    width,
    hfov_deg=hfov_deg,
    cam_height=rng.uniform(1.35, 1.7),
    pitch=math.radians(rng.uniform(0.0, 4.0)),
    yaw=math.radians(rng.uniform(-4.0, 4.0)),
    roll=math.radians(rng.uniform(-1.5, 1.5)),
    x=cam_x,
  )
  objects = build_scene(rng, layout, cam_x)
  lighting = sample_lighting(rng)
  return render_scene(objects, camera, layout, lighting, rng, far=far)


def render_arrays(
  job: tuple[int, int, int, str, int, float, float],
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
  """Picklable worker: ``render_frame`` of ``job = (height, width, seed, split, index, hfov_deg, far)``.

  Returns:
    ``(image, depth, labels, intrinsics)`` of :class:`Frame` (uint8 (H, W, 3), float32 (H, W) metres,
    uint8 (H, W), float32 (4,)).
  """
  height, width, seed, split, index, hfov_deg, far = job
  f = render_frame(height, width, seed=seed, split=split, index=index, hfov_deg=hfov_deg, far=far)
  return f.image, f.depth, f.labels, f.camera.intrinsics
