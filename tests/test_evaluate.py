"""Tests of semdepth_jax.evaluate (streaming evaluation of a workdir, protocols, TTA, tiling, per-class depth).

A tiny joint model of 1x1 convolutions (so it is exactly translation- and mirror-equivariant) is registered
for the module and trained for two steps on ``synthetic_city/tiny`` with the training package's ``train``;
``trained_workdir`` and ``ToyJoint`` are also used by tests/test_predict.py.
"""

import dataclasses
import json
import pathlib

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
import tensorflow_datasets as tfds
from PIL import Image

from semdepth_jax import evaluate, metrics, models, predict
from semdepth_jax.data import meta as meta_lib
from semdepth_jax.data import pipeline, transforms
from semdepth_jax.main import main

TOY_INPUT_SIZE = (16, 24)


class ToyJoint(nn.Module):
  """Depth (softplus, metres, + 0.1) and class logits from two layers of 1x1 convolutions."""

  num_classes: int = 14
  width: int = 4
  depth_output: str = "metres"

  @nn.compact
  def __call__(self, image, labels=None, *, train=False):
    del labels, train
    h = nn.relu(nn.Conv(self.width, (1, 1), name="hidden")(image))
    depth = nn.softplus(nn.Conv(1, (1, 1), name="depth_head")(h)) + 0.1
    if self.depth_output == "inverted_normalised":
      depth = nn.sigmoid(depth)
    logits = nn.Conv(self.num_classes, (1, 1), name="seg_head")(h)
    return {"depth": depth, "seg_logits": logits}


CONFIG_PY = """
import ml_collections
from configs import common


def get_config(arg=None):
  c = common.base_config()
  c.dataset = "synthetic_city/tiny"
  c.image_size = (16, 24)
  c.model = ml_collections.ConfigDict({"name": "toy_joint", "width": 4})
  loss = {"depth": {"type": "l1"}, "seg": {"type": "softmax_ce"}}
  c.stages = ml_collections.ConfigDict(
    {"train": common.stage_config(num_steps=2, batch_size=8, loss=loss,
                                  optimizer={"name": "adam", "learning_rate": 0.05})}
  )
  c.stage_order = ("train",)
  c.eval.split = ""
  c.eval.batch_size = 8
  c.augment.resize = None  # crops at the stored scale: tiles of the input size see the training scale
  c.progress_bar = False
  c.log_every_steps = 1
  c.checkpoint.async_save = False
  c.checkpoint.every_steps = 1
  return c
"""


@pytest.fixture(scope="module")
def toy_registered():
  with pytest.MonkeyPatch.context() as mp:
    mp.setitem(models.MODELS, "toy_joint", ToyJoint)
    yield


@pytest.fixture(scope="module")
def tfds_dir(tmp_path_factory):
  from data_builders import get_builder_class

  data_dir = tmp_path_factory.mktemp("tfds")
  get_builder_class("synthetic_city")(config="tiny", data_dir=str(data_dir)).download_and_prepare(
    download_config=tfds.download.DownloadConfig()
  )
  return data_dir


@pytest.fixture(scope="module")
def trained_workdir(toy_registered, tfds_dir, tmp_path_factory):
  from semdepth_jax.train import config_utils, loop

  root = tmp_path_factory.mktemp("toy_run")
  cfg_path = root / "toy_config.py"
  cfg_path.write_text(CONFIG_PY)
  config = config_utils.load_config(str(cfg_path), [f"--config.data_dir={tfds_dir}"])
  workdir = root / "workdir"
  loop.train(config, workdir)
  return workdir


def eval_examples(tfds_dir, split):
  """The split's examples as the eval pipeline gives them (stored size), stacked."""
  source = pipeline.open_source("synthetic_city/tiny", split, str(tfds_dir))
  exs = [transforms.preprocess_eval(dict(source[i])) for i in range(len(source))]
  return {k: np.stack([np.asarray(e[k]) for e in exs]) for k in ("image", "depth", "segmentation")}


