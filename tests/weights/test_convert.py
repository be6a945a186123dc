"""`semdepth convert-weights`, load_converted and merge_pretrained on tiny synthetic checkpoints.

The synthetic state dicts are written by hand with torchvision's ResNet names and PyTorch layouts (or Keras
``layer/weight`` names), so the expected converted arrays are plain numpy transposes of the inputs.
"""

import hashlib
import json

import flax.linen as nn
import h5py
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from safetensors.numpy import save_file

from semdepth_jax import main as cli
from semdepth_jax.models import backbones, layers
from semdepth_jax.weights import convert, keymap

TINY = ["depths=(1,1,1,1)", "widths=(2,3,4,5)", "stem_width=2", "num_classes=3"]


def tv_resnet_state(seed=0, stem=2, widths=(2, 3, 4, 5), classes=3):
  """torchvision resnet (BasicBlock, one block per stage) state dict, names and shapes by hand."""
  rng = np.random.default_rng(seed)
  sd = {}

  def conv(name, o, i, k):
    sd[f"{name}.weight"] = rng.normal(size=(o, i, k, k)).astype(np.float32)

  def bn(name, c):
    sd[f"{name}.weight"] = rng.uniform(0.5, 1.5, c).astype(np.float32)
    sd[f"{name}.bias"] = rng.normal(size=c).astype(np.float32)
    sd[f"{name}.running_mean"] = rng.normal(size=c).astype(np.float32)
    sd[f"{name}.running_var"] = rng.uniform(0.5, 1.5, c).astype(np.float32)
    sd[f"{name}.num_batches_tracked"] = np.array(11, np.int64)

  conv("conv1", stem, 3, 7)
  bn("bn1", stem)
  cin = stem
  for s, w in enumerate(widths, 1):
    p = f"layer{s}.0"
    conv(f"{p}.conv1", w, cin, 3)
    bn(f"{p}.bn1", w)
    conv(f"{p}.conv2", w, w, 3)
    bn(f"{p}.bn2", w)
    if s > 1:  # stride 2 (layer1 keeps 2 -> 2 channels at stride 1: no projection)
      conv(f"{p}.downsample.0", w, cin, 1)
      bn(f"{p}.downsample.1", w)
    cin = w
  sd["fc.weight"] = rng.normal(size=(classes, cin)).astype(np.float32)
  sd["fc.bias"] = rng.normal(size=classes).astype(np.float32)
  return sd


def _run(argv, capsys):
  rc = cli.main(argv)
  captured = capsys.readouterr()
  return rc, captured.out, captured.err


def _convert_argv(src, out, *extra):
  argv = ["convert-weights", "--arch", "resnet18", "--src", str(src), "--out", str(out)]
  for s in TINY:
    argv += ["--set", s]
  return argv + list(extra)


def _check_resnet_values(variables, sd):
  p, b = variables["params"], variables["batch_stats"]
  w = sd["conv1.weight"]  # (O, I, kH, kW) -> (kH, kW, I, O)
  for o, i, y, x in [(0, 0, 0, 0), (1, 2, 6, 3), (0, 1, 4, 5)]:
    assert p["conv1"]["kernel"][y, x, i, o] == w[o, i, y, x]
  np.testing.assert_array_equal(
    p["layer2"]["block0"]["downsample_conv"]["kernel"][0, 0],
    sd["layer2.0.downsample.0.weight"][:, :, 0, 0].T,
  )
  np.testing.assert_array_equal(p["layer4"]["block0"]["bn2"]["scale"], sd["layer4.0.bn2.weight"])
  np.testing.assert_array_equal(b["layer3"]["block0"]["bn1"]["var"], sd["layer3.0.bn1.running_var"])
  np.testing.assert_array_equal(b["bn1"]["mean"], sd["bn1.running_mean"])
  np.testing.assert_array_equal(p["fc"]["kernel"], sd["fc.weight"].T)
  np.testing.assert_array_equal(p["fc"]["bias"], sd["fc.bias"])
  assert "downsample_conv" not in p["layer1"]["block0"]


