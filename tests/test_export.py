"""Tests of semdepth_jax.export: StableHLO / ONNX artifacts (model + decode) against the JAX model.

Parity: every registered model at tiny widths, random weights and random images; the exported artifact,
reloaded from bytes (``jax.export.deserialize`` / ``onnxruntime``), must give the JAX model's decoded
outputs (metres, class probabilities) within 1e-5 (f32) / 1e-2 (bf16). The references are
``contract.decode(model.apply(...))`` run by JAX, not the export code. The slower families are marked
``slow``; deeplab_sid (depth bins decoded to metres) and SSegDep-Net (OHESS planes from its own predicted
labels) always run. Round trip: the toy model trained on synthetic_city/tiny (tests/test_evaluate.py) is
exported with the CLI, its workdir deleted, and ``semdepth predict --exported`` must write what
``semdepth predict --workdir`` wrote.
"""

import json
import shutil

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from semdepth_jax import export, models
from semdepth_jax.main import main
from semdepth_jax.models import contract
from tests import test_evaluate

tfds_dir = test_evaluate.tfds_dir
toy_registered = test_evaluate.toy_registered
trained_workdir = test_evaluate.trained_workdir

# Tiny widths per registered model (the real architectures; sizes as in tests/models).
_TINY_VGG = ((2, 2), (3, 3), (4, 4, 4), (5, 5, 5), (6, 6, 6))
_TINY_TRUNK = {"widths": (3, 4, 4, 4, 3), "fc_hidden": 5}
_TINY_REFINE = {"conv1_width": 3, "widths": (4, 4, 4)}
_TINY_RESNET = {
  "name": "resnet101_deeplab",
  "depths": (1, 1, 1, 1),
  "widths": (2, 2, 3, 4),
  "stem_width": 4,
}
_VGG_ASPP = {"backbone": {"widths": _TINY_VGG}, "aspp": {"width": 6, "rates": (1, 2, 3, 4)}}
TINY = {
  "unet": {"num_classes": 5, "base_width": 4},
  "scrx": {
    "num_classes": 5,
    "use_ohess": False,
    "widths": (8, 4, 4, 2),
    "refine_widths": (8, 3),
    "depth_norm": 20.0,
  },
  "cnn3d_s": {"num_classes": 5, "widths": (4, 4, 8), "depth_norm": 20.0},
  "cnn3d_up": {
    "num_classes": 5,
    "widths": (4, 4, 4),
    "bottleneck_width": 4,
    "up_widths": (4, 4),
    "depth_norm": 20.0,
  },
  "ssegdepnet": {
    "num_classes": 5,
    "ohess_mode": "argmax",
    "unet": {"base_width": 4},
    "depth_net": {"widths": (4, 4, 4), "bottleneck_width": 4, "up_widths": (4, 4)},
  },
  "deeplab_vgg": {"num_classes": 5, **_VGG_ASPP},
  "depthnet": {
    "global_net": _TINY_TRUNK,
    "gradient_net": {"widths": _TINY_TRUNK["widths"]},
    "refine": _TINY_REFINE,
  },
  "hybridnet_a1": {"num_classes": 5, **_VGG_ASPP, "refine": _TINY_REFINE},
  "hybridnet_a2": {
    "num_classes": 5,
    **_VGG_ASPP,
    "global_net": _TINY_TRUNK,
    "refine": _TINY_REFINE,
  },
  "deeplab_v2": {"num_classes": 5, "backbone": _TINY_RESNET},
  "deeplab_sid": {"num_classes": 5, "backbone": _TINY_RESNET},
  "deeplab_regression": {"num_classes": 5, "backbone": _TINY_RESNET},
  "ds_sidenet": {"width_divisor": 16, "sam_k": 4},
  "semantic_md": {
    "encoder": {"name": "efficientnet_b0", "width_multiplier": 0.25, "depth_multiplier": 0.25},
    "decoder_channels": (16, 8, 8, 4, 4),
    "aspp_channels": 8,
  },
}
SIZE = (32, 48)

NEEDS_LABELS = ("cnn3d_s", "cnn3d_up")
"""Registry models whose default semantic source is ground truth (not exportable as configured)."""

FAST = ("ssegdepnet",)
"""Always run: OHESS planes from predicted labels (ssegdepnet); bins decoding always runs in
test_bins_model_exports_metres_from_bin_logits (deeplab_sid)."""