def reference_predictions(workdir, images, **kwargs):
  trained = predict.load_trained(workdir)
  inf = trained.inference_model(**kwargs)
  out = jax.device_get(jax.jit(inf.dense)(trained.variables, jnp.asarray(images)))
  return np.asarray(out["depth"]), np.asarray(out["probs"])


def numpy_per_class(pred, gt, labels, *, min_depth, max_depth, num_classes, ignore=255):
  valid = np.isfinite(gt) & (gt > min_depth) & (gt < max_depth) & (labels != ignore)
  p = np.clip(pred, max(min_depth, 1e-6), max_depth).astype(np.float64)
  out = {}
  for c in range(num_classes):
    m = valid & (labels == c)
    if not m.any():
      continue
    d = p[m] - gt[m]
    out[c] = {
      "num_pixels": int(m.sum()),
      "abs_rel": float(np.mean(np.abs(d) / gt[m])),
      "rmse": float(np.sqrt(np.mean(d * d))),
      "mae": float(np.mean(np.abs(d))),
      "delta1": float(np.mean(np.maximum(p[m] / gt[m], gt[m] / p[m]) < 1.25)),
    }
  return out


# ----------------------------------------------------------------------------------------------------------
# Workdir evaluation.


def test_every_example_counted_once_with_padding(trained_workdir, tfds_dir):
  # 11 examples in batches of 8 (on 8 devices): 2 batches, the second padded with 5 masked examples.
  report = evaluate.evaluate_workdir(
    trained_workdir, split="train[:11]", batch_size=8, data_dir=str(tfds_dir), write=False
  )
  assert report["num_examples"] == 11
  assert report["depth_counts"]["num_examples"] == 11
  assert report["segmentation"]["num_examples"] == 11
  ex = eval_examples(tfds_dir, "train[:11]")
  depth, probs = reference_predictions(trained_workdir, ex["image"])
  meta = meta_lib.get_meta("synthetic_city")
  ref = metrics.depth_metrics(
    depth, ex["depth"], min_depth=meta.min_depth, max_depth=meta.max_depth
  )
  for k in metrics.DEPTH_METRIC_KEYS:
    assert report["depth"][k] == pytest.approx(ref[k], rel=1e-4, abs=1e-5), k
  labels = np.argmax(probs, axis=-1)
  seg = metrics.segmentation_metrics(labels, ex["segmentation"], num_classes=14, ignore_index=255)
  for k in ("pixel_acc", "mean_class_acc", "miou"):
    assert report["segmentation"][k] == pytest.approx(seg[k], rel=1e-6), k
  assert (
    report["segmentation"]["num_pixels"] == ex["segmentation"].size
  )  # nothing ignored, no padding
  # Per-class depth error against numpy.
  ref_pc = numpy_per_class(
    depth, ex["depth"], ex["segmentation"], min_depth=1e-3, max_depth=80.0, num_classes=14
  )
  got = report["depth_per_class"]
  assert set(got) == {meta.class_names[c] for c in ref_pc}
  for c, vals in ref_pc.items():
    for k, v in vals.items():
      assert got[meta.class_names[c]][k] == pytest.approx(v, rel=1e-4, abs=1e-6), (c, k)


def test_cli_writes_metrics_json_and_md(trained_workdir, tfds_dir, capsys):
  rc = main(["evaluate", "--workdir", str(trained_workdir), "--split", "validation",
             "--data_dir", str(tfds_dir)])  # fmt: skip
  assert rc == 0
  # One folder per split / protocol / mode, so variants do not overwrite each other.
  out_dir = (
    pathlib.Path(trained_workdir) / "eval" / "validation" / "dataset_synthetic_city" / "resize"
  )
  report = json.loads((out_dir / "metrics.json").read_text())
  assert report["step"] == 2 and report["split"] == "validation" and report["num_examples"] == 8
  assert report["protocol"]["name"] == "dataset:synthetic_city"
  assert report["protocol"]["max_depth"] == 80.0
  assert set(report["depth"]) == set(metrics.DEPTH_METRIC_KEYS)
  names = meta_lib.get_meta("synthetic_city").class_names
  assert list(report["segmentation"]["iou_per_class"]) == list(names)
  assert set(report["depth_per_class"]) <= set(names) and report["depth_per_class"]
  md = (out_dir / "metrics.md").read_text()
  assert "| class | IoU | accuracy |" in md and "Building" in md and "abs_rel" in md
  assert "metrics.json" in capsys.readouterr().out


