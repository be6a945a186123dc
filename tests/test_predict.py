"""Tests of semdepth_jax.predict (any-size images, output formats, PLY, bad inputs, depth units)."""

import os
import pathlib

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from PIL import Image

from semdepth_jax import predict
from semdepth_jax.data import meta as meta_lib
from semdepth_jax.main import main
from tests import test_evaluate

# Shared fixtures: the toy model registered and trained on synthetic_city/tiny (tests/test_evaluate.py).
tfds_dir = test_evaluate.tfds_dir
toy_registered = test_evaluate.toy_registered
trained_workdir = test_evaluate.trained_workdir
reference_predictions = test_evaluate.reference_predictions

META = meta_lib.get_meta("synthetic_city")


def write_images(folder, sizes, seed=0):
  folder.mkdir(parents=True, exist_ok=True)
  rng = np.random.default_rng(seed)
  paths = []
  for i, (h, w) in enumerate(sizes):
    img = rng.integers(0, 256, size=(h, w, 3), dtype=np.uint8)
    p = folder / f"img{i}.{'png' if i % 2 == 0 else 'jpg'}"
    Image.fromarray(img).save(p)
    paths.append(p)
  return paths


def read_back_rgb(path):
  with Image.open(path) as im:
    return np.asarray(im.convert("RGB"))


def read_back(path):
  with Image.open(path) as im:
    return np.asarray(im), im.mode, im.size, im.getpalette()


def test_outputs_have_original_size_and_formats(trained_workdir, tmp_path):
  paths = write_images(tmp_path / "in", [(37, 53), (61, 29)])
  out = tmp_path / "out"
  res = predict.predict_images(trained_workdir, [tmp_path / "in"], out)
  assert res.ok and res.step == 2
  for p in paths:
    h, w = read_back_rgb(p).shape[:2]
    stem = p.stem
    depth = np.load(out / f"{stem}_depth.npy")
    assert depth.dtype == np.float32 and depth.shape == (h, w)
    png = read_back(out / f"{stem}_depth.png")[0]
    assert png.dtype == np.uint16 and png.shape == (h, w)
    # synthetic_city is outdoor (80 m): the PNG is in 1/256 m (KITTI's convention), recorded in the file;
    # read back / 256 it equals the npy metres within half a unit.
    with Image.open(out / f"{stem}_depth.png") as im:
      assert im.text["depth_scale"] == "256"
    assert np.max(np.abs(png / 256.0 - depth)) <= 0.5 / 256 + 1e-6
    ids, mode, size, pal = read_back(out / f"{stem}_seg.png")
    assert mode == "P" and size == (w, h)
    palette = np.asarray(pal[: 3 * META.num_classes]).reshape(-1, 3)
    np.testing.assert_array_equal(palette, np.asarray(META.class_colors))
    # Palette-PNG values are the class ids: argmax of the model's probabilities at the original size.
    x = read_back_rgb(p)[None].astype(np.float32) / 255.0
    ref_depth, ref_probs = reference_predictions(trained_workdir, x)
    np.testing.assert_array_equal(ids, np.argmax(ref_probs[0], axis=-1))
    np.testing.assert_allclose(depth, ref_depth[0], rtol=1e-6)
    overlay = read_back_rgb(out / f"{stem}_overlay.png")
    assert overlay.shape == (h, w, 3)
    colour = read_back_rgb(out / f"{stem}_depth_color.png")
    k = int(np.ceil(160 / h))  # small images are enlarged by an integer factor for the colour bar
    assert colour.shape[0] == k * h and colour.shape[1] > k * w
    assert (out / f"{stem}_figure.png").stat().st_size > 0