def random_variables(model, size=SIZE, seed=0):
  """Random weights of the model's abstract variables (no init compile): N(0, 1/fan_in), BN var ~ U[0.5, 1.5]."""
  abstract = jax.eval_shape(
    lambda x: model.init(jax.random.key(0), x, train=False),
    jax.ShapeDtypeStruct((1, *size, 3), jnp.float32),
  )
  rng = np.random.default_rng(seed)

  def fill(path, leaf):
    name = str(path[-1].key) if hasattr(path[-1], "key") else str(path[-1])
    shape = leaf.shape
    if name == "var":
      return jnp.asarray(rng.uniform(0.5, 1.5, shape), leaf.dtype)
    if name == "scale":
      return jnp.asarray(1.0 + 0.1 * rng.standard_normal(shape), leaf.dtype)
    fan_in = int(np.prod(shape[:-1])) if len(shape) > 1 else 1
    return jnp.asarray(rng.standard_normal(shape) / np.sqrt(max(fan_in, 1)), leaf.dtype)

  return jax.tree_util.tree_map_with_path(fill, abstract)


def reference(model, variables, x):
  """The JAX model's decoded outputs (the contract's decode, not the export code)."""
  out = jax.jit(lambda v, x: model.decode(model.apply(v, x, train=False)))(variables, x)
  return {k: np.asarray(v, np.float32) for k, v in out.items()}


def images(n=2, size=SIZE, seed=1):
  return np.random.default_rng(seed).uniform(0.0, 1.0, (n, *size, 3)).astype(np.float32)


def _params(names):
  return [
    pytest.param(n, marks=() if n in FAST else pytest.mark.slow)
    for n in names
    if n not in NEEDS_LABELS
  ]


@pytest.mark.parametrize("name", _params(sorted(models.MODELS)))
def test_stablehlo_equals_jax_model(name, tmp_path):
  model = models.get_model(name, **TINY[name])
  variables = random_variables(model)
  path = export.export_model(
    model, variables, tmp_path / f"{name}.shlo", fmt="stablehlo", input_size=SIZE
  )
  # Reloaded from bytes alone: jax.export.deserialize, no model code.
  exported = jax.export.deserialize(bytearray(path.read_bytes()))
  x = images(2)
  got = jax.device_get(exported.call(jnp.asarray(x)))
  ref = reference(model, variables, x)
  assert set(got) == set(ref) and set(got) <= {"depth", "seg_probs"}
  for k in ref:
    np.testing.assert_allclose(got[k], ref[k], rtol=1e-5, atol=1e-5, err_msg=f"{name} {k}")
  # Symbolic batch: the same artifact takes a batch of 1.
  one = jax.device_get(exported.call(jnp.asarray(x[:1])))
  for k in ref:
    np.testing.assert_allclose(one[k], ref[k][:1], rtol=1e-5, atol=1e-5)
  side = json.loads(export.sidecar_path(path).read_text())
  assert side["input"]["shape"] == [None, *SIZE, 3] and side["batch"] == "dynamic"
  for k in ref:
    assert side["outputs"][k]["shape"] == [None, *ref[k].shape[1:]]
  assert side["outputs"].get("depth", {"units": "metres"})["units"] == "metres"


def test_bins_model_exports_metres_from_bin_logits(tmp_path):
  """deeplab_sid's exported depth is the SID decode of its logits (independent numpy decode)."""
  from semdepth_jax import depth_bins

  model = models.get_model("deeplab_sid", **TINY["deeplab_sid"])
  assert contract.decode_options(model)["depth_output"] == "bins"
  variables = random_variables(model)
  path = export.export_model(
    model, variables, tmp_path / "sid.shlo", fmt="stablehlo", input_size=SIZE
  )
  x = images(1)
  got = export.load_exported(path).run(x)["depth"]
  logits = np.asarray(jax.jit(lambda v, x: model.apply(v, x)["depth_logits"])(variables, x))
  opts = contract.decode_options(model)
  bins = depth_bins.make_bins(*opts["depth_bins"])
  values = np.asarray(depth_bins.class_values(bins, mode=opts["bin_value_mode"]))
  assert opts["bin_decode"] == "argmax"
  np.testing.assert_allclose(got, values[np.argmax(logits, axis=-1)], rtol=1e-6)


@pytest.mark.slow
def test_bf16_export_equals_bf16_jax_model(tmp_path):
  size = (16, 16)
  model = models.get_model("unet", **TINY["unet"])
  variables = random_variables(model, size)
  path = export.export_model(
    model, variables, tmp_path / "u.shlo", fmt="stablehlo", input_size=size, dtype="bf16", batch=2
  )
  x = images(2, size)
  got = export.load_exported(path).run(x)
  ref = reference(model.clone(dtype=jnp.bfloat16), variables, x)
  np.testing.assert_allclose(got["seg_probs"], ref["seg_probs"], rtol=1e-2, atol=1e-2)
  assert json.loads(export.sidecar_path(path).read_text())["input"]["shape"][0] == 2


@pytest.mark.parametrize("name", NEEDS_LABELS)
def test_models_reading_ground_truth_labels_are_refused(name, tmp_path):
  model = models.get_model(name, **TINY[name])
  variables = random_variables(model)
  with pytest.raises(export.ExportError, match=f"model {name} reads ground-truth labels") as err:
    export.export_model(model, variables, tmp_path / "x.shlo", fmt="stablehlo", input_size=SIZE)
  assert "\n" not in str(err.value)


