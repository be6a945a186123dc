"""The semantic-source mechanism: ground truth, a trained segmentation workdir's predictions, or none.

A segmentation workdir is written by hand (config.json + a checkpoint of a tiny Semantic-MD ``seg`` model),
so these tests need no data and no training. Predicted semantics must equal the arg-max / one-hot of that
model's own outputs, for Semantic-MD's planes and for paper 000's SCRX OHESS alike, inside ``jit`` too.
"""

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

from configs import common
from semdepth_jax.models import get_model
from semdepth_jax.models import semantic_md as smd
from semdepth_jax.models import semantic_source as source_lib
from semdepth_jax.train import checkpoint as ckpt_lib
from semdepth_jax.train import config_utils
from semdepth_jax.train.state import create_state, split_variables

H, W = 32, 32
SEG = {
  "name": "semantic_md",
  "encoder": {"name": "efficientnet_b0", "width_multiplier": 0.25, "depth_multiplier": 0.25},
  "decoder_channels": (8, 8, 8, 4, 4),
  "tasks": ("semantic",),
}


@pytest.fixture(scope="module")
def seg_workdir(tmp_path_factory):
  """A 'trained' segmentation run: random weights saved the way ``train`` saves them."""
  workdir = tmp_path_factory.mktemp("seg_run")
  c = common.base_config()
  c.dataset = "replica/nyu40"  # NYU-40 meta (40 classes); no data is read
  c.image_size = (H, W)
  c.model = ml_collections.ConfigDict(SEG)
  config_utils.save_json(c, str(workdir / "config.json"))
  model = get_model("semantic_md", num_classes=40, **{k: v for k, v in SEG.items() if k != "name"})
  variables = model.init(jax.random.key(7), jnp.zeros((1, H, W, 3)))
  params, stats = split_variables(variables)
  # Non-trivial BN statistics, so inference mode is distinguishable from training mode.
  stats = jax.tree.map(lambda s: s + 0.1, stats)
  state = create_state(params, stats, {}, jax.random.key(0), step=3)
  with ckpt_lib.Checkpointer(workdir / "checkpoints", async_save=False) as ckpt:
    ckpt.save(3, state, {"stage_index": 0, "stage_name": "train", "step": 3})
  return str(workdir), model, {"params": params, "batch_stats": stats}


def _image(seed=0):
  return jax.random.uniform(jax.random.key(seed), (2, H, W, 3))


def test_predicted_semantics_are_the_workdir_models_argmax(seg_workdir):
  workdir, seg_model, seg_vars = seg_workdir
  x = _image()
  want_logits = np.asarray(seg_model.apply(seg_vars, x)["seg_logits"])
  src = source_lib.SemanticSource.from_config(
    {"source": "predicted", "workdir": workdir}, where="t"
  )
  sem = src.resolve(x, num_classes=40, where="t")
  np.testing.assert_allclose(np.asarray(sem.logits), want_logits, atol=1e-5)
  np.testing.assert_array_equal(np.asarray(sem.labels), want_logits.argmax(-1))
  assert source_lib.load_predictor(workdir).step == 3


def test_semantic_md_one_hot_from_predictions_inside_jit(seg_workdir):
  workdir, seg_model, seg_vars = seg_workdir
  classes = smd.top_classes(20)
  kw = {k: v for k, v in SEG.items() if k not in ("name", "tasks")}
  gt_model = get_model("semantic_md", input_encoding="onehot", onehot_classes=classes, **kw)
  pred_model = gt_model.clone(semantic_source={"source": "predicted", "workdir": workdir})
  x = _image(1)
  labels = jnp.zeros((2, H, W), jnp.int32)
  v = jax.jit(lambda a, lab: gt_model.init(jax.random.key(0), a, lab))(x, labels)
  # Same parameters whatever the source: a ground-truth-trained model is evaluated on predictions.
  v_pred = jax.jit(lambda a: pred_model.init(jax.random.key(0), a))(x)
  assert jax.tree.structure(v) == jax.tree.structure(v_pred)
  out = jax.jit(lambda v, a: pred_model.apply(v, a))(v, x)
  ids = np.asarray(seg_model.apply(seg_vars, x)["seg_logits"]).argmax(-1)
  want = np.stack([ids == c for c in classes], -1).astype(np.float32)
  np.testing.assert_array_equal(np.asarray(out["aux"]["semantic_input"]), want)
  assert want.any() and not want.all()  # a real prediction, not an empty / full plane set


def test_scrx_reads_predicted_ohess_through_the_same_mechanism(seg_workdir):
  workdir, seg_model, seg_vars = seg_workdir
  x = _image(2)
  kw = {"num_classes": 40, "widths": (4, 4, 4, 2), "refine_widths": (4, 3)}
  scrx = get_model("scrx", **kw, semantic_source={"source": "predicted", "workdir": workdir})
  v = scrx.init(jax.random.key(0), x)
  out = scrx.apply(v, x)
  ids = np.asarray(seg_model.apply(seg_vars, x)["seg_logits"]).argmax(-1)
  planes = jnp.asarray(np.eye(40, dtype=np.float32)[ids])
  ref = scrx.apply(v, x, ohess=planes)  # the same network on explicitly given planes
  np.testing.assert_allclose(np.asarray(out["depth"]), np.asarray(ref["depth"]), atol=1e-6)
  # RGB-only SCRX is the source 'none'; use_ohess=False with another source is contradictory.
  rgb = get_model("scrx", **kw, use_ohess=False)
  assert rgb.apply(rgb.init(jax.random.key(0), x), x)["depth"].shape == out["depth"].shape
  bad = get_model("scrx", **kw, use_ohess=False, semantic_source="gt")
  with pytest.raises(ValueError, match="contradicts"):
    bad.init(jax.random.key(0), x)


def test_ground_truth_and_none_sources():
  x = _image(3)
  lab = jnp.asarray(np.random.default_rng(0).integers(0, 5, (2, H, W)), jnp.int32)
  gt = source_lib.SemanticSource()
  sem = gt.resolve(x, lab, num_classes=5, where="t")
  assert sem.logits is None and sem.source == "gt"
  planes = gt.planes(sem, 5, (3, 1))
  np.testing.assert_array_equal(np.asarray(planes[..., 0]), np.asarray(lab == 3))
  assert source_lib.SemanticSource("none").resolve(x, lab, num_classes=5, where="t") is None
  with pytest.raises(ValueError, match="needs labels"):
    gt.resolve(x, None, num_classes=5, where="t")
  with pytest.raises(ValueError, match="must be integer"):
    gt.resolve(x, lab.astype(jnp.float32), num_classes=5, where="t")
  with pytest.raises(ValueError, match="needs workdir"):
    source_lib.SemanticSource("predicted").resolve(x, num_classes=5, where="t")
  with pytest.raises(ValueError, match="source must be one of"):
    source_lib.SemanticSource.from_config("oracle", where="t")


def test_predictor_with_another_label_set_is_rejected(seg_workdir):
  workdir, _, _ = seg_workdir
  src = source_lib.SemanticSource("predicted", workdir=workdir)
  with pytest.raises(ValueError, match=r"\(B, h, w, 14\)"):
    src.resolve(_image(), num_classes=14, where="t")