def test_conv_switch_flags_give_the_same_predictions(trained_workdir, tmp_path):
  write_images(tmp_path / "in", [(37, 53)])
  args = ["predict", "--workdir", str(trained_workdir), "--images", str(tmp_path / "in")]
  assert main([*args, "--out", str(tmp_path / "a")]) == 0
  assert (
    main(
      [*args, "--out", str(tmp_path / "b"), "--pointwise_conv", "dot", "--volume_conv", "planes"]
    )
    == 0
  )
  np.testing.assert_allclose(
    np.load(tmp_path / "b" / "img0_depth.npy"),
    np.load(tmp_path / "a" / "img0_depth.npy"),
    rtol=1e-6,
  )
  trained = predict.load_trained(trained_workdir)
  inf = trained.inference_model(volume_conv="planes")
  assert (inf.pointwise_conv, inf.volume_conv) == (
    "conv",
    "planes",
  )  # the config's, then the override


def test_depth_png_scale_per_dataset_range_and_recorded_in_the_png(tmp_path):
  d = np.asarray([[0.0, 1.2344, 70.0, np.nan, -1.0]], np.float32)
  np.testing.assert_array_equal(predict.depth_to_png(d, 1000.0), [[0, 1234, 65535, 0, 0]])
  # 70 m at 1/256 m: 17920, no saturation.
  np.testing.assert_array_equal(predict.depth_to_png(d, 256.0), [[0, 316, 17920, 0, 0]])
  assert predict.depth_png_scale(meta_lib.get_meta("replica")) == 1000.0  # indoor, 10 m cap
  assert predict.depth_png_scale(meta_lib.get_meta("synthetic_city")) == 256.0  # outdoor, 80 m
  assert predict.depth_png_scale(meta_lib.get_meta("kitti_depth")) == 256.0
  path = tmp_path / "x_depth.png"
  predict.write_depth_png(path, d, 256.0)
  with Image.open(path) as im:
    assert im.text["depth_scale"] == "256"
    np.testing.assert_array_equal(np.asarray(im), [[0, 316, 17920, 0, 0]])


def test_ply_header_count_and_backprojection(trained_workdir, tmp_path):
  (p,) = write_images(tmp_path / "in", [(9, 14)])
  out = tmp_path / "out"
  rc = main(["predict", "--workdir", str(trained_workdir), "--images", str(p), "--out", str(out),
             "--ply", "--intrinsics", "10,12,6.5,4"])  # fmt: skip
  assert rc == 0
  data = (out / f"{p.stem}.ply").read_bytes()
  end = data.index(b"end_header\n") + len(b"end_header\n")
  header = data[:end].decode("ascii").splitlines()
  assert header[:2] == ["ply", "format binary_little_endian 1.0"]
  assert "element vertex 126" in header  # 9 x 14 pixels, all with depth > 0 (softplus + 0.1)
  rec = np.frombuffer(
    data[end:],
    dtype=[("x", "<f4"), ("y", "<f4"), ("z", "<f4"), ("r", "u1"), ("g", "u1"), ("b", "u1")],
  )
  assert len(rec) == 126
  depth = np.load(out / f"{p.stem}_depth.npy")
  img = read_back_rgb(p)
  # Row-major vertex order: pixel (v=2, u=5) is vertex 2 * 14 + 5.
  v, u = 2, 5
  r = rec[v * 14 + u]
  z = depth[v, u]
  assert r["z"] == pytest.approx(z)
  assert r["x"] == pytest.approx((u - 6.5) * z / 10.0, rel=1e-6)
  assert r["y"] == pytest.approx((v - 4.0) * z / 12.0, rel=1e-6)
  assert (r["r"], r["g"], r["b"]) == tuple(img[v, u])


