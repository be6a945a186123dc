"""Routed depth (paper 004 §3): routers, routed prediction and routed evaluation against hand-made cases."""

from __future__ import annotations

import json

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest
from PIL import Image

from semdepth_jax import evaluate, predict, routed, routing
from semdepth_jax.data.meta import get_meta
from semdepth_jax.main import main
from semdepth_jax.models import contract
from tests import test_evaluate

tfds_dir = test_evaluate.tfds_dir

DATASET = "synthetic_city/tiny"


class BrightDepth(nn.Module, contract.DepthSegModel):
  """Depth = ``scale`` x the image's mean intensity, the same at every pixel (metres)."""

  scale: float = 10.0
  depth_output: str = "metres"

  @nn.compact
  def __call__(self, image, labels=None, *, train=False):
    del labels, train
    m = jnp.mean(image, axis=(1, 2, 3), keepdims=True)
    return {"depth": jnp.broadcast_to(self.scale * m, image.shape[:3] + (1,))}


def toy_trained(model, workdir: str, size=(16, 24)) -> predict.TrainedModel:
  cfg = ml_collections.ConfigDict(
    {"image_size": size, "augment": {"resize": None, "flip": False}, "dataset": DATASET}
  )
  return predict.TrainedModel(
    model=model, variables={}, config=cfg, meta=get_meta(DATASET), step=0, workdir=workdir
  )


def constant(depth: float, workdir: str) -> predict.TrainedModel:
  return toy_trained(evaluate.ConstantModel(depth=depth, label=0, num_classes=14), workdir)


def gray(level: float, h: int = 20, w: int = 30) -> np.ndarray:
  return np.full((h, w, 3), round(level * 255), np.uint8)


def test_coarse_router_thresholds_max_depth():
  router = routed.CoarseRouter(toy_trained(BrightDepth(), "coarse"), sigma=5.0)
  levels = np.array([0.3, 0.45, 0.55, 0.8], np.float32)
  x = jnp.asarray(np.broadcast_to(levels[:, None, None, None], (4, 8, 12, 3)))
  out = router(x)
  np.testing.assert_allclose(out["max_depth"], 10.0 * levels, rtol=1e-6)
  assert out["is_low"].tolist() == [True, True, False, False]
  assert router.evidence(out, 3) == {
    "max_depth_m": 8.0,
    "p95_depth_m": 8.0,
    "median_depth_m": 8.0,
    "statistic": "max",
    "sigma_m": 5.0,
  }


class PixelDepth(nn.Module, contract.DepthSegModel):
  """Depth = 10 m x the red channel, per pixel."""

  depth_output: str = "metres"

  @nn.compact
  def __call__(self, image, labels=None, *, train=False):
    del labels, train
    return {"depth": 10.0 * image[..., :1]}


def test_coarse_router_statistic_switch_routes_a_window_in_a_room_low():
  # A near room (2 m) with a small far window (9 m, 4 % of the pixels): the paper's max rule sends it to the
  # high-range network, the median and p95 rules to the low-range one; a far street is high under all three.
  room = np.full((16, 24, 3), 0.2, np.float32)
  room[:4, :4] = 0.9  # 16 of 384 pixels
  street = np.full((16, 24, 3), 0.8, np.float32)
  x = jnp.asarray(np.stack([room, street]))
  want = {"max": [False, False], "p95": [True, False], "median": [True, False]}
  for statistic, is_low in want.items():
    router = routed.CoarseRouter(toy_trained(PixelDepth(), "c"), sigma=5.89, statistic=statistic)
    out = router(x)
    assert out["is_low"].tolist() == is_low, statistic
    ev = router.evidence(out, 0)
    assert ev["statistic"] == statistic
    assert ev["max_depth_m"] == pytest.approx(9.0, abs=1e-4)
    assert ev["median_depth_m"] == pytest.approx(2.0, abs=1e-4)
  with pytest.raises(
    routed.RouterError, match="--router_statistic: expected one of max, p95, median"
  ):
    routed.CoarseRouter(toy_trained(PixelDepth(), "c"), statistic="mean")


def test_bad_router_specs_name_the_argument(tmp_path):
  for spec in ("coarse", "places:x", "scene:"):
    with pytest.raises(routed.RouterError, match="--router"):
      routed.load_router(spec)
  with pytest.raises(routed.RouterError, match="not a directory"):
    routed.load_router(f"coarse:{tmp_path / 'missing'}")
  with pytest.raises(routed.RouterError, match="not a converted-weights directory"):
    routed.load_router(f"scene:{tmp_path}")
  with pytest.raises(routed.RouterError, match="--router_sigma"):
    routed.CoarseRouter(toy_trained(BrightDepth(), "c"), sigma=0.0)