ONNX_WORKS = ("deeplab_sid", "ds_sidenet", "hybridnet_a1", "scrx", "semantic_md", "unet")
"""Families whose ONNX conversion runs in onnxruntime (README "Export"); ds_sidenet and deeplab_sid
decode bins; deeplab_sid and hybridnet_a1 have padded ceil-mode max-pools (exported as slice maxima)."""

ONNX_FAILS = {
  "ssegdepnet": "Unsupported conv layouts",  # jax2onnx has no 3-D convolution (its 3D CNN-UP)
}


@pytest.mark.slow
@pytest.mark.parametrize("name", ONNX_WORKS)
def test_onnx_equals_jax_model(name, tmp_path):
  pytest.importorskip("jax2onnx")
  onnx = pytest.importorskip("onnx")
  pytest.importorskip("onnxruntime")
  model = models.get_model(name, **TINY[name])
  variables = random_variables(model)
  path = export.export_model(
    model, variables, tmp_path / f"{name}.onnx", fmt="onnx", input_size=SIZE, batch=2
  )
  proto = onnx.load(str(path))
  onnx.checker.check_model(proto, full_check=True)
  assert [i.name for i in proto.graph.input] == ["image"]
  x = images(2)
  got = export.load_exported(path).run(x)
  ref = reference(model, variables, x)
  assert set(got) == set(ref)
  for k in ref:
    np.testing.assert_allclose(got[k], ref[k], rtol=1e-5, atol=1e-5, err_msg=f"{name} {k}")
  one = export.load_exported(path).run(x[:1])  # fewer images than the fixed batch: padded
  for k in ref:
    np.testing.assert_allclose(one[k], ref[k][:1], rtol=1e-5, atol=1e-5)


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(ONNX_FAILS))
def test_onnx_unsupported_operator_is_named_in_one_line(name, tmp_path):
  pytest.importorskip("jax2onnx")
  pytest.importorskip("onnxruntime")
  model = models.get_model(name, **TINY[name])
  variables = random_variables(model)
  with pytest.raises(export.ExportError) as err:
    export.export_model(model, variables, tmp_path / "x.onnx", fmt="onnx", input_size=SIZE, batch=1)
  msg = str(err.value)
  assert f"model {name}" in msg and ONNX_FAILS[name] in msg and "\n" not in msg
  assert not (tmp_path / "x.onnx").exists()


def test_onnx_dynamic_batch_asks_for_a_fixed_one(tmp_path):
  pytest.importorskip("jax2onnx")
  model = models.get_model("unet", **TINY["unet"])
  with pytest.raises(export.ExportError, match="model unet must be exported to ONNX with a fixed"):
    export.export_model(
      model, random_variables(model), tmp_path / "u.onnx", fmt="onnx", input_size=SIZE
    )


def test_round_trip_train_export_delete_predict(trained_workdir, tmp_path, capsys):
  """Export the trained toy workdir with the CLI, delete the workdir, predict from the artifact alone."""
  from PIL import Image

  work = tmp_path / "work"
  shutil.copytree(trained_workdir, work)
  rng = np.random.default_rng(3)
  img_dir = tmp_path / "in"
  img_dir.mkdir()
  for i, (h, w) in enumerate([(16, 24), (29, 37)]):
    Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)).save(img_dir / f"im{i}.png")
  assert (
    main(
      ["predict", "--workdir", str(work), "--images", str(img_dir), "--out", str(tmp_path / "a")]
    )
    == 0
  )
  art = tmp_path / "serve" / "toy.shlo"
  assert main(["export", "--workdir", str(work), "--format", "stablehlo", "--out", str(art)]) == 0
  side = json.loads(export.sidecar_path(art).read_text())
  assert side["dataset"] == "synthetic_city/tiny" and side["checkpoint"]["step"] == 2
  assert len(side["checkpoint"]["sha256"]) == 64 and side["input"]["shape"] == [None, 16, 24, 3]
  assert len(side["class_names"]) == len(side["class_colors"]) == 14
  arts = {"stablehlo": art}
  try:
    import jax2onnx  # noqa: F401
    import onnxruntime  # noqa: F401
  except ImportError:
    pass
  else:
    arts["onnx"] = tmp_path / "serve" / "toy.onnx"
    cmd = ["export", "--workdir", str(work), "--format", "onnx", "--batch", "1"]
    assert main([*cmd, "--out", str(arts["onnx"])]) == 0
  shutil.rmtree(work)
  for fmt, path in arts.items():
    out = tmp_path / fmt
    cmd = ["predict", "--exported", str(path), "--images", str(img_dir), "--out", str(out)]
    assert main(cmd) == 0
    check_same_predictions(tmp_path / "a", out)
  assert "predicted 2 image(s) with step 2" in capsys.readouterr().out


