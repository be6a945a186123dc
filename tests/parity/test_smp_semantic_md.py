"""Semantic-MD against segmentation_models_pytorch with the same (random) weights.

References (docs/model_spec.md §4.1-§4.4): ``smp.Unet('tu-efficientnet_b4', classes=1, activation='sigmoid')``
(the baseline), ``smp.DeepLabV3('tu-efficientnet_b4', encoder_output_stride=8, ...)`` (the single-task
DeepLab), R3's 2-head model rebuilt from smp's own ``get_encoder`` / ``UnetDecoder`` / ``SegmentationHead``
under R3's attribute names, and R3's multi-input model (the smp U-Net whose ``conv_stem`` is replaced by a
(48, 3 + E) convolution, ``model_utils.extend_first_convolution``). Every BatchNorm gets random affine
parameters and running statistics (``_randomise_bn``; see tests/parity/test_timm_efficientnet.py for why),
the state dicts go through ``semantic_md.smp_key_table`` into our variables, and the outputs must agree
within 1e-4.

BatchNorm: random affine parameters (scales U(0.2, 0.5), biases 0.2 N(0, 1)) and running statistics set to
the batch statistics of the *test input itself* (one train-mode pass with momentum 1). Then every BN
normalises its eval-mode input exactly and activations stay O(1) down to stride 32; statistics from another
input of this size leave the 2 x 3 stride-32 level badly normalised, activations reach O(1e3) and float32
rounding alone exceeds the tolerance (measured: 0.3 at the head, against 5e-6 with this calibration).
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from semdepth_jax.models import get_model
from semdepth_jax.models.backbones import IMAGENET
from semdepth_jax.models.semantic_md import smp_key_table, top_classes
from semdepth_jax.weights.keymap import apply_key_table
from tests.parity.conftest import require

TOL = 1e-4


def _smp():
  require("timm")
  return require("segmentation_models_pytorch")


def _calibrate(torch, model, forward, seed):
  """Random BN affine parameters; running statistics := the batch statistics of ``forward(model)``."""
  g = torch.Generator().manual_seed(seed)
  bns = [m for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d)]
  with torch.no_grad():
    for m in bns:
      m.weight.copy_(0.2 + 0.3 * torch.rand(m.num_features, generator=g))
      m.bias.copy_(0.2 * torch.randn(m.num_features, generator=g))
      m.momentum = 1.0
    model.train()
    forward(model)
    for m in bns:
      m.momentum = 0.1
  model.eval()


def _image(torch, b, h, w, seed):
  """[0, 1] RGB (ours, NHWC) and its ImageNet-normalised NCHW tensor (what smp models receive)."""
  x = np.random.default_rng(seed).uniform(0.0, 1.0, (b, h, w, 3)).astype(np.float32)
  norm = (x - np.asarray(IMAGENET.mean, np.float32)) / np.asarray(IMAGENET.std, np.float32)
  return x, torch.from_numpy(norm.transpose(0, 3, 1, 2).copy())


def _ours(model, state, x, labels=None, allow_unused=()):
  target = jax.eval_shape(
    lambda a: model.init(jax.random.key(0), a, labels, train=False), jnp.asarray(x)
  )
  variables = apply_key_table(state, smp_key_table(model), target, allow_unused=allow_unused)
  return jax.jit(lambda v, a, lab: model.apply(v, a, lab, train=False))(
    variables, jnp.asarray(x), labels
  ), variables


def _check(got, ref, what):
  ref = ref.detach().numpy().transpose(0, 2, 3, 1)
  got = np.asarray(got)
  assert got.shape == ref.shape, (what, got.shape, ref.shape)
  err = np.max(np.abs(got - ref))
  assert err <= TOL, f"{what}: max abs diff {err:.3g} (scale {np.max(np.abs(ref)):.3g})"


def test_baseline_equals_smp_unet_efficientnet_b4(torch):
  smp = _smp()
  torch.manual_seed(0)
  ref = smp.Unet("tu-efficientnet_b4", encoder_weights=None, classes=1, activation="sigmoid")
  x, xt = _image(torch, 2, 64, 96, seed=2)
  _calibrate(torch, ref, lambda m: m(xt), seed=1)
  with torch.no_grad():
    want = ref(xt)
  ours = get_model("semantic_md")  # the paper's baseline: B4 encoder, (256, ..., 16), sigmoid head
  out, variables = _ours(ours, ref.state_dict(), x)
  _check(out["depth"], want, "depth")
  n_ref = sum(p.numel() for p in ref.parameters())
  n_ours = sum(int(np.prod(a.shape)) for a in jax.tree.leaves(variables["params"]))
  assert n_ours == n_ref == 19_412_377


def test_deeplab_equals_smp_deeplabv3_output_stride_8(torch):
  smp = _smp()
  torch.manual_seed(3)
  ref = smp.DeepLabV3(
    "tu-efficientnet_b4",
    encoder_weights=None,
    encoder_output_stride=8,
    classes=1,
    activation="sigmoid",
  )
  x, xt = _image(torch, 2, 64, 64, seed=5)
  _calibrate(torch, ref, lambda m: m(xt), seed=4)
  with torch.no_grad():
    want = ref(xt)
  ours = get_model("semantic_md", architecture="deeplabv3", head_kernel=1)
  out, _ = _ours(ours, ref.state_dict(), x)
  _check(out["depth"], want, "deeplab depth")


def test_two_head_equals_r3_multi_loss_layout(torch):
  """R3 ``MultiLossModel`` (UNet super-model): shared encoder, two UnetDecoders, heads 1 and 40."""
  smp = _smp()
  from segmentation_models_pytorch.base import SegmentationHead
  from segmentation_models_pytorch.decoders.unet.decoder import UnetDecoder

  nn = torch.nn

  class MultiLoss(nn.Module):
    def __init__(self):
      super().__init__()
      self.encoder = smp.encoders.get_encoder("tu-efficientnet_b0", in_channels=3, depth=5)
      ch = self.encoder.out_channels
      dec = (256, 128, 64, 32, 16)
      self.decoder_depth = UnetDecoder(ch, dec, n_blocks=5)
      self.decoder_semantic = UnetDecoder(ch, dec, n_blocks=5)
      self.head_depth = SegmentationHead(16, 1, kernel_size=3)
      self.head_semantic = SegmentationHead(16, 40, kernel_size=3)

    def forward(self, x):
      f = self.encoder(x)
      return self.head_depth(self.decoder_depth(f)), self.head_semantic(self.decoder_semantic(f))

  torch.manual_seed(6)
  ref = MultiLoss()
  x, xt = _image(torch, 2, 64, 64, seed=8)
  _calibrate(torch, ref, lambda m: m(xt), seed=7)
  with torch.no_grad():
    want_d, want_s = ref(xt)
  ours = get_model(
    "semantic_md",
    encoder={"name": "efficientnet_b0"},
    tasks=("depth", "semantic"),
    depth_activation="linear",
    init_scheme="torch",
  )
  out, _ = _ours(ours, ref.state_dict(), x)
  _check(out["depth"], want_d, "2-head depth")
  _check(out["seg_logits"], want_s, "2-head semantics")


def test_one_hot_input_equals_r3_extended_first_convolution(torch):
  """R3 ``SimplifiedOneHotModel``: smp U-Net whose conv_stem takes RGB + N one-hot planes."""
  smp = _smp()
  torch.manual_seed(9)
  ref = smp.Unet("tu-efficientnet_b0", encoder_weights=None, classes=1, activation="sigmoid")
  old = ref.encoder.model.conv_stem
  classes = top_classes(3)  # wall, floor, ceiling
  new = torch.nn.Conv2d(3 + len(classes), old.out_channels, 3, stride=2, padding=1, bias=False)
  with torch.no_grad():
    new.weight[:, :3] = old.weight  # R3: pretrained slices copied, new slices keep their init
  ref.encoder.model.conv_stem = new
  x, xt = _image(torch, 2, 64, 64, seed=11)
  labels = np.random.default_rng(12).integers(0, 40, (2, 64, 64)).astype(np.int32)
  labels[:, :4] = 255  # unlabelled pixels: all-zero planes
  planes = np.stack([labels == c for c in classes], axis=1).astype(np.float32)
  inp = torch.cat([xt, torch.from_numpy(planes)], dim=1)
  _calibrate(torch, ref, lambda m: m(inp), seed=10)
  with torch.no_grad():
    want = ref(inp)

  ours = get_model(
    "semantic_md",
    encoder={"name": "efficientnet_b0"},
    input_encoding="onehot",
    onehot_classes=classes,
  )
  state = dict(ref.state_dict())
  stem = state.pop("encoder.model.conv_stem.weight")
  state["encoder.model.conv_stem.weight"] = stem[:, :3]
  target = jax.eval_shape(
    lambda a: ours.init(jax.random.key(0), a, jnp.asarray(labels), train=False), jnp.asarray(x)
  )
  params_target = {c: t for c, t in target.items()}
  extra = params_target["params"].pop("stem_extra")
  variables = apply_key_table(state, smp_key_table(_baseline_like(ours)), params_target)
  variables["params"]["stem_extra"] = {"kernel": stem[:, 3:].numpy().transpose(2, 3, 1, 0)}
  assert variables["params"]["stem_extra"]["kernel"].shape == extra["kernel"].shape
  out = jax.jit(lambda v, a, lab: ours.apply(v, a, lab, train=False))(
    variables, jnp.asarray(x), jnp.asarray(labels)
  )
  np.testing.assert_array_equal(
    np.asarray(out["aux"]["semantic_input"]), planes.transpose(0, 2, 3, 1)
  )
  _check(out["depth"], want, "1hot-3 depth")


def _baseline_like(model):
  """The same model without input planes (the key table covers everything but ``stem_extra``)."""
  return model.clone(input_encoding="none", onehot_classes=None)


@pytest.mark.parametrize("variant", ["b4"])
def test_encoder_count_is_timm_features_only(torch, variant):
  """The 16,742,216 that the parameter-count tests build on is timm's own count."""
  timm = require("timm")
  ref = timm.create_model(f"efficientnet_{variant}", features_only=True)
  assert sum(p.numel() for p in ref.parameters()) == 16_742_216