@pytest.fixture(scope="module")
def places_init():
  """Random resnet18_places365 variables (numpy) and the Places365 indoor / outdoor category indices."""
  from semdepth_jax.models import backbones

  module = backbones.get_backbone_entry("resnet18_places365").build()
  variables = jax.jit(lambda: module.init(jax.random.key(0), jnp.zeros((1, 224, 224, 3))))()
  io = np.array([label for _, label in routing.load_places365_io()])
  return jax.tree.map(np.asarray, variables), np.flatnonzero(io == 1), np.flatnonzero(io == 2)


def _places_weights(places_init, out, winners):
  """A converted resnet18_places365 whose fc ranks ``winners`` first, in that order, for any image."""
  from semdepth_jax.weights import convert

  variables = jax.tree.map(np.copy, places_init[0])
  fc = variables["params"]["fc"]
  fc["kernel"] = np.zeros_like(fc["kernel"])
  fc["bias"] = np.zeros_like(fc["bias"])
  fc["bias"][np.asarray(winners)] = 30.0 - np.arange(len(winners), dtype=np.float32)
  convert.save_variables(variables, out, architecture="resnet18_places365")
  return out


def test_scene_router_votes_with_the_places365_list(tmp_path, places_init):
  _, indoor, outdoor = places_init
  x = jnp.asarray(np.stack([gray(0.2), gray(0.9)]), jnp.float32) / 255.0
  cases = [  # (winners in rank order, top_k, expected low votes, expected is_low)
    (indoor[:15], 15, 15, True),
    (outdoor[:15], 15, 0, False),
    (np.r_[indoor[:8], outdoor[:7]], 15, 8, True),  # 8 > 15 / 2
    (np.r_[outdoor[:8], indoor[:7]], 15, 7, False),
    (np.r_[indoor[:2], outdoor[:2]], 4, 2, False),  # a tie is not a majority
    (np.r_[outdoor[:1], indoor[:3]], 4, 3, True),
  ]
  for n, (winners, k, votes, is_low) in enumerate(cases):
    router = routed.load_router(
      f"scene:{_places_weights(places_init, tmp_path / str(n), winners)}", top_k=k
    )
    out = router(x)
    assert out["low_votes"].tolist() == [votes, votes], n
    assert out["is_low"].tolist() == [is_low, is_low], n
    assert router.evidence(out, 1) == {"low_votes": votes, "top_k": k}


def test_scene_router_rejects_a_non_places_classifier(tmp_path):
  from semdepth_jax.weights import convert

  convert.save_variables({"params": {"w": np.zeros(2)}}, tmp_path / "r", architecture="resnet18")
  with pytest.raises(routed.RouterError, match="365-way Places365 classifier"):
    routed.load_router(f"scene:{tmp_path / 'r'}")


def test_predict_routed_writes_chosen_outputs_and_record(tmp_path):
  router = routed.CoarseRouter(toy_trained(BrightDepth(), "coarse"), sigma=5.0)
  system = routed.RoutedSystem(router, constant(2.0, "low_run"), constant(30.0, "high_run"))
  src = tmp_path / "in"
  src.mkdir()
  levels = {"dark": 0.2, "bright": 0.9, "mid": 0.52}
  for stem, level in levels.items():
    Image.fromarray(gray(level, 21 + len(stem), 33)).save(src / f"{stem}.png")
  res = routed.predict_routed(system, [src], tmp_path / "out")
  assert res.ok and len(res.outputs) == 3
  records = {
    json.loads(line)["image"].rsplit("/", 1)[-1]: json.loads(line)
    for line in (tmp_path / "out" / routed.ROUTING_FILE).read_text().splitlines()
  }
  for stem, level in levels.items():
    rec = records[f"{stem}.png"]
    expect_high = 10.0 * round(level * 255) / 255 > 5.0
    assert rec["decision"] == ("high" if expect_high else "low")
    assert rec["model"] == ("high_run" if expect_high else "low_run")
    assert rec["max_depth_m"] == pytest.approx(10.0 * round(level * 255) / 255, abs=1e-4)
    depth = np.load(tmp_path / "out" / f"{stem}_depth.npy")
    assert depth.shape == (21 + len(stem), 33)
    np.testing.assert_allclose(depth, 30.0 if expect_high else 2.0, rtol=1e-6)