def _check_metadata(meta, src, arch="resnet18"):
  assert meta["architecture"] == arch
  assert meta["source"]["file"] == src.name
  assert meta["source"]["sha256"] == hashlib.sha256(src.read_bytes()).hexdigest()
  assert meta["source"]["bytes"] == src.stat().st_size
  assert meta["semdepth_jax_version"]


def test_round_trip_pth_wrapped_with_module_prefix(tmp_path, capsys):
  torch = pytest.importorskip("torch")
  sd = tv_resnet_state()
  src = tmp_path / "tiny.pth.tar"
  wrapped = {f"module.{k}": torch.from_numpy(v) for k, v in sd.items()}
  torch.save({"epoch": 3, "state_dict": wrapped, "best_prec1": 1.5}, src)
  rc, out, err = _run(_convert_argv(src, tmp_path / "out"), capsys)
  assert rc == 0, err
  assert "wrote" in out
  variables, meta = convert.load_converted(tmp_path / "out")
  _check_resnet_values(variables, sd)
  _check_metadata(meta, src)
  assert convert.preprocessing_from_metadata(meta) == backbones.IMAGENET
  module = convert.build_from_metadata(meta)
  assert (module.depths, module.widths, module.stem_width) == ((1, 1, 1, 1), (2, 3, 4, 5), 2)
  assert module.block == "basic" and module.num_classes == 3


def test_round_trip_pt_model_wrapper(tmp_path, capsys):
  torch = pytest.importorskip("torch")
  sd = tv_resnet_state(seed=1)
  src = tmp_path / "tiny.pt"
  torch.save({"model": {k: torch.from_numpy(v) for k, v in sd.items()}}, src)
  rc, _, err = _run(_convert_argv(src, tmp_path / "out"), capsys)
  assert rc == 0, err
  _check_resnet_values(convert.load_converted(tmp_path / "out")[0], sd)


def test_round_trip_safetensors(tmp_path, capsys):
  sd = tv_resnet_state(seed=2)
  src = tmp_path / "tiny.safetensors"
  save_file(sd, str(src))
  argv = _convert_argv(src, tmp_path / "out", "--preprocessing", "caffe_bgr", "--set", "bn=frozen")
  rc, _, err = _run(argv, capsys)
  assert rc == 0, err
  variables, meta = convert.load_converted(tmp_path / "out")
  _check_metadata(meta, src)
  assert convert.preprocessing_from_metadata(meta) == backbones.CAFFE_BGR
  # Frozen BN: the same file fills scale / bias in batch_stats.
  b = variables["batch_stats"]
  np.testing.assert_array_equal(b["layer4"]["block0"]["bn2"]["scale"], sd["layer4.0.bn2.weight"])
  assert "bn1" not in variables["params"]
  assert convert.build_from_metadata(meta).bn == layers.FROZEN_BN


class TinyKeras(nn.Module):
  """A Keras-named model: conv 'block1_conv1' and dense 'predictions'."""

  num_classes: int = 3

  @nn.compact
  def __call__(self, x, train=False):
    x = layers.Conv(4, (3, 3), name="block1_conv1")(x)
    x = jnp.mean(nn.relu(x), axis=(1, 2))
    return {"features": {"stride1": x}, "logits": nn.Dense(self.num_classes, name="predictions")(x)}


KERAS_TABLE = keymap.rules(
  [
    (f"{layer}/{w}", f"{layer}/{w}", "copy")
    for layer in ("block1_conv1", "predictions")
    for w in ("kernel", "bias")
  ]
)


@pytest.fixture
def tiny_keras(monkeypatch):
  entry = backbones.BackboneEntry(
    build=lambda **a: TinyKeras(**a),
    key_table=lambda **a: KERAS_TABLE,
    preprocessing=lambda **a: backbones.IMAGENET,
    reference="test: a Keras-named model",
  )
  monkeypatch.setitem(backbones.BACKBONES, "tiny_keras", entry)