def test_ply_ascii_class_colours(tmp_path):
  depth = np.asarray([[1.0, 0.0], [2.0, 3.0]], np.float32)
  labels = np.asarray([[1, 0], [0, 1]])
  img = np.zeros((2, 2, 3), np.uint8)
  predict.write_prediction(
    tmp_path, "x", img, {"depth": depth, "labels": labels}, META, intrinsics=(1.0, 1.0, 0.0, 0.0),
    ply=True, ply_color="class", ply_binary=False,
  )  # fmt: skip
  lines = (tmp_path / "x.ply").read_text().splitlines()
  assert lines[1] == "format ascii 1.0" and "element vertex 3" in lines
  body = lines[lines.index("end_header") + 1 :]
  assert len(body) == 3  # the 0 m pixel is dropped
  c1 = " ".join(str(v) for v in META.class_colors[1])
  assert body[0] == f"0 0 1 {c1}"
  assert body[2] == f"3 3 3 {c1}"  # (u=1, v=1, z=3) -> X = 1 * 3, Y = 1 * 3


def test_bad_image_among_good_ones(trained_workdir, tmp_path, capsys):
  paths = write_images(tmp_path / "in", [(20, 30), (21, 31)])
  bad = tmp_path / "in" / "broken.png"
  bad.write_bytes(b"\x89PNG\r\n\x1a\nnot really a png")
  depth16 = tmp_path / "in" / "depthmap.png"
  Image.fromarray(np.full((5, 5), 1000, np.uint16)).save(depth16)
  missing = tmp_path / "nope.jpg"
  out = tmp_path / "out"
  rc = main(["predict", "--workdir", str(trained_workdir), "--images", str(tmp_path / "in"),
             str(missing), "--out", str(out)])  # fmt: skip
  assert rc == 1
  err = capsys.readouterr().err
  assert str(bad) in err and "cannot read image" in err
  assert str(depth16) in err and "not an RGB photo" in err
  assert str(missing) in err and "no such file" in err
  for p in paths:
    assert (out / f"{p.stem}_depth.npy").exists() and (out / f"{p.stem}_figure.png").exists()


def test_ply_without_intrinsics_is_a_usage_error(trained_workdir, tmp_path, capsys):
  (p,) = write_images(tmp_path / "in", [(8, 8)])
  rc = main(["predict", "--workdir", str(trained_workdir), "--images", str(p), "--out",
             str(tmp_path / "o"), "--ply"])  # fmt: skip
  assert rc == 2
  assert "--intrinsics" in capsys.readouterr().err


def test_collect_images_folders_and_stems(tmp_path):
  (tmp_path / "a").mkdir()
  for name in ("x.PNG", "y.jpeg", "z.txt", "w.bmp"):
    (tmp_path / "a" / name).write_bytes(b"")
  (tmp_path / "b").mkdir()
  (tmp_path / "b" / "x.jpg").write_bytes(b"")
  files, errors = predict.collect_images([tmp_path / "a", tmp_path / "b", tmp_path / "a" / "x.PNG"])
  assert [f.name for f in files] == ["w.bmp", "x.PNG", "y.jpeg"]
  assert "same stem 'x'" in errors[str(tmp_path / "b" / "x.jpg")]
  files, errors = predict.collect_images([tmp_path / "empty"])
  assert not files and "no such file" in errors[str(tmp_path / "empty")]


class ConstantInverted(nn.Module):
  """Predicts inverted normalised depth 0.25 everywhere at half resolution, and no segmentation."""

  depth_output: str = "inverted_normalised"
  depth_norm: float | None = 80.0

  @nn.compact
  def __call__(self, image, *, train=False):
    b = self.param("b", nn.initializers.zeros, (1,))
    h, w = image.shape[1] // 2, image.shape[2] // 2
    return {"depth": jnp.full((image.shape[0], h, w, 1), 0.25) + b}


def test_inverted_normalised_depth_is_converted_to_metres():
  model = ConstantInverted()
  variables = model.init(jax.random.PRNGKey(0), jnp.zeros((1, 8, 8, 3)))
  inf = predict.InferenceModel(model, input_size=(8, 8))
  out = inf.dense(variables, jnp.zeros((1, 13, 17, 3)))
  assert set(out) == {"depth"} and out["depth"].shape == (1, 13, 17)
  np.testing.assert_allclose(np.asarray(out["depth"]), 0.75 * 80.0, rtol=1e-6)
  with pytest.raises(ValueError, match="depth_norm"):
    predict.InferenceModel(ConstantInverted(depth_norm=None), input_size=(8, 8))