def test_cli_errors_are_clear(trained_workdir, tfds_dir, tmp_path, capsys):
  args = ["evaluate", "--workdir", str(trained_workdir), "--data_dir", str(tfds_dir)]
  assert main(args + ["--split", "nosuchsplit"]) == 2
  assert "has no split 'nosuchsplit'" in capsys.readouterr().err
  assert main(args + ["--protocol", "r0_ssegdepnet"]) == 2
  assert "semdepth score --protocol r0_ssegdepnet" in capsys.readouterr().err
  assert main(args + ["--step", "7"]) == 2
  assert "available steps: [1, 2]" in capsys.readouterr().err
  assert main(["evaluate", "--workdir", str(tmp_path)]) == 2
  assert "config.json" in capsys.readouterr().err


def test_conv_switches_reach_the_report_and_keep_the_numbers(
  trained_workdir, tfds_dir, tmp_path, capsys
):
  # Which operators the switches trace is tested in tests/models/test_volume_planes.py; here: the CLI
  # flags replace the run's config (recorded in the report) and the toy model's numbers stay the same.
  base = evaluate.evaluate_workdir(
    trained_workdir, split="validation", data_dir=str(tfds_dir), write=False
  )
  assert (base["settings"]["pointwise_conv"], base["settings"]["volume_conv"]) == ("conv", "conv")
  out = tmp_path / "switched"
  args = ["evaluate", "--workdir", str(trained_workdir), "--split", "validation",
          "--data_dir", str(tfds_dir), "--out", str(out)]  # fmt: skip
  assert main([*args, "--pointwise_conv", "dot", "--volume_conv", "planes"]) == 0
  report = json.loads((out / "metrics.json").read_text())
  assert (report["settings"]["pointwise_conv"], report["settings"]["volume_conv"]) == (
    "dot",
    "planes",
  )
  for k in ("abs_rel", "rmse", "delta1"):
    assert report["depth"][k] == pytest.approx(base["depth"][k], rel=1e-6), k
  capsys.readouterr()
  with pytest.raises(SystemExit):
    main([*args, "--volume_conv", "im2col"])
  assert "invalid choice: 'im2col'" in capsys.readouterr().err
  routed = ["--router", "coarse:x", "--low", "x", "--high", "x", "--volume_conv", "planes"]
  assert main(["evaluate", *routed]) == 2
  assert "with --router each network uses its own run's config" in capsys.readouterr().err
  assert main(["predict", *routed, "--images", str(tmp_path), "--out", str(tmp_path / "p")]) == 2
  assert "with --router each network uses its own run's config" in capsys.readouterr().err


def test_tile_and_tta_options_run(trained_workdir, tfds_dir):
  # The toy model is 1x1 convolutions: tiling at the stored size equals running it on the whole image,
  # which is the model at 48x80 (not resized); flip TTA does not change a mirror-equivariant model.
  ex = eval_examples(tfds_dir, "validation")
  trained = predict.load_trained(trained_workdir)
  whole = predict.InferenceModel(trained.model, input_size=ex["image"].shape[1:3])
  d_whole = np.asarray(whole.dense(trained.variables, jnp.asarray(ex["image"]))["depth"])
  meta = meta_lib.get_meta("synthetic_city")
  ref = metrics.depth_metrics(
    d_whole, ex["depth"], min_depth=meta.min_depth, max_depth=meta.max_depth
  )
  report = evaluate.evaluate_workdir(
    trained_workdir, split="validation", tile=True, tta="flip", data_dir=str(tfds_dir), write=False
  )
  assert report["settings"]["mode"] == "tile" and report["settings"]["tta"] == "flip"
  for k in ("abs_rel", "rmse", "delta1"):
    assert report["depth"][k] == pytest.approx(ref[k], rel=1e-4), k
  # Explicit tiles of the stored size combined by their maximum (paper 001's rule): one tile, same numbers.
  size = tuple(int(v) for v in ex["image"].shape[1:3])
  report = evaluate.evaluate_workdir(
    trained_workdir,
    split="validation",
    tile=True,
    tile_size=size,
    tile_combine="max",
    data_dir=str(tfds_dir),
    write=False,
  )
  assert report["settings"]["tile_size"] == list(size)
  assert report["settings"]["tile_combine"] == "max"
  for k in ("abs_rel", "rmse", "delta1"):
    assert report["depth"][k] == pytest.approx(ref[k], rel=1e-4), k