def check_same_predictions(a_dir, out):
  """Same files; depth within 1e-5 m; identical class ids."""
  from PIL import Image

  assert sorted(p.name for p in a_dir.iterdir()) == sorted(p.name for p in out.iterdir())
  for i in range(2):
    np.testing.assert_allclose(
      np.load(out / f"im{i}_depth.npy"), np.load(a_dir / f"im{i}_depth.npy"), rtol=1e-5, atol=1e-5
    )
    with Image.open(out / f"im{i}_seg.png") as b, Image.open(a_dir / f"im{i}_seg.png") as a:
      np.testing.assert_array_equal(np.asarray(b), np.asarray(a))


def test_export_cli_errors_are_one_line(trained_workdir, tmp_path, capsys):
  assert main(["export", "--workdir", str(tmp_path), "--format", "stablehlo", "--out", "x"]) == 2
  err = capsys.readouterr().err.strip()
  assert err.startswith("semdepth export: error:") and "config.json" in err and "\n" not in err
  missing = tmp_path / "none.shlo"
  assert main(["predict", "--exported", str(missing), "--images", str(tmp_path), "--out", "o"]) == 2
  err = capsys.readouterr().err.strip()
  assert str(missing) in err and "\n" not in err
  cmd = ["export", "--workdir", str(trained_workdir), "--format", "stablehlo"]
  gone = tmp_path / "gone.py"
  assert main([*cmd, "--out", str(tmp_path / "y"), "--config", str(gone)]) == 2
  err = capsys.readouterr().err.strip()
  assert str(gone) in err and "\n" not in err
  # --config with the run's own config file: the override path works.
  own = trained_workdir.parent / "toy_config.py"
  assert main([*cmd, "--out", str(tmp_path / "z.shlo"), "--config", str(own)]) == 0


def test_export_cli_size_batch_platforms(trained_workdir, tmp_path):
  art = tmp_path / "toy.shlo"
  cmd = ["export", "--workdir", str(trained_workdir), "--format", "stablehlo", "--out", str(art)]
  assert main([*cmd, "--size", "8,12", "--batch", "2", "--platforms", "cpu,cuda"]) == 0
  side = json.loads(export.sidecar_path(art).read_text())
  assert side["input"]["shape"] == [2, 8, 12, 3] and side["platforms"] == ["cpu", "cuda"]
  # ToyJoint is 1x1 convolutions: outputs at the input size.
  assert side["outputs"]["depth"]["shape"] == [2, 8, 12]
  assert side["outputs"]["seg_probs"]["shape"] == [2, 8, 12, 14]
  got = export.load_exported(art).run(images(1, (8, 12)))  # one image in a batch-2 artifact
  assert got["depth"].shape == (1, 8, 12) and np.all(got["depth"] > 0.1)
  np.testing.assert_allclose(got["seg_probs"].sum(-1), 1.0, rtol=1e-5)
  with pytest.raises(SystemExit):
    main([*cmd, "--size", "8"])


@pytest.mark.real_data
@pytest.mark.parametrize("name", ["deeplab_sid", "unet"])
def test_exported_models_equal_jax_on_real_images(name, shared_data, tmp_path):
  """StableHLO and ONNX on real photos (NYUv2 indoor, KITTI outdoor) resized to the export size."""
  from semdepth_jax import predict, resize

  files = [
    shared_data / "nyu_depth_v2_samples" / "joint" / "000433.png",
    shared_data / "kitti_samples" / "depth_sparse" / "rgb" / "0000000005.png",
  ]
  x = np.concatenate(
    [
      np.asarray(resize.image(jnp.asarray(predict.read_image(f)[None], jnp.float32) / 255.0, SIZE))
      for f in files
    ]
  ).clip(0.0, 1.0)  # the antialiased resize can overshoot by ~1e-7
  assert x.shape == (2, *SIZE, 3) and x.std() > 0.05
  model = models.get_model(name, **TINY[name])
  variables = random_variables(model)
  ref = reference(model, variables, x)
  fmts = {"stablehlo": "dynamic"}
  if _has_onnx():
    fmts["onnx"] = 2
  for fmt, batch in fmts.items():
    path = export.export_model(
      model, variables, tmp_path / f"{name}.{fmt}", fmt=fmt, input_size=SIZE, batch=batch
    )
    got = export.load_exported(path).run(x)
    for k in ref:
      np.testing.assert_allclose(got[k], ref[k], rtol=1e-5, atol=1e-5, err_msg=f"{name} {fmt} {k}")


def _has_onnx() -> bool:
  try:
    import jax2onnx  # noqa: F401
    import onnxruntime  # noqa: F401
  except ImportError:
    return False
  return True