def _keras_weights(seed=0):
  rng = np.random.default_rng(seed)
  return {
    "block1_conv1": {"kernel": rng.normal(size=(3, 3, 3, 4)), "bias": rng.normal(size=4)},
    "predictions": {"kernel": rng.normal(size=(4, 3)), "bias": rng.normal(size=3)},
  }


@pytest.mark.parametrize("whole_model", [False, True])
def test_round_trip_keras_h5(tmp_path, capsys, tiny_keras, whole_model):
  weights = _keras_weights()
  src = tmp_path / "tiny.h5"
  with h5py.File(src, "w") as f:
    root = f.create_group("model_weights") if whole_model else f
    root.attrs["layer_names"] = [n.encode() for n in weights]
    for layer, ws in weights.items():
      g = root.create_group(layer)
      g.attrs["weight_names"] = [f"{layer}/{w}:0".encode() for w in ws]
      for w, arr in ws.items():
        g.create_dataset(f"{layer}/{w}:0", data=arr.astype(np.float32))
  argv = [
    "convert-weights",
    "--arch",
    "tiny_keras",
    "--src",
    str(src),
    "--out",
    str(tmp_path / "o"),
  ]
  rc, _, err = _run(argv, capsys)
  assert rc == 0, err
  variables, meta = convert.load_converted(tmp_path / "o")
  _check_metadata(meta, src, "tiny_keras")
  assert variables["batch_stats"] == {}
  for layer, ws in weights.items():
    for w, arr in ws.items():
      np.testing.assert_array_equal(variables["params"][layer][w], arr.astype(np.float32))


def test_read_plain_h5_walks_datasets(tmp_path):
  src = tmp_path / "plain.hdf5"
  with h5py.File(src, "w") as f:
    f.create_dataset("a/b/kernel:0", data=np.ones((2, 2)))
    f.create_dataset("c", data=np.zeros(3))
  state = convert.read_state_dict(src)
  assert sorted(state) == ["a/b/kernel", "c"]


def test_wrong_shape_and_missing_key_give_one_error(tmp_path, capsys):
  sd = tv_resnet_state(seed=3)
  sd["layer2.0.conv1.weight"] = np.zeros((3, 3, 3, 3), np.float32)  # should be (3, 2, 3, 3)
  del sd["layer3.0.bn2.running_var"]
  src = tmp_path / "bad.safetensors"
  save_file(sd, str(src))
  rc, _, err = _run(_convert_argv(src, tmp_path / "out"), capsys)
  assert rc == 1
  lines = err.strip().splitlines()
  assert str(src) in lines[0] and "(2 problems)" in lines[0]
  assert (
    "shape mismatch at params/layer2/block0/conv1/kernel: expected (3, 3, 2, 3), got (3, 3, 3, 3)"
    in err
  )
  assert f"missing in {src}: layer3.0.bn2.running_var (for layer3/block0/bn2/var)" in err
  assert len(lines) == 3
  assert not (tmp_path / "out").exists()


def test_headless_conversion_drops_the_classifier(tmp_path, capsys):
  sd = tv_resnet_state(seed=4)
  src = tmp_path / "tiny.safetensors"
  save_file(sd, str(src))
  rc, _, err = _run(_convert_argv(src, tmp_path / "out", "--set", "num_classes=0"), capsys)
  assert rc == 0, err
  variables, meta = convert.load_converted(tmp_path / "out")
  assert "fc" not in variables["params"] and meta["attributes"]["num_classes"] == 0


@pytest.mark.parametrize(
  "name,content,needle",
  [
    ("w.npz", b"x", "unknown weights format"),
    ("w.safetensors", b"\x00garbage", "not a readable safetensors file"),
    ("w.h5", b"not hdf5", "not a readable HDF5 file"),
  ],
)
def test_bad_files_give_one_line_naming_them(tmp_path, capsys, name, content, needle):
  src = tmp_path / name
  src.write_bytes(content)
  rc, _, err = _run(_convert_argv(src, tmp_path / "out"), capsys)
  assert rc == 1
  assert len(err.strip().splitlines()) == 1 and str(src) in err and needle in err