# ----------------------------------------------------------------------------------------------------------
# Protocols and the accumulators.


def test_dataset_protocol_selection():
  nyu = evaluate.dataset_protocol(meta_lib.get_meta("nyu_depth_v2_labeled"))
  assert nyu is metrics.PROTOCOLS["nyu_eigen"]
  city = evaluate.dataset_protocol(meta_lib.get_meta("synthetic_city"))
  assert city.name == "dataset:synthetic_city" and city.max_depth == 80.0 and city.crop is None
  assert evaluate.resolve_protocol("kitti_garg", None).crop == "kitti_garg"
  with pytest.raises(ValueError, match="semdepth score"):
    evaluate.resolve_protocol("clean_000", None)
  with pytest.raises(KeyError, match="unknown depth protocol"):
    evaluate.resolve_protocol("nope", None)


def _run_evaluator(ev, batches):
  acc = ev.init()
  update = jax.jit(ev.update)
  for outputs, batch in batches:
    acc = update(acc, outputs, batch)
  return ev.finish(acc)


def test_nyu_preset_applies_crop_and_cap():
  # 48x64 image: the Eigen crop 45:471, 41:601 at 480x640 scales to rows 4:47, cols 4:60.
  gt = np.full((1, 48, 64), 5.0, np.float32)
  gt[0, 10:20, 10:20] = 12.0  # beyond the 10 m cap
  pred = gt.copy()
  pred[0, :4] = 1.0  # outside the crop
  pred[0, 47:] = 1.0
  pred[0, :, :4] = 1.0
  pred[0, :, 60:] = 1.0
  pred[0, 10:20, 10:20] = 2.0  # wrong, but capped out of the evaluation
  labels = np.zeros((1, 48, 64), np.int32)
  labels[0, :, 32:] = 1
  batch = {
    "image": np.zeros((1, 48, 64, 3), np.float32),
    "depth": gt,
    "segmentation": labels,
    "mask": np.ones(1, bool),
    "has_depth": np.ones(1, bool),
    "has_segmentation": np.ones(1, bool),
  }
  outputs = {"depth": pred[..., None]}
  names = ("a", "b")
  nyu = evaluate.JointEvaluator(metrics.get_protocol("nyu_eigen"), num_classes=2, class_names=names)
  res = _run_evaluator(nyu, [(outputs, batch)])
  assert res["depth"]["abs_rel"] == pytest.approx(0.0, abs=1e-7)
  assert res["depth"]["delta1"] == 1.0
  n_valid = (47 - 4) * (60 - 4) - 100
  assert res["depth_counts"]["num_pixels"] == n_valid
  assert (
    res["depth_per_class"]["a"]["num_pixels"] + res["depth_per_class"]["b"]["num_pixels"] == n_valid
  )
  assert res["depth_per_class"]["a"]["rmse"] == pytest.approx(0.0, abs=1e-6)
  std = evaluate.JointEvaluator(metrics.get_protocol("standard"), num_classes=2, class_names=names)
  res = _run_evaluator(std, [(outputs, batch)])
  border = 48 * 64 - (47 - 4) * (60 - 4)
  assert res["depth_counts"]["num_pixels"] == 48 * 64
  # Pixels of 5 m predicted 1 m (border) and 12 m predicted 2 m: mean |d| / y over all pixels.
  expected = (border * 4.0 / 5.0 + 100 * 10.0 / 12.0) / (48 * 64)
  assert res["depth"]["abs_rel"] == pytest.approx(expected, rel=1e-5)