def _abs_rel_rmse(pred, gt, meta):
  """Per-image abs_rel and rmse (numpy), averaged over images with valid pixels, as the field does."""
  rows = []
  for p, g in zip(pred, gt, strict=True):
    valid = np.isfinite(g) & (g > meta.min_depth)
    if meta.max_depth is not None:
      valid &= g < meta.max_depth
    if not valid.any():
      continue
    q = np.clip(p[valid].astype(np.float64), meta.min_depth, meta.max_depth or np.inf)
    d = q - g[valid]
    rows.append((np.mean(np.abs(d) / g[valid]), np.sqrt(np.mean(d * d))))
  return np.mean(np.array(rows), axis=0) if rows else (np.nan, np.nan)


def test_evaluate_routed_against_numpy(tfds_dir):
  meta = get_meta(DATASET)
  assert meta.eval_crop is None and meta.scene_type == "outdoor"
  ex = test_evaluate.eval_examples(tfds_dir, "test")
  bright = 10.0 * ex["image"].mean(axis=(1, 2, 3))
  sigma = float(np.median(bright))
  router = routed.CoarseRouter(toy_trained(BrightDepth(), "coarse"), sigma=sigma)
  system = routed.RoutedSystem(router, constant(2.0, "low_run"), constant(30.0, "high_run"))
  report = routed.evaluate_routed(system, [(DATASET, "test")], data_dir=str(tfds_dir), batch_size=3)
  high = bright > sigma
  n = len(bright)
  assert 0 < high.sum() < n
  assert report["num_examples"] == n
  assert report["accuracy"] == pytest.approx(high.mean())
  assert report["confusion"]["matrix"] == [[0, 0], [int((~high).sum()), int(high.sum())]]
  entry = report["datasets"][f"{DATASET}:test"]
  assert (entry["truth"], entry["routed_low"], entry["routed_high"]) == (
    "high",
    (~high).sum(),
    high.sum(),
  )
  gt = ex["depth"][..., 0] if ex["depth"].ndim == 4 else ex["depth"]
  routed_pred = np.where(high[:, None, None], 30.0, 2.0) * np.ones_like(gt)
  cases = {
    "routed": (routed_pred, gt),
    "routed_low": (np.full_like(gt[~high], 2.0), gt[~high]),
    "routed_high": (np.full_like(gt[high], 30.0), gt[high]),
    "oracle": (np.full_like(gt, 30.0), gt),
  }
  for subset, (p, g) in cases.items():
    abs_rel, rmse = _abs_rel_rmse(p, g, meta)
    res = entry["depth"][subset]
    assert res["abs_rel"] == pytest.approx(abs_rel, rel=1e-5), subset
    assert res["rmse"] == pytest.approx(rmse, rel=1e-5), subset
  assert "| high | 0 |" not in routed.format_markdown(report)


def test_cli_routed_predict_and_evaluate(tmp_path, tfds_dir, trained_workdir, capsys):
  wd = str(trained_workdir)
  src = tmp_path / "in"
  src.mkdir()
  Image.fromarray(gray(0.6, 18, 26)).save(src / "a.png")
  rc = main(
    ["predict", "--router", f"coarse:{wd}", "--low", wd, "--images", str(src), "--out", "o"]
  )
  assert rc == 2 and "--high" in capsys.readouterr().err
  rc = main(["predict", "--images", str(src), "--out", str(tmp_path / "o")])
  assert rc == 2 and "--workdir" in capsys.readouterr().err
  out = tmp_path / "o"
  args = ["--router", f"coarse:{wd}", "--router_sigma", "1e-3", "--low", wd, "--high", wd]
  assert main(["predict", *args, "--images", str(src), "--out", str(out)]) == 0
  rec = json.loads((out / routed.ROUTING_FILE).read_text())
  assert rec["decision"] == "high" and rec["sigma_m"] == 1e-3 and rec["max_depth_m"] > 0.1
  ref = predict.predict_images(trained_workdir, [src], tmp_path / "ref")
  assert ref.ok
  np.testing.assert_array_equal(
    np.load(out / "a_depth.npy"), np.load(tmp_path / "ref" / "a_depth.npy")
  )
  assert rec["statistic"] == "max"
  args += ["--router_statistic", "median"]
  rc = main(["evaluate", *args, "--datasets", f"{DATASET}:test", "--data_dir", str(tfds_dir),
             "--out", str(tmp_path / "ev")])  # fmt: skip
  assert rc == 0
  report = json.loads((tmp_path / "ev" / "metrics.json").read_text())
  assert report["accuracy"] == 1.0  # every synthetic_city image routed high: outdoor, correct
  assert report["router"]["statistic"] == "median"
  assert (tmp_path / "ev" / "metrics.md").read_text().startswith("# Routed evaluation")


trained_workdir = test_evaluate.trained_workdir
toy_registered = test_evaluate.toy_registered