def test_bad_torch_file_gives_one_line(tmp_path, capsys):
  pytest.importorskip("torch")
  src = tmp_path / "w.pth"
  src.write_bytes(b"not a zip nor a pickle")
  rc, _, err = _run(_convert_argv(src, tmp_path / "out"), capsys)
  assert rc == 1 and len(err.strip().splitlines()) == 1
  assert str(src) in err and "torch.load(weights_only=True) failed" in err


def test_usage_errors_exit_2(tmp_path, capsys):
  src = tmp_path / "tiny.safetensors"
  save_file(tv_resnet_state(), str(src))
  with pytest.raises(SystemExit) as e:
    cli.main(["convert-weights", "--arch", "resnet18"])
  assert e.value.code == 2
  with pytest.raises(SystemExit) as e:
    cli.main(["convert-weights", "--help"])
  assert e.value.code == 0
  capsys.readouterr()
  argv = ["convert-weights", "--arch", "resnet7", "--src", str(src), "--out", str(tmp_path / "o")]
  rc, _, err = _run(argv, capsys)
  assert rc == 2 and "unknown backbone 'resnet7'" in err and "resnet101_deeplab" in err
  rc, _, err = _run(_convert_argv(src, tmp_path / "o", "--set", "widths"), capsys)
  assert rc == 2 and "key=value" in err
  rc, _, err = _run(_convert_argv(src, tmp_path / "o", "--set", "colour=2"), capsys)
  assert rc == 2 and "colour" in err
  rc, _, err = _run(_convert_argv(src, tmp_path / "o", "--set", "bn=sometimes"), capsys)
  assert rc == 2 and "bn=" in err
  assert _run(_convert_argv(src, tmp_path / "o"), capsys)[0] == 0
  rc, _, err = _run(_convert_argv(src, tmp_path / "o"), capsys)
  assert rc == 2 and "--overwrite" in err
  assert _run(_convert_argv(src, tmp_path / "o", "--overwrite"), capsys)[0] == 0


def test_load_converted_rejects_other_folders(tmp_path):
  with pytest.raises(convert.WeightsFileError, match="not a converted-weights directory"):
    convert.load_converted(tmp_path)


# ------------------------------------------------------------------------------------------------------
# merge_pretrained.
# ------------------------------------------------------------------------------------------------------
def _z(*shape):
  return np.zeros(shape, np.float32)


def _target():
  """A model whose backbone (frozen BN) sits at encoder/backbone, next to a head."""
  return {
    "params": {
      "encoder": {"backbone": {"conv": {"kernel": _z(3, 3, 3, 4)}, "fc": {"kernel": _z(4, 2)}}},
      "head": {"kernel": _z(4, 1)},
    },
    "batch_stats": {
      "encoder": {"backbone": {"bn": {"mean": _z(4), "var": _z(4), "scale": _z(4), "bias": _z(4)}}}
    },
  }


def _pretrained():
  """Trainable-BN layout (scale / bias in params) and a 10-class fc."""
  rng = np.random.default_rng(0)

  def r(*shape):
    return rng.normal(size=shape).astype(np.float32)

  return {
    "params": {
      "conv": {"kernel": r(3, 3, 3, 4)},
      "fc": {"kernel": r(4, 10)},
      "bn": {"scale": r(4), "bias": r(4)},
    },
    "batch_stats": {"bn": {"mean": r(4), "var": r(4)}},
  }