def test_per_class_depth_error_matches_numpy_over_masked_batches():
  rng = np.random.default_rng(3)
  C = 4
  batches, preds, gts, labs = [], [], [], []
  for _ in range(3):
    gt = rng.uniform(0.5, 12.0, size=(4, 6, 7)).astype(np.float32)
    gt[rng.uniform(size=gt.shape) < 0.1] = 0.0  # invalid depth
    pred = (gt * rng.uniform(0.7, 1.4, size=gt.shape)).astype(np.float32)
    pred[0, 0, 0] = 30.0  # clamped to 10 m by the protocol
    labels = rng.integers(0, C, size=gt.shape).astype(np.int32)
    labels[rng.uniform(size=gt.shape) < 0.1] = 255
    mask = np.asarray([True, True, True, False])  # last example is padding
    has_seg = np.asarray([True, False, True, True])  # example 1 has no labels: no per-class terms
    batch = {
      "image": np.zeros(gt.shape + (3,), np.float32),
      "depth": gt,
      "segmentation": labels,
      "mask": mask,
      "has_depth": np.ones(4, bool),
      "has_segmentation": has_seg,
    }
    batches.append(({"depth": pred[..., None]}, batch))
    keep = mask & has_seg
    preds.append(pred[keep])
    gts.append(gt[keep])
    labs.append(labels[keep])
  proto = metrics.get_protocol("nyu_eigen_pooled")  # crop scales to rows 0:6, cols 0:6 of 6x7
  proto = dataclasses.replace(proto, crop=None)
  ev = evaluate.JointEvaluator(proto, num_classes=C, class_names=tuple("abcd"))
  res = _run_evaluator(ev, batches)
  assert res["num_examples"] == 9
  ref = numpy_per_class(
    np.concatenate(preds), np.concatenate(gts), np.concatenate(labs), min_depth=1e-3,
    max_depth=10.0, num_classes=C,
  )  # fmt: skip
  assert set(res["depth_per_class"]) == {"abcd"[c] for c in ref}
  for c, vals in ref.items():
    for k, v in vals.items():
      assert res["depth_per_class"]["abcd"[c]][k] == pytest.approx(v, rel=1e-5), (c, k)
  # The pooled depth metrics of the same evaluator count the unlabelled example too.
  all_pred = np.concatenate([b[0]["depth"][b[1]["mask"], ..., 0] for b in batches])
  all_gt = np.concatenate([b[1]["depth"][b[1]["mask"]] for b in batches])
  ref_depth = metrics.depth_metrics(
    all_pred, all_gt, min_depth=1e-3, max_depth=10.0, per_image=False
  )
  assert res["depth"]["rmse"] == pytest.approx(ref_depth["rmse"], rel=1e-5)


def test_tta_equals_no_tta_on_symmetric_input(toy_registered):
  model = ToyJoint(num_classes=3)
  rng = np.random.default_rng(4)
  half = rng.uniform(size=(2, 16, 12, 3)).astype(np.float32)
  image = jnp.asarray(np.concatenate([half, half[:, :, ::-1]], axis=2))  # mirror-symmetric 16x24
  variables = model.init(jax.random.PRNGKey(0), image)
  plain = predict.InferenceModel(model, input_size=TOY_INPUT_SIZE).dense(variables, image)
  tta = predict.InferenceModel(model, input_size=TOY_INPUT_SIZE, tta="flip").dense(variables, image)
  for k in ("depth", "probs"):
    np.testing.assert_allclose(np.asarray(tta[k]), np.asarray(plain[k]), rtol=1e-6, atol=1e-7)