def test_parse_intrinsics():
  assert predict.parse_intrinsics("1,2,3.5,4") == (1.0, 2.0, 3.5, 4.0)
  with pytest.raises(ValueError, match="fx,fy,cx,cy"):
    predict.parse_intrinsics("1,2,3")
  with pytest.raises(ValueError, match="focal"):
    predict.parse_intrinsics("0,2,3,4")


def test_figure_is_written_for_depth_only_predictions(tmp_path):
  img = np.zeros((10, 12, 3), np.uint8)
  files = predict.write_prediction(
    tmp_path, "d", img, {"depth": np.ones((10, 12), np.float32)}, META
  )
  names = sorted(pathlib.Path(f).name for f in files)
  assert names == ["d_depth.npy", "d_depth.png", "d_depth_color.png", "d_figure.png"]


class LabelEcho(nn.Module):
  """Needs ground-truth labels (like paper 000's OHESS depth nets): depth = labels + 1."""

  depth_output: str = "metres"

  @nn.compact
  def __call__(self, image, labels=None, *, train=False):
    b = self.param("b", nn.initializers.zeros, (1,))
    if labels is None:
      if self.is_initializing():
        labels = jnp.zeros(image.shape[:3], jnp.int32)
      else:
        raise ValueError("LabelEcho needs labels")
    return {"depth": (labels.astype(jnp.float32) + 1.0 + b)[..., None]}


@pytest.mark.parametrize("mode", ["resize", "tile"])
def test_labels_reach_label_reading_models(mode):
  model = LabelEcho()
  variables = model.init(jax.random.PRNGKey(0), jnp.zeros((1, 4, 6, 3)))
  rng = np.random.default_rng(0)
  labels = rng.integers(0, 9, size=(2, 9, 13)).astype(np.int32)
  input_size = (9, 13) if mode == "resize" else (4, 6)
  inf = predict.InferenceModel(model, input_size=input_size, mode=mode)
  out = inf.dense(variables, jnp.zeros((2, 9, 13, 3)), jnp.asarray(labels))
  np.testing.assert_allclose(np.asarray(out["depth"]), labels + 1.0, rtol=1e-6)
  # The evaluation path gets them through the models API too (apply_model passes batch labels).
  from semdepth_jax.train import step as step_lib

  assert step_lib.accepts_labels(inf)
  with pytest.raises(ValueError, match="cannot run on images alone"):
    predict._check_model_runs(inf, variables)


def test_damaged_checkpoint_is_one_line_and_exit_2(trained_workdir, tmp_path, capsys):
  """A damaged checkpoint names its step and file (exit 2), in predict and evaluate alike."""
  import shutil

  from tests.train.test_checkpoint_damage import _truncate

  wd = tmp_path / "wd"
  shutil.copytree(trained_workdir, wd)
  steps = sorted(int(p.name) for p in (wd / "checkpoints").iterdir() if p.name.isdigit())
  damaged = _truncate(str(wd / "checkpoints" / str(steps[-1])))
  img = tmp_path / "a.png"
  Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(img)
  rc = main(["predict", "--workdir", str(wd), "--images", str(img), "--out", str(tmp_path / "o")])
  err = capsys.readouterr().err.strip()
  assert rc == 2 and len(err.splitlines()) == 1, err
  assert str(steps[-1]) in err and os.path.basename(damaged) in err, err
  rc = main(["evaluate", "--workdir", str(wd), "--split", "test", "--max_batches", "1"])
  err = capsys.readouterr().err.strip().splitlines()
  assert rc == 2 and os.path.basename(damaged) in err[-1], err