def test_merge_pretrained_with_exclude_and_collection_change():
  tgt, pre = _target(), _pretrained()
  out = convert.merge_pretrained(tgt, pre, prefix="encoder/backbone", exclude=[r"^fc/"])
  bb = out["params"]["encoder"]["backbone"]
  np.testing.assert_array_equal(bb["conv"]["kernel"], pre["params"]["conv"]["kernel"])
  np.testing.assert_array_equal(bb["fc"]["kernel"], _z(4, 2))  # excluded: the target's own
  np.testing.assert_array_equal(out["params"]["head"]["kernel"], _z(4, 1))
  bn = out["batch_stats"]["encoder"]["backbone"]["bn"]
  np.testing.assert_array_equal(bn["scale"], pre["params"]["bn"]["scale"])
  np.testing.assert_array_equal(bn["var"], pre["batch_stats"]["bn"]["var"])
  assert jax.tree.structure(out) == jax.tree.structure(tgt)
  # The full path works as a pattern too.
  out = convert.merge_pretrained(
    tgt, pre, prefix="encoder/backbone", exclude=["encoder/backbone/fc"]
  )
  np.testing.assert_array_equal(out["params"]["encoder"]["backbone"]["fc"]["kernel"], _z(4, 2))


def test_merge_pretrained_lists_every_problem():
  tgt, pre = _target(), _pretrained()
  tgt["params"]["encoder"]["backbone"]["extra"] = {"kernel": _z(2, 2)}
  pre["params"]["old"] = {"bias": _z(5)}
  with pytest.raises(convert.PretrainedMismatchError) as e:
    convert.merge_pretrained(tgt, pre, prefix="encoder/backbone")
  msg = str(e.value)
  assert "(3 problems" in msg
  assert "shape mismatch at params/encoder/backbone/fc/kernel: expected (4, 2), got (4, 10)" in msg
  assert "missing in pretrained: params/encoder/backbone/extra/kernel (expected (2, 2))" in msg
  assert "unexpected in pretrained: params/old/bias (5,)" in msg


def test_merge_pretrained_bad_prefix_and_pattern():
  with pytest.raises(convert.PretrainedMismatchError, match="no subtree 'backbone'"):
    convert.merge_pretrained(_target(), _pretrained(), prefix="backbone")
  with pytest.raises(ValueError, match="not a regex"):
    convert.merge_pretrained(_target(), _pretrained(), prefix="encoder/backbone", exclude=["("])


def test_convert_then_merge_into_a_model(tmp_path):
  """End to end: a converted tiny ResNet-18 loaded into a model that owns it as `backbone`."""
  sd = tv_resnet_state(seed=5)
  src = tmp_path / "tiny.safetensors"
  save_file(sd, str(src))
  attrs = convert.parse_set(TINY)
  convert.convert("resnet18", src, tmp_path / "out", attributes=attrs)
  pretrained, meta = convert.load_converted(tmp_path / "out")
  bb = convert.build_from_metadata(meta)

  class Model(nn.Module):
    backbone: nn.Module

    @nn.compact
    def __call__(self, x):
      feats = self.backbone(x)["features"]
      return nn.Dense(1, name="head")(feats["stride32"].mean(axis=(1, 2)))

  model = Model(backbone=bb.clone(num_classes=0))
  x = np.random.default_rng(0).normal(size=(1, 40, 40, 3)).astype(np.float32)
  shapes = jax.eval_shape(model.init, jax.random.key(0), x)
  target = jax.tree.map(lambda a: np.zeros(a.shape, a.dtype), shapes)
  merged = convert.merge_pretrained(target, pretrained, prefix="backbone", exclude=["^fc/"])
  np.testing.assert_array_equal(
    merged["params"]["backbone"]["conv1"]["kernel"], pretrained["params"]["conv1"]["kernel"]
  )
  got = jax.jit(
    lambda v: bb.clone(num_classes=0).apply(
      {"params": v["params"]["backbone"], "batch_stats": v["batch_stats"]["backbone"]}, x
    )
  )(merged)
  want = jax.jit(lambda v: bb.apply(v, x))(pretrained)
  np.testing.assert_allclose(got["features"]["stride32"], want["features"]["stride32"], atol=1e-5)
  assert json.loads((tmp_path / "out" / "metadata.json").read_text())["collections"] == [
    "batch_stats",
    "params",
  ]