def test_tiled_equals_untiled_for_translation_equivariant_model(toy_registered):
  model = ToyJoint(num_classes=3)
  rng = np.random.default_rng(5)
  image = jnp.asarray(rng.uniform(size=(1, 37, 61, 3)).astype(np.float32))
  variables = model.init(jax.random.PRNGKey(1), image)
  tiled = predict.InferenceModel(model, input_size=TOY_INPUT_SIZE, mode="tile").dense(
    variables, image
  )
  direct = model.apply(variables, image)
  np.testing.assert_allclose(
    np.asarray(tiled["depth"]), np.asarray(direct["depth"])[..., 0], rtol=1e-5, atol=1e-6
  )
  np.testing.assert_allclose(
    np.asarray(tiled["probs"]),
    np.asarray(jax.nn.softmax(direct["seg_logits"], axis=-1)),
    rtol=1e-5,
    atol=1e-6,
  )


# ----------------------------------------------------------------------------------------------------------
# Real data: train on Replica, evaluate on its validation frames, predict on NYU and Replica, score NYU.


@pytest.mark.real_data
@pytest.mark.slow
def test_replica_train_evaluate_predict_score(shared_data, tmp_path, capsys):
  from semdepth_jax.train import config_utils, loop

  data_dir = tmp_path / "tfds"
  rc = main(["data", "build", "--dataset", "replica", "--manual_dir",
             str(shared_data / "replica_office0"), "--data_dir", str(data_dir)])  # fmt: skip
  assert rc == 0
  config_utils.ensure_configs_importable()
  import configs

  spec = (
    str(pathlib.Path(configs.__file__).parent / "ssegdepnet.py")
    + ":size=tiny,steps=2,dataset=replica"
  )
  config = config_utils.load_config(
    spec, [f"--config.data_dir={data_dir}", "--config.progress_bar=False", "--config.eval.split="]
  )
  workdir = tmp_path / "workdir"
  loop.train(config, workdir)

  # Evaluate at the stored 680 x 1200 resolution (model input 32 x 48).
  assert main(["evaluate", "--workdir", str(workdir), "--split", "validation"]) == 0
  out_dir = workdir / "eval" / "validation" / "dataset_replica" / "resize"
  report = json.loads((out_dir / "metrics.json").read_text())
  assert report["num_examples"] == 21 and report["step"] == 4
  assert report["protocol"]["name"] == "dataset:replica" and report["protocol"]["max_depth"] == 10.0
  assert all(np.isfinite(v) for v in report["depth"].values())
  names = meta_lib.get_meta("replica").class_names
  assert list(report["segmentation"]["iou_per_class"]) == list(names)
  assert set(report["depth_per_class"]) <= set(names)
  assert sum(v["num_pixels"] for v in report["depth_per_class"].values()) > 0

  # Predict on the two NYU joint frames (480 x 640) and a Replica validation frame (680 x 1200).
  nyu = shared_data / "nyu_depth_v2_samples" / "joint"
  frames = [
    nyu / "000433.png",
    nyu / "000464.png",
    shared_data / "replica_office0" / "rgb" / "0065.png",
  ]
  out = tmp_path / "pred"
  args = [
    "predict",
    "--workdir",
    str(workdir),
    "--images",
    *map(str, frames),
    "--out",
    str(out),
    "--ply",
  ]
  assert main(args) == 0
  for f, size in zip(frames, [(480, 640), (480, 640), (680, 1200)], strict=True):
    depth = np.load(out / f"{f.stem}_depth.npy")
    assert depth.shape == size and np.isfinite(depth).all()
    with Image.open(out / f"{f.stem}_seg.png") as im:
      assert im.size == size[::-1]
    header = (out / f"{f.stem}.ply").read_bytes()[:400].decode("ascii", errors="replace")
    assert f"element vertex {int((depth > 0).sum())}" in header

  # Score the NYU predictions (metres from the .npy files) against the NYU ground truth (/5000).
  score_json = tmp_path / "score.json"
  capsys.readouterr()
  rc = main(["score", "--pred", str(out), "--pred_pattern", "{stem}_depth.npy", "--gt", str(nyu),
             "--gt_pattern", "depth_gt_{stem}.png", "--gt_scale", "5000", "--protocol", "nyu_eigen",
             "--out", str(score_json)])  # fmt: skip
  assert rc == 0
  scored = json.loads(score_json.read_text())["depth"]
  assert scored["files"] == 2 and scored["protocol"] == "nyu_eigen"
  for k in ("abs_rel", "rmse", "delta1"):
    assert scored[k] is not None and np.isfinite(scored[k]), k
  assert "abs_rel" in capsys.readouterr().out


def test_one_checkpoint_gets_identical_metrics_through_every_evaluation_path(
  toy_registered, tfds_dir, tmp_path
):
  """Training-time evaluation, `semdepth evaluate` (the notebook calls the same evaluate_workdir) and the
  quickstart's evaluation give the same numbers for the same checkpoint and split."""
  from semdepth_jax import quickstart
  from semdepth_jax.train import config_utils, loop

  cfg_path = tmp_path / "toy_config.py"
  cfg_path.write_text(CONFIG_PY)
  config = config_utils.load_config(
    str(cfg_path), [f"--config.data_dir={tfds_dir}", "--config.eval.split=validation"]
  )
  workdir = tmp_path / "workdir"
  result = loop.train(config, workdir)
  during_training = result.eval_metrics
  assert {"abs_rel", "rmse", "delta1", "miou", "pixel_acc"} <= set(during_training)

  rc = main(["evaluate", "--workdir", str(workdir), "--split", "validation"])
  assert rc == 0
  out = workdir / "eval" / "validation" / "dataset_synthetic_city" / "resize" / "metrics.json"
  cli = evaluate.report_scalars(json.loads(out.read_text()))
  from_quickstart = quickstart.evaluate_with_baselines(config, str(workdir), split="validation")
  for name, got in (("semdepth evaluate", cli), ("quickstart", from_quickstart["model"])):
    assert set(got) == set(during_training), name
    for k, v in during_training.items():
      assert got[k] == pytest.approx(v, rel=1e-6, abs=1e-7), (name, k)
  # The quickstart's baselines (constant predictions through the same Evaluation) against numpy.
  base, stats = from_quickstart["baseline"], from_quickstart["baselines"]
  ex = eval_examples(tfds_dir, "validation")
  seg = ex["segmentation"]
  labelled = seg != 255
  assert base["pixel_acc"] == pytest.approx(
    np.mean(seg[labelled] == stats["majority_class"]), rel=1e-6
  )
  per_image = []
  for g in ex["depth"]:
    v = (g > 1e-3) & (g < 80.0)
    per_image.append(np.mean(np.abs(stats["mean_depth"] - g[v]) / g[v]))
  assert base["abs_rel"] == pytest.approx(np.mean(per_image), rel=1e-5)


def test_named_evals_run_during_training_with_the_same_numbers(toy_registered, tfds_dir, tmp_path):
  from semdepth_jax.train import config_utils, loop

  cfg_path = tmp_path / "toy_config.py"
  cfg_path.write_text(
    CONFIG_PY.replace(
      "  return c\n",
      '  c.evals["held_out"] = common.eval_entry(split="test", dataset="synthetic_city/tiny")\n'
      "  return c\n",
    )
  )
  config = config_utils.load_config(str(cfg_path), [f"--config.data_dir={tfds_dir}"])
  workdir = tmp_path / "workdir"
  loop.train(config, workdir)
  records = [json.loads(line) for line in (workdir / "metrics.jsonl").read_text().splitlines()]
  named = [r for r in records if r["split"] == "eval/held_out"]
  assert [r["step"] for r in named] == [2]  # at the end of training
  report = evaluate.evaluate_workdir(workdir, split="test", data_dir=str(tfds_dir), write=False)
  for k, v in evaluate.report_scalars(report).items():
    assert named[0][k] == pytest.approx(v, rel=1e-6, abs=1e-7), k
