"""Shared building blocks: N-d convolution / transposed convolution, pooling, conv-BN-act, residual blocks.

Every convolution in the library's paper-000 models goes through :class:`Conv` and :class:`ConvTranspose`,
two small modules built directly on :func:`jax.lax.conv_general_dilated` that work for 2-D (NHWC, kernel
HWIO) and 3-D (NDHWC, kernel DHWIO) inputs alike; the number of spatial dimensions is
``len(kernel_size)``.

Padding follows Keras: ``'same'`` pads ``k - 1`` in total at stride 1 (symmetric for odd ``k``), and for
strided convolutions the total ``max((ceil(n / s) - 1) * s + k_eff - n, 0)`` is split with the larger half at
the bottom / right (TensorFlow's rule, docs/model_spec.md §13). ``'valid'`` pads nothing.

The transposed convolution follows :func:`jax.lax.conv_transpose` with ``transpose_kernel=False`` (the Flax
``nn.ConvTranspose`` convention): the kernel has shape ``(*kernel_size, in_features, features)`` and is
correlated, unflipped, with the zero-dilated, padded input. ``'same'`` gives ``out = in * stride`` exactly like
Keras ``Conv2DTranspose`` / ``Conv3DTranspose(padding='same')`` (model_spec §1.4, §13). A Keras kernel
``K`` (shape ``(*k, out, in)``) maps to this one as ``K[::-1, ..., ::-1].swapaxes(-1, -2)`` (flip every
spatial axis, swap the channel axes).

Because XLA picks very different kernels per backend for the same mathematical operator, the transposed
convolution's implementation is a switch (:data:`CONV_TRANSPOSE_IMPLS`):

* ``'input_dilation'``: one ``conv_general_dilated`` with ``lhs_dilation=strides`` (what ``lax.conv_transpose``
  does).
* ``'pad_conv'``: explicit zero insertion and padding (``lax.pad`` with interior padding), then a stride-1
  convolution.
* ``'depth_to_space'``: the sub-pixel decomposition. Output position ``o = s*i + r`` only sees the kernel taps
  ``t`` with ``(r + t - pad_before) % s == 0``, so all ``s`` phases are one stride-1 convolution of the
  undilated input with a re-arranged kernel (``prod(s) * features`` output channels, built by gathers, not
  arithmetic) followed by a depth-to-space (pixel shuffle). Mathematically identical to the two above; it
  skips the multiplications by inserted zeros.
* ``'resize_conv'``: nearest-neighbour upsampling by ``strides`` followed by a stride-1 ``'same'``
  convolution with the same kernel shape. **This is a different operator** (same parameter and output
  shapes, different function); it exists only for speed comparisons and is not numerically equal to the
  other three.

The first three agree to float rounding; the tests check them against ``jax.lax.conv_transpose`` and a NumPy
scatter (gradient-of-convolution) reference.
"""

from __future__ import annotations

import contextlib
import contextvars
import dataclasses
import itertools
import math
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

Array = jax.Array
Dtype = Any
Initializer = Callable[..., Array]

PaddingLike = str | Sequence[tuple[int, int]]

CONV_TRANSPOSE_IMPLS = ("input_dilation", "pad_conv", "depth_to_space", "resize_conv")
"""Implementations accepted by :class:`ConvTranspose` (see the module docstring)."""

EXACT_CONV_TRANSPOSE_IMPLS = ("input_dilation", "pad_conv", "depth_to_space")
"""The implementations that compute exactly the transposed convolution (``resize_conv`` does not)."""

KERAS_BN_MOMENTUM = 0.99
"""Keras ``BatchNormalization`` default momentum (docs/model_spec.md §1.0, §13)."""

KERAS_BN_EPSILON = 1e-3
"""Keras ``BatchNormalization`` default epsilon (docs/model_spec.md §1.0, §13)."""

glorot_uniform = nn.initializers.glorot_uniform()
"""Keras' default conv kernel initialiser (``glorot_uniform``; fans = receptive field x channels)."""

he_normal = nn.initializers.he_normal()
"""Keras ``he_normal`` (truncated normal, std ``sqrt(2 / fan_in)``); U-Net ``conv2d_block`` (model_spec §1.0)."""

zeros = nn.initializers.zeros
"""Keras' default bias initialiser."""


# ------------------------------------------------------------------------------------------------------
# Padding arithmetic.
# ------------------------------------------------------------------------------------------------------
def _as_tuple(value: int | Sequence[int], n: int, name: str) -> tuple[int, ...]:
  if isinstance(value, int):
    return (value,) * n
  value = tuple(int(v) for v in value)
  if len(value) != n:
    raise ValueError(f"layers: {name} must have {n} entries (one per spatial axis), got {value}")
  return value


def keras_same_padding(
  size: int, kernel: int, stride: int = 1, dilation: int = 1
) -> tuple[int, int]:
  """Keras / TensorFlow ``'same'`` padding of one spatial axis of a forward convolution.

  Args:
    size: input length along the axis.
    kernel: kernel length (before dilation).
    stride: window stride.
    dilation: kernel (rhs) dilation.

  Returns:
    ``(pad_before, pad_after)``; the total is ``max((ceil(size / stride) - 1) * stride + k_eff - size, 0)``
    with ``k_eff = (kernel - 1) * dilation + 1``, and the larger half goes after (bottom / right), as in
    TensorFlow (docs/model_spec.md §13). Output length is ``ceil(size / stride)``.
  """
  k_eff = (kernel - 1) * dilation + 1
  out = -(-size // stride)
  total = max((out - 1) * stride + k_eff - size, 0)
  return total // 2, total - total // 2


def conv_padding(
  padding: PaddingLike,
  in_shape: Sequence[int],
  kernel_size: Sequence[int],
  strides: Sequence[int],
  dilation: Sequence[int],
) -> tuple[tuple[int, int], ...]:
  """Resolves ``'same'`` / ``'valid'`` / explicit pairs into per-axis ``(before, after)`` padding.

  Raises:
    ValueError: unknown padding string or wrong number of explicit pairs.
  """
  n = len(kernel_size)
  if isinstance(padding, str):
    mode = padding.lower()
    if mode == "same":
      return tuple(
        keras_same_padding(s, k, st, d)
        for s, k, st, d in zip(in_shape, kernel_size, strides, dilation, strict=True)
      )
    if mode == "valid":
      return ((0, 0),) * n
    raise ValueError(f"layers: padding must be 'same', 'valid' or pairs, got {padding!r}")
  pads = tuple((int(a), int(b)) for a, b in padding)
  if len(pads) != n:
    raise ValueError(f"layers: padding needs {n} (before, after) pairs, got {padding!r}")
  return pads


def transpose_padding(kernel: int, stride: int, padding: str) -> tuple[int, int]:
  """Padding of the zero-dilated input in a transposed convolution (``lax.conv_transpose`` semantics).

  Args:
    kernel: kernel length along the axis (after rhs dilation, if any).
    stride: the transposed convolution's stride (= input dilation).
    padding: ``'same'`` (output ``n * stride``, Keras ``Conv*DTranspose(padding='same')``) or ``'valid'``
      (output ``n * stride + max(kernel - stride, 0)``; equals Keras' ``(n - 1) * s + k`` when ``k >= s``).

  Returns:
    ``(pad_before, pad_after)`` applied to the dilated input of length ``(n - 1) * stride + 1``.

  Raises:
    ValueError: unknown padding.
  """
  mode = padding.lower() if isinstance(padding, str) else padding
  if mode == "same":
    total = kernel + stride - 2
    before = kernel - 1 if stride > kernel - 1 else math.ceil(total / 2)
  elif mode == "valid":
    total = kernel + stride - 2 + max(kernel - stride, 0)
    before = kernel - 1
  else:
    raise ValueError(f"layers: transposed-conv padding must be 'same' or 'valid', got {padding!r}")
  return before, total - before


def _dimension_numbers(nd: int) -> lax.ConvDimensionNumbers:
  """Channels-last dimension numbers: lhs/out (N, *spatial, C), rhs (*spatial, I, O)."""
  spatial = tuple(range(1, nd + 1))
  return lax.ConvDimensionNumbers(
    lhs_spec=(0, nd + 1, *spatial),
    rhs_spec=(nd + 1, nd, *range(nd)),
    out_spec=(0, nd + 1, *spatial),
  )


def conv_nd(
  x: Array,
  kernel: Array,
  *,
  strides: Sequence[int],
  padding: Sequence[tuple[int, int]],
  lhs_dilation: Sequence[int] | None = None,
  rhs_dilation: Sequence[int] | None = None,
  feature_group_count: int = 1,
  precision: Any = None,
) -> Array:
  """Channels-last N-d convolution (cross-correlation) on ``lax.conv_general_dilated``.

  Kernel taps that can only ever meet padding are dropped first: on a spatial axis of length 1 with stride
  1, no dilation and an output of length 1, only the tap at ``pad_before`` touches data (3D CNN-UP's
  deconvolutions run on a depth axis of length 1, model_spec §1.4). This is exact, including the gradient
  (the dropped taps' gradient is zero).

  Args:
    x: (B, *spatial, C_in).
    kernel: (*kernel_size, C_in, C_out).
    strides: window strides per spatial axis.
    padding: explicit ``(before, after)`` pairs per spatial axis (may be negative = cropping).
    lhs_dilation: input dilation per axis (transposed convolution), default 1.
    rhs_dilation: kernel dilation per axis (atrous convolution), default 1.
    feature_group_count: input/output channel groups (``C_in`` = depthwise); the kernel is then
      (*kernel_size, C_in / groups, C_out).
    precision: passed to ``lax.conv_general_dilated``.

  Returns:
    (B, *out_spatial, C_out) in ``x``'s dtype.
  """
  nd = kernel.ndim - 2
  lhs_dilation = tuple(lhs_dilation or (1,) * nd)
  rhs_dilation = tuple(rhs_dilation or (1,) * nd)
  padding = [tuple(p) for p in padding]
  for a in range(nd):
    k = kernel.shape[a]
    lo, hi = padding[a]
    if (
      k > 1
      and x.shape[1 + a] == 1
      and strides[a] == 1
      and lhs_dilation[a] == 1
      and rhs_dilation[a] == 1
      and lo + hi == k - 1
      and 0 <= lo < k
    ):
      kernel = lax.slice_in_dim(kernel, lo, lo + 1, axis=a)
      padding[a] = (0, 0)
  groups = int(feature_group_count)
  if (
    groups == 1
    and all(k == 1 for k in kernel.shape[:nd])
    and all(d == 1 for d in lhs_dilation)
    and all(tuple(p) == (0, 0) for p in padding)
    and _POINTWISE_IMPL.get() == "dot"
  ):
    return _pointwise_dot(x, kernel, tuple(strides), precision)
  if (
    nd == 3
    and groups == 1
    and kernel.shape[0] > 1
    and strides[0] == 1
    and all(d == 1 for d in lhs_dilation)
    and rhs_dilation[0] == 1
    and _VOLUME_IMPL.get() == "planes"
  ):
    return _volume_planes(x, kernel, tuple(strides), padding, rhs_dilation, precision)
  if (
    groups > 1
    and groups == x.shape[-1] == kernel.shape[-1]
    and kernel.shape[-2] == 1
    and all(d == 1 for d in lhs_dilation)
    and _depthwise_impl() == "taps"
  ):
    return _depthwise_taps(x, kernel, tuple(strides), padding, rhs_dilation)
  return lax.conv_general_dilated(
    x,
    kernel,
    window_strides=tuple(strides),
    padding=padding,
    lhs_dilation=lhs_dilation,
    rhs_dilation=rhs_dilation,
    dimension_numbers=_dimension_numbers(nd),
    feature_group_count=groups,
    precision=precision,
  )


@contextlib.contextmanager
def _use_impl(
  var: contextvars.ContextVar[str], allowed: tuple[str, ...], impl: str
) -> Iterator[None]:
  """Sets ``var`` (named after its public context manager) to ``impl`` for the ``with`` block.

  Raises:
    ValueError: ``impl`` not in ``allowed`` (the message names ``layers.<var name>``).
  """
  if impl not in allowed:
    raise ValueError(f"layers.{var.name}: impl must be one of {allowed}, got {impl!r}")
  token = var.set(impl)
  try:
    yield
  finally:
    var.reset(token)


_POINTWISE_IMPL: contextvars.ContextVar[str] = contextvars.ContextVar(
  "pointwise_conv_impl", default="conv"
)
POINTWISE_IMPLS = ("conv", "dot")
"""How :func:`conv_nd` computes a 1x1 (1x1x1) convolution (:func:`pointwise_conv_impl`)."""


@contextlib.contextmanager
def pointwise_conv_impl(impl: str) -> Iterator[None]:
  """Chooses how 1x1 (2-D) and 1x1x1 (3-D) convolutions are computed while models are traced in this context.

  A pointwise convolution here has a kernel of spatial size 1 on every axis, one channel group, no
  padding and no input dilation (any stride: the input is subsampled first). ResNet bottlenecks (paper 002's
  DeepLab-v2), EfficientNet's MBConv expansions / projections (paper 003) and DS-SIDENet's separable blocks
  (paper 004) are mostly such layers.

  * ``'conv'`` (default): one ``lax.conv_general_dilated``.
  * ``'dot'``: one ``lax.dot_general`` contracting the channel axis (a matrix product over all pixels), whose
    gradients are matrix products too. On XLA's CPU backend (jaxlib 0.10, 2 threads) a 1x1 convolution's
    forward + backward is 2-3x faster this way, e.g. (1, 53, 100, 256) -> 1024 channels: weight gradient
    192 -> 68 ms, (1, 120, 160, 32) -> 192: 38 -> 14 ms forward + backward. Same sums in another order:
    equal to float rounding (the forward is usually bitwise equal; gradients are not), which is why it is
    a switch (``config.pointwise_conv``) and not the default: trained results would move at rounding level.

  Raises:
    ValueError: unknown ``impl``.
  """
  with _use_impl(_POINTWISE_IMPL, POINTWISE_IMPLS, impl):
    yield


def _pointwise_dot(x: Array, kernel: Array, strides: tuple[int, ...], precision: Any) -> Array:
  """A 1x1 convolution as one ``dot_general`` over the channel axis (:func:`pointwise_conv_impl`)."""
  nd = kernel.ndim - 2
  if any(s != 1 for s in strides):
    x = x[(slice(None), *(slice(None, None, s) for s in strides), slice(None))]
  w = kernel.reshape(kernel.shape[-2:])
  y = lax.dot_general(x, w, (((nd + 1,), (0,)), ((), ())), precision=precision)
  return y.astype(jnp.result_type(x.dtype, kernel.dtype))


_VOLUME_IMPL: contextvars.ContextVar[str] = contextvars.ContextVar(
  "volume_conv_impl", default="conv"
)
VOLUME_IMPLS = ("conv", "planes")
"""How :func:`conv_nd` computes a 3-D convolution over depth (:func:`volume_conv_impl`)."""


@contextlib.contextmanager
def volume_conv_impl(impl: str) -> Iterator[None]:
  """Chooses how 3-D (NDHWC) convolutions are computed while models are traced in this context.

  Applies to 3-D convolutions with one channel group, a kernel depth > 1, depth stride 1 and no input or
  depth dilation (paper 000's 3D CNN-S / CNN-UP 3x3x3 layers; their transposed convolutions, which dilate
  the input, keep the 3-D convolution).

  * ``'conv'`` (default): one 3-D ``lax.conv_general_dilated``.
  * ``'planes'``: the sum over the kernel's depth taps k of one 2-D convolution each, of the depth-padded
    volume's planes k .. k + D_out - 1 (folded into the batch) with the kernel's plane k; its gradients
    are 2-D convolutions too. On XLA's CPU backend (jaxlib 0.10, 2 threads) a 3x3x3 64 -> 64 layer on an
    8x96x160 volume runs forward 442 -> 220 ms and forward + both gradients 1370 -> 789 ms this way
    (PyTorch: 115 / 390 ms). Same sums in another order: equal to float rounding, which is why it is a
    switch (``config.volume_conv``) and not the default.

  Raises:
    ValueError: unknown ``impl``.
  """
  with _use_impl(_VOLUME_IMPL, VOLUME_IMPLS, impl):
    yield


def _volume_planes(
  x: Array,
  kernel: Array,
  strides: tuple[int, ...],
  padding: Sequence[tuple[int, int]],
  rhs_dilation: Sequence[int],
  precision: Any,
) -> Array:
  """A 3-D convolution as a sum of 2-D convolutions over the depth taps (:func:`volume_conv_impl`)."""
  kd = kernel.shape[0]
  lo, hi = padding[0]
  xp = lax.pad(x, jnp.zeros((), x.dtype), ((0, 0, 0), (lo, hi, 0), *((0, 0, 0),) * 3))
  b, dp = xp.shape[:2]
  d_out = dp - kd + 1
  if d_out < 1:
    raise ValueError(
      f"conv_nd: volume depth {x.shape[1]} padded by {padding[0]} is below the kernel {kd}"
    )
  out = None
  for k in range(kd):
    planes = lax.slice_in_dim(xp, k, k + d_out, axis=1).reshape(b * d_out, *xp.shape[2:])
    y = lax.conv_general_dilated(
      planes,
      kernel[k],
      window_strides=strides[1:],
      padding=[tuple(p) for p in padding[1:]],
      rhs_dilation=tuple(rhs_dilation[1:]),
      dimension_numbers=_dimension_numbers(2),
      precision=precision,
    )
    out = y if out is None else out + y
  return out.reshape(b, d_out, *out.shape[1:])


_DEPTHWISE_IMPL: contextvars.ContextVar[str] = contextvars.ContextVar(
  "depthwise_conv_impl", default="auto"
)
DEPTHWISE_IMPLS = ("auto", "conv", "taps")
"""How :func:`conv_nd` computes a depthwise convolution (:func:`depthwise_conv_impl`)."""


@contextlib.contextmanager
def depthwise_conv_impl(impl: str) -> Iterator[None]:
  """Chooses how depthwise convolutions are computed while models are traced in this context.

  A depthwise convolution here is one with ``feature_group_count = C_in = C_out`` (kernel
  ``(*k, 1, C)``, channel multiplier 1, no input dilation): EfficientNet's MBConv (paper 003) and
  DS-SIDENet's separable blocks (paper 004).

  * ``'conv'``: one grouped ``lax.conv_general_dilated``.
  * ``'taps'``: the sum over kernel taps ``t`` of ``x_pad[:, o * s + t * d, :] * kernel[t, 0, :]``
    (strided slices of the padded input times one weight per channel), accumulated in float32 and cast
    back to the input's dtype. Only slices, multiplies and adds, which XLA fuses into a few loops; its
    gradients are slices, pads and reductions. Same sums in another order: equal to float rounding.
  * ``'auto'`` (default): ``'taps'`` on the CPU backend, ``'conv'`` elsewhere. On XLA's CPU backend
    (jaxlib 0.10) the grouped convolution is very slow: measured on 2 cores, a 3x3 depthwise layer on
    (1, 128, 128, 48) takes 20.8 ms forward / 34.7 ms backward as a convolution and 0.9 / 9.8 ms as taps;
    (1, 32, 32, 192) 5x5: 13.3 / 44.9 vs 0.4 / 9.0 ms.

  Raises:
    ValueError: unknown ``impl``.
  """
  with _use_impl(_DEPTHWISE_IMPL, DEPTHWISE_IMPLS, impl):
    yield


def _depthwise_impl() -> str:
  impl = _DEPTHWISE_IMPL.get()
  if impl == "auto":
    return "taps" if jax.default_backend() == "cpu" else "conv"
  return impl


def _depthwise_taps(
  x: Array,
  kernel: Array,
  strides: tuple[int, ...],
  padding: Sequence[tuple[int, int]],
  rhs_dilation: tuple[int, ...],
) -> Array:
  """Depthwise convolution as a sum of strided slices times per-channel weights (float32 accumulation)."""
  nd = kernel.ndim - 2
  acc = jnp.promote_types(x.dtype, jnp.float32)
  # lax.pad takes negative (cropping) padding as well.
  xp = lax.pad(
    x, jnp.zeros((), x.dtype), [(0, 0, 0), *((lo, hi, 0) for lo, hi in padding), (0, 0, 0)]
  )
  span = [(k - 1) * d + 1 for k, d in zip(kernel.shape[:nd], rhs_dilation, strict=True)]
  out = [(n - w) // s + 1 for n, w, s in zip(xp.shape[1:-1], span, strides, strict=True)]
  if any(o < 1 for o in out):
    raise ValueError(
      f"layers.conv_nd: depthwise window {span} larger than the padded input {xp.shape}"
    )
  y = None
  for t in itertools.product(*(range(k) for k in kernel.shape[:nd])):
    start = [0, *(ti * di for ti, di in zip(t, rhs_dilation, strict=True)), 0]
    limit = [
      xp.shape[0],
      *(st + (o - 1) * s + 1 for st, o, s in zip(start[1:-1], out, strides, strict=True)),
      xp.shape[-1],
    ]
    term = lax.slice(xp, start, limit, (1, *strides, 1)).astype(acc) * kernel[t][0].astype(acc)
    y = term if y is None else y + term
  return y.astype(x.dtype)


# ------------------------------------------------------------------------------------------------------
# Transposed convolution, four implementations.
# ------------------------------------------------------------------------------------------------------
def _phase_taps(kernel: int, stride: int, pad_before: int) -> tuple[int, np.ndarray]:
  """Sub-pixel decomposition of one axis: (offset_min, tap index table of shape (n_offsets, stride)).

  Output ``o = stride * i + r`` receives ``x[i + d] * w[t]`` for every tap with
  ``r + t - pad_before == stride * d``. The table holds ``t`` for (d - offset_min, r), or ``kernel``
  (an extra all-zero tap) where no tap lands.
  """
  pairs = []
  for r in range(stride):
    for t in range(kernel):
      u = r + t - pad_before
      if u % stride == 0:
        pairs.append((u // stride, r, t))
  d_min = min(p[0] for p in pairs)
  d_max = max(p[0] for p in pairs)
  table = np.full((d_max - d_min + 1, stride), kernel, dtype=np.int32)
  for d, r, t in pairs:
    table[d - d_min, r] = t
  return d_min, table


def conv_transpose_nd(
  x: Array,
  kernel: Array,
  *,
  strides: Sequence[int],
  padding: str = "same",
  impl: str = "input_dilation",
  precision: Any = None,
) -> Array:
  """Channels-last N-d transposed convolution with a selectable implementation.

  Semantics (for the exact implementations): ``jax.lax.conv_transpose(x, kernel, strides, padding.upper(),
  transpose_kernel=False)`` with channels-last dimension numbers. See the module docstring.

  Args:
    x: (B, *spatial, C_in).
    kernel: (*kernel_size, C_in, C_out).
    strides: upsampling factor per spatial axis.
    padding: ``'same'`` (output ``n * s``) or ``'valid'``.
    impl: one of :data:`CONV_TRANSPOSE_IMPLS`.
    precision: passed to the underlying convolution.

  Returns:
    (B, *out_spatial, C_out).

  Raises:
    ValueError: unknown ``impl`` / ``padding``, or ``'resize_conv'`` with ``'valid'`` padding.
  """
  nd = kernel.ndim - 2
  strides = _as_tuple(strides, nd, "strides")
  ksize = kernel.shape[:nd]
  pads = [transpose_padding(k, s, padding) for k, s in zip(ksize, strides, strict=True)]
  ones = (1,) * nd
  if impl == "input_dilation":
    return conv_nd(x, kernel, strides=ones, padding=pads, lhs_dilation=strides, precision=precision)
  if impl == "pad_conv":
    config = [(0, 0, 0)] + [(lo, hi, s - 1) for (lo, hi), s in zip(pads, strides, strict=True)]
    xp = lax.pad(x, jnp.zeros((), x.dtype), config + [(0, 0, 0)])
    return conv_nd(xp, kernel, strides=ones, padding=((0, 0),) * nd, precision=precision)
  if impl == "resize_conv":
    if padding.lower() != "same":
      raise ValueError(f"layers: impl='resize_conv' supports padding='same' only, got {padding!r}")
    up = x
    for a, s in enumerate(strides):
      if s > 1:
        up = jnp.repeat(up, s, axis=1 + a)
    same = conv_padding("same", up.shape[1:-1], ksize, ones, ones)
    return conv_nd(up, kernel, strides=ones, padding=same, precision=precision)
  if impl != "depth_to_space":
    raise ValueError(
      f"layers: conv-transpose impl must be one of {CONV_TRANSPOSE_IMPLS}, got {impl!r}"
    )

  # Sub-pixel decomposition: gather the kernel into (offsets..., C_in, phases..., C_out).
  cin, cout = kernel.shape[-2:]
  w = kernel
  in_pads, out_len, phase_len, n_off = [], [], [], []
  for a in range(nd):
    k, s, (lo, hi), n = ksize[a], strides[a], pads[a], x.shape[1 + a]
    d_min, table = _phase_taps(k, s, lo)
    length = (n - 1) * s + 1 + lo + hi - k + 1
    count = -(-length // s)
    d_max = d_min + table.shape[0] - 1
    in_pads.append((-d_min, count - 1 + d_max - (n - 1)))
    out_len.append(length)
    phase_len.append(count)
    n_off.append(table.shape[0])
    # Axis a (currently at position 2a, after the earlier axes were split in two) -> (offsets, phases).
    w = jnp.concatenate([w, jnp.zeros_like(lax.slice_in_dim(w, 0, 1, axis=2 * a))], axis=2 * a)
    w = jnp.take(w, jnp.asarray(table), axis=2 * a)
  # w: (off_0, ph_0, off_1, ph_1, ..., C_in, C_out) -> (off_0, ..., C_in, ph_0, ..., C_out).
  perm = [2 * a for a in range(nd)] + [2 * nd] + [2 * a + 1 for a in range(nd)] + [2 * nd + 1]
  w = jnp.transpose(w, perm).reshape(*n_off, cin, math.prod(strides) * cout)
  xp = lax.pad(
    x, jnp.zeros((), x.dtype), [(0, 0, 0)] + [(lo, hi, 0) for lo, hi in in_pads] + [(0, 0, 0)]
  )
  y = conv_nd(xp, w, strides=ones, padding=((0, 0),) * nd, precision=precision)
  batch = y.shape[0]
  y = y.reshape(batch, *phase_len, *strides, cout)
  perm = [0] + [v for a in range(nd) for v in (1 + a, 1 + nd + a)] + [1 + 2 * nd]
  y = jnp.transpose(y, perm).reshape(
    batch, *(c * s for c, s in zip(phase_len, strides, strict=True)), cout
  )
  return y[(slice(None), *(slice(0, n) for n in out_len), slice(None))]


# ------------------------------------------------------------------------------------------------------
# Modules.
# ------------------------------------------------------------------------------------------------------
class Conv(nn.Module):
  """N-d convolution (2-D NHWC or 3-D NDHWC) on ``lax.conv_general_dilated`` with Keras padding.

  Parameters: ``kernel`` (*kernel_size, C_in / feature_group_count, features) and ``bias`` (features,)
  (Keras defaults: glorot_uniform kernel, zero bias). ``feature_group_count = C_in = features`` is a
  depthwise convolution (:func:`depthwise_conv`); PyTorch ``Conv2d(groups=g)`` weights (O, I/g, kH, kW)
  map to this kernel by ``transpose(2, 3, 1, 0)``.

  Attributes:
    features: output channels.
    kernel_size: one int per spatial axis; its length selects 2-D or 3-D.
    strides: int or one per spatial axis.
    padding: ``'same'`` (Keras/TF rule, see :func:`keras_same_padding`), ``'valid'``, or explicit pairs.
    kernel_dilation: int or one per axis (atrous convolution).
    feature_group_count: channel groups; ``C_in`` and ``features`` must be divisible by it.
    use_bias: add a bias (Keras default True).
    kernel_init: kernel initialiser.
    bias_init: bias initialiser.
    dtype: computation dtype (inputs and kernel are cast to it).
    param_dtype: parameter dtype.
    precision: passed to ``lax.conv_general_dilated``.
  """

  features: int
  kernel_size: Sequence[int]
  strides: int | Sequence[int] = 1
  padding: PaddingLike = "same"
  kernel_dilation: int | Sequence[int] = 1
  feature_group_count: int = 1
  use_bias: bool = True
  kernel_init: Initializer = glorot_uniform
  bias_init: Initializer = zeros
  dtype: Dtype = jnp.float32
  param_dtype: Dtype = jnp.float32
  precision: Any = None

  @nn.compact
  def __call__(self, x: Array) -> Array:
    """Applies the convolution.

    Args:
      x: (B, *spatial, C_in) with ``len(spatial) == len(kernel_size)``.

    Returns:
      (B, *out_spatial, features) in ``dtype``.

    Raises:
      ValueError: ``x`` has the wrong rank, or channels not divisible by ``feature_group_count``.
    """
    ksize = tuple(int(k) for k in self.kernel_size)
    nd = len(ksize)
    if x.ndim != nd + 2:
      raise ValueError(
        f"layers.Conv: a {nd}-D kernel needs input (B, *{nd} spatial, C), got shape {x.shape}"
      )
    groups = int(self.feature_group_count)
    if groups < 1 or x.shape[-1] % groups or self.features % groups:
      raise ValueError(
        f"layers.Conv: input channels {x.shape[-1]} and features {self.features} must be divisible "
        f"by feature_group_count={groups}"
      )
    strides = _as_tuple(self.strides, nd, "strides")
    dilation = _as_tuple(self.kernel_dilation, nd, "kernel_dilation")
    kernel = self.param(
      "kernel", self.kernel_init, (*ksize, x.shape[-1] // groups, self.features), self.param_dtype
    )
    pads = conv_padding(self.padding, x.shape[1:-1], ksize, strides, dilation)
    y = conv_nd(
      x.astype(self.dtype),
      kernel.astype(self.dtype),
      strides=strides,
      padding=pads,
      rhs_dilation=dilation,
      feature_group_count=groups,
      precision=self.precision,
    )
    if self.use_bias:
      bias = self.param("bias", self.bias_init, (self.features,), self.param_dtype)
      y = y + bias.astype(self.dtype)
    return y


class ConvTranspose(nn.Module):
  """N-d transposed convolution (2-D NHWC or 3-D NDHWC) with a selectable implementation.

  Same parameters as :class:`Conv` (``kernel`` (*kernel_size, C_in, features), ``bias``). Semantics of the
  exact implementations: ``lax.conv_transpose(..., transpose_kernel=False)``; ``'same'`` gives
  ``out = in * strides`` like Keras ``Conv*DTranspose(padding='same')`` (model_spec §1.1, §1.4).

  Attributes:
    features: output channels.
    kernel_size: one int per spatial axis.
    strides: upsampling factor, int or one per axis.
    padding: ``'same'`` or ``'valid'``.
    impl: one of :data:`CONV_TRANSPOSE_IMPLS`; ``'resize_conv'`` is a *different operator* kept only for
      speed comparisons (see the module docstring).
    use_bias: add a bias (Keras default True).
    kernel_init: kernel initialiser (Keras default glorot_uniform; symmetric in fan-in/out).
    bias_init: bias initialiser.
    dtype: computation dtype.
    param_dtype: parameter dtype.
    precision: passed to the convolution.
  """

  features: int
  kernel_size: Sequence[int]
  strides: int | Sequence[int] = 2
  padding: str = "same"
  impl: str = "input_dilation"
  use_bias: bool = True
  kernel_init: Initializer = glorot_uniform
  bias_init: Initializer = zeros
  dtype: Dtype = jnp.float32
  param_dtype: Dtype = jnp.float32
  precision: Any = None

  @nn.compact
  def __call__(self, x: Array) -> Array:
    """Applies the transposed convolution.

    Args:
      x: (B, *spatial, C_in).

    Returns:
      (B, *out_spatial, features) in ``dtype``; ``out_spatial = spatial * strides`` for ``'same'``.

    Raises:
      ValueError: wrong rank, unknown ``impl`` or ``padding``.
    """
    ksize = tuple(int(k) for k in self.kernel_size)
    nd = len(ksize)
    if x.ndim != nd + 2:
      raise ValueError(
        f"layers.ConvTranspose: a {nd}-D kernel needs input (B, *{nd} spatial, C), got {x.shape}"
      )
    if self.impl not in CONV_TRANSPOSE_IMPLS:
      raise ValueError(
        f"layers.ConvTranspose: impl must be one of {CONV_TRANSPOSE_IMPLS}, got {self.impl!r}"
      )
    kernel = self.param(
      "kernel", self.kernel_init, (*ksize, x.shape[-1], self.features), self.param_dtype
    )
    y = conv_transpose_nd(
      x.astype(self.dtype),
      kernel.astype(self.dtype),
      strides=_as_tuple(self.strides, nd, "strides"),
      padding=self.padding,
      impl=self.impl,
      precision=self.precision,
    )
    if self.use_bias:
      bias = self.param("bias", self.bias_init, (self.features,), self.param_dtype)
      y = y + bias.astype(self.dtype)
    return y


def max_pool(
  x: Array, window: Sequence[int], strides: Sequence[int] | None = None, impl: str = "reshape"
) -> Array:
  """Max pooling over the spatial axes of (B, *spatial, C), Keras ``'valid'`` (floor) semantics.

  Args:
    x: (B, *spatial, C), 2-D NHWC or 3-D NDHWC.
    window: window per spatial axis (e.g. (2, 2) or (2, 2, 2)).
    strides: defaults to ``window`` (Keras default).
    impl: ``'reshape'`` (crop to a multiple of the window, reshape and ``max``; only when
      ``strides == window``, otherwise falls back) or ``'reduce_window'`` (``lax.reduce_window``). The
      forward results are identical; gradients differ only on exact ties inside a window (``max`` splits the
      gradient among tied maxima, ``reduce_window`` picks one), which after a ReLU only happens for zeros
      whose ReLU gradient is zero anyway.

  Returns:
    (B, *floor((spatial - window) / strides) + 1, C).

  Raises:
    ValueError: wrong number of window entries, a window larger than the input, or unknown ``impl``.
  """
  nd = x.ndim - 2
  window = _as_tuple(window, nd, "window")
  strides = window if strides is None else _as_tuple(strides, nd, "strides")
  for a in range(nd):
    if x.shape[1 + a] < window[a]:
      raise ValueError(
        f"layers.max_pool: window {window} larger than input spatial {x.shape[1:-1]}"
      )
  if impl == "reshape" and strides == window:
    outs = [x.shape[1 + a] // window[a] for a in range(nd)]
    x = x[(slice(None), *(slice(0, o * w) for o, w in zip(outs, window, strict=True)), slice(None))]
    shape = [x.shape[0]]
    for o, w in zip(outs, window, strict=True):
      shape += [o, w]
    x = x.reshape(*shape, x.shape[-1])
    return jnp.max(x, axis=tuple(2 + 2 * a for a in range(nd)))
  if impl not in ("reshape", "reduce_window"):
    raise ValueError(f"layers.max_pool: impl must be 'reshape' or 'reduce_window', got {impl!r}")
  init = -jnp.inf  # a Python scalar: JAX then uses the differentiable max-pool primitive
  return lax.reduce_window(x, init, lax.max, (1, *window, 1), (1, *strides, 1), "VALID")


def pool_output_size(size: int, window: int, stride: int, padding: int, ceil_mode: bool) -> int:
  """Output length of one axis of a PyTorch / Caffe pooling window (``nn.MaxPool2d`` semantics).

  ``floor`` (or ``ceil`` with ``ceil_mode``) of ``(size + 2 * padding - window) / stride``, plus 1; in ceil
  mode a last window that would start in the right padding is dropped (PyTorch's rule, which also gives
  Caffe's sizes for DeepLab's 3x3 / 2 pad-1 pools: 321 -> 161 -> 81 -> 41, docs/model_spec.md §2.1).

  Raises:
    ValueError: the window does not fit the padded input.
  """
  span = size + 2 * padding - window
  if span < 0:
    raise ValueError(
      f"layers: pooling window {window} larger than the padded input {size} + 2 * {padding}"
    )
  out = (-(-span // stride) if ceil_mode else span // stride) + 1
  if ceil_mode and (out - 1) * stride >= size + padding:
    out -= 1
  return out


_TORCH_POOL_IMPL: contextvars.ContextVar[str] = contextvars.ContextVar(
  "torch_max_pool_impl", default="reduce_window"
)
TORCH_POOL_IMPLS = ("reduce_window", "slices")


@contextlib.contextmanager
def torch_max_pool_impl(impl: str) -> Iterator[None]:
  """Chooses how :func:`torch_max_pool` computes while models are traced in this context.

  ``'reduce_window'`` (default): one ``lax.reduce_window`` max (XLA's pooling, select-and-scatter
  gradient). ``'slices'``: the maximum of the ``prod(window)`` strided slices of the ``-inf``-padded input,
  which uses only pad / slice / maximum, operators every exporter supports (ONNX export: onnxruntime
  rejects the 4-D ``MaxPool`` kernel a padded NHWC ``reduce_window`` converts to). Forward values are
  identical; gradients differ only at tied maxima.

  Raises:
    ValueError: unknown ``impl``.
  """
  with _use_impl(_TORCH_POOL_IMPL, TORCH_POOL_IMPLS, impl):
    yield


def torch_max_pool(
  x: Array,
  window: int | Sequence[int],
  strides: int | Sequence[int] | None = None,
  padding: int | Sequence[int] = 0,
  ceil_mode: bool = False,
) -> Array:
  """Max pooling of (B, *spatial, C) with PyTorch ``nn.MaxPool2d`` / Caffe semantics.

  Implicit padding is ``-inf`` (never selected); output sizes follow :func:`pool_output_size`, so
  ``ceil_mode=True`` reproduces Caffe's pooling (DeepLab-v2 VGG16 pools, model_spec §2.1; the ResNet stem of
  DeepLab-v2, §3.1; "emulate with explicit asymmetric padding", §13).

  Args:
    x: (B, *spatial, C).
    window: window per spatial axis.
    strides: defaults to ``window`` (PyTorch default).
    padding: symmetric implicit padding per axis (PyTorch ``padding``).
    ceil_mode: round the output size up (Caffe) instead of down.

  Returns:
    (B, *out_spatial, C) in ``x``'s dtype.

  Raises:
    ValueError: a window larger than the padded input, or ``padding > window // 2`` (PyTorch's limit).
  """
  nd = x.ndim - 2
  window = _as_tuple(window, nd, "window")
  strides = window if strides is None else _as_tuple(strides, nd, "strides")
  padding = _as_tuple(padding, nd, "padding")
  pads, outs = [], []
  for a in range(nd):
    if padding[a] > window[a] // 2:
      raise ValueError(f"layers.torch_max_pool: padding {padding} exceeds half the window {window}")
    n = x.shape[1 + a]
    out = pool_output_size(n, window[a], strides[a], padding[a], ceil_mode)
    # Right padding so that exactly `out` windows fit (may be below `padding` in floor mode: crop then).
    hi = (out - 1) * strides[a] + window[a] - n - padding[a]
    pads.append((padding[a], hi))
    outs.append(out)
  init = -jnp.inf  # a Python scalar: JAX then uses the differentiable max-pool primitive
  # Floor mode may leave input cells no window reaches: crop them instead of padding negatively.
  crop = tuple(slice(0, x.shape[1 + a] + min(pads[a][1], 0)) for a in range(nd))
  x = x[(slice(None), *crop)]
  pads = [(lo, max(hi, 0)) for lo, hi in pads]
  if _TORCH_POOL_IMPL.get() == "slices":
    xp = jnp.pad(x, ((0, 0), *pads, (0, 0)), constant_values=-jnp.inf)
    y = None
    for offset in itertools.product(*(range(w) for w in window)):
      cells = tuple(
        slice(o, o + (n - 1) * s + 1, s) for o, n, s in zip(offset, outs, strides, strict=True)
      )
      v = xp[(slice(None), *cells)]
      y = v if y is None else jnp.maximum(y, v)
    return y
  y = lax.reduce_window(
    x, init, lax.max, (1, *window, 1), (1, *strides, 1), ((0, 0), *pads, (0, 0))
  )
  assert tuple(y.shape[1:-1]) == tuple(outs), (y.shape, outs)
  return y


def adaptive_avg_pool(x: Array, output_size: int | Sequence[int]) -> Array:
  """PyTorch ``nn.AdaptiveAvgPool2d``: (B, H, W, C) -> (B, *output_size, C) for any input size.

  Output cell ``i`` of an axis of length ``n`` averages input ``[floor(i * n / out), ceil((i + 1) * n / out))``
  (PyTorch's bins; they overlap when ``n`` is not a multiple of ``out`` and repeat inputs when ``n < out``).
  Computed as two small averaging matrices, one per axis (torchvision VGG's 7x7 pool before the classifier).

  Args:
    x: (B, H, W, C).
    output_size: int or (out_h, out_w).

  Returns:
    (B, out_h, out_w, C) in ``x``'s dtype.
  """
  out_h, out_w = _as_tuple(output_size, 2, "output_size")

  def matrix(n: int, out: int) -> np.ndarray:
    m = np.zeros((out, n), np.float32)
    for i in range(out):
      lo, hi = (i * n) // out, -(-((i + 1) * n) // out)
      m[i, lo:hi] = 1.0 / (hi - lo)
    return m

  mh = jnp.asarray(matrix(x.shape[1], out_h), x.dtype)
  mw = jnp.asarray(matrix(x.shape[2], out_w), x.dtype)
  return jnp.einsum("bhwc,ih,jw->bijc", x, mh, mw, precision=lax.Precision.HIGHEST)


def resize_bilinear(x: Array, size: Sequence[int]) -> Array:
  """Bilinear resize of (B, H, W, C) to (B, *size, C) in ``x``'s dtype.

  ``semdepth_jax.resize.bilinear``: half-pixel centres, no antialiasing (docs/model_spec.md §13).
  """
  from semdepth_jax import resize

  return resize.bilinear(x, size).astype(x.dtype)


class LocalResponseNorm(nn.Module):
  """Local response normalisation across channels (Caffe ``LRN``, ``ACROSS_CHANNELS``; AlexNet).

  ``b_c = a_c / (k + alpha / n * sum_{c' in window(c)} a_{c'}^2) ** beta`` with a window of ``n =
  size`` channels around ``c`` (``(n - 1) // 2`` before, ``n // 2`` after; channels outside are zero):
  Caffe's ``lrn_layer.cpp``, and for odd ``n`` PyTorch's ``nn.LocalResponseNorm`` (both divide ``alpha``
  by ``n``; for even ``n`` PyTorch puts the longer half before ``c``). No
  parameters. Defaults are Caffe's / AlexNet's (local_size 5, alpha 1e-4, beta 0.75, k 1), the values
  docs/model_spec.md §2.2 recommends for DepthNet.

  Attributes:
    size: channels in the window (odd in Caffe).
    alpha: scale of the sum of squares (divided by ``size``).
    beta: exponent.
    k: additive constant.
  """

  size: int = 5
  alpha: float = 1e-4
  beta: float = 0.75
  k: float = 1.0

  def __call__(self, x: Array) -> Array:
    """(..., C) -> (..., C), same dtype (statistics in float32).

    Raises:
      ValueError: ``size < 1``.
    """
    if self.size < 1:
      raise ValueError(f"layers.LocalResponseNorm: size must be >= 1, got {self.size}")
    xf = x.astype(jnp.float32)
    sq = xf * xf
    c = x.shape[-1]
    before, after = (self.size - 1) // 2, self.size // 2
    pad = [(0, 0)] * (x.ndim - 1) + [(before, after)]
    sq = jnp.pad(sq, pad)
    total = sum(sq[..., i : i + c] for i in range(self.size))
    scale = self.k + (self.alpha / self.size) * total
    return (xf * scale ** (-self.beta)).astype(x.dtype)


@dataclasses.dataclass(frozen=True)
class BatchNormSpec:
  """How a model's BatchNorm layers behave (hashable, so it can be a linen module attribute).

  Attributes:
    momentum: Flax convention, ``running = momentum * running + (1 - momentum) * batch``. PyTorch's
      ``momentum=0.1`` is Flax 0.9; Keras' 0.99 is the same number in both.
    epsilon: added to the variance (Keras 1e-3, PyTorch / timm 1e-5, Caffe 1e-5).
    frozen: inference statistics in training too and no affine update (DeepLab-v2 with batch 3, model_spec
      §3.1): the layer's ``scale``/``bias`` live in the ``batch_stats`` collection next to ``mean``/``var``,
      so no optimiser (nor weight decay) ever touches them.
  """

  momentum: float = 0.9
  epsilon: float = 1e-5
  frozen: bool = False


KERAS_BN = BatchNormSpec(momentum=KERAS_BN_MOMENTUM, epsilon=KERAS_BN_EPSILON)
"""Keras ``BatchNormalization`` defaults (paper 000, docs/model_spec.md §1.0, §13)."""

TORCH_BN = BatchNormSpec(momentum=0.9, epsilon=1e-5)
"""PyTorch ``nn.BatchNorm2d`` defaults (``momentum=0.1`` in PyTorch's convention; torchvision, timm)."""

FROZEN_BN = BatchNormSpec(momentum=0.9, epsilon=1e-5, frozen=True)
"""Frozen BatchNorm with Caffe / PyTorch epsilon (DeepLab-v2, docs/model_spec.md §3.1)."""


class FrozenBatchNorm(nn.Module):
  """Per-channel affine normalisation with fixed statistics: ``(x - mean) / sqrt(var + eps) * scale + bias``.

  Every variable (``mean``, ``var``, ``scale``, ``bias``; shape (C,)) is in ``batch_stats`` and is never
  updated, in training or evaluation; initial values are those of a fresh BatchNorm (0, 1, 1, 0) until
  pretrained statistics are loaded.

  Attributes:
    epsilon: added to the variance.
    dtype: computation dtype.
  """

  epsilon: float = 1e-5
  dtype: Dtype = jnp.float32

  @nn.compact
  def __call__(self, x: Array) -> Array:
    """(..., C) -> (..., C)."""
    c = x.shape[-1]
    init = {"mean": jnp.zeros, "var": jnp.ones, "scale": jnp.ones, "bias": jnp.zeros}
    v = {k: self.variable("batch_stats", k, fn, (c,), jnp.float32).value for k, fn in init.items()}
    mul = v["scale"] * lax.rsqrt(v["var"] + self.epsilon)
    add = v["bias"] - v["mean"] * mul
    return (x.astype(jnp.float32) * mul + add).astype(self.dtype)


def batch_norm(
  train: bool,
  spec: BatchNormSpec = KERAS_BN,
  *,
  dtype: Dtype = jnp.float32,
  name: str | None = None,
) -> nn.Module:
  """A per-channel BatchNorm configured by ``spec`` (statistics over every axis but the last).

  Trainable specs give ``flax.linen.BatchNorm`` (``params``: scale, bias; ``batch_stats``: mean, var),
  using batch statistics and updating the running ones when ``train`` (then the caller passes
  ``mutable=['batch_stats']``); frozen specs give :class:`FrozenBatchNorm`. Both name their variables
  ``scale``, ``bias``, ``mean``, ``var``, so weight converters address them the same way.
  """
  if spec.frozen:
    return FrozenBatchNorm(epsilon=spec.epsilon, dtype=dtype, name=name)
  return nn.BatchNorm(
    use_running_average=not train,
    momentum=spec.momentum,
    epsilon=spec.epsilon,
    dtype=dtype,
    name=name,
  )


def keras_batch_norm(
  train: bool, *, dtype: Dtype = jnp.float32, name: str | None = None
) -> nn.Module:
  """:func:`batch_norm` with Keras defaults (momentum 0.99, epsilon 1e-3; model_spec §1.0, §13)."""
  return batch_norm(train, KERAS_BN, dtype=dtype, name=name)


def depthwise_conv(
  features: int,
  kernel_size: Sequence[int],
  *,
  strides: int | Sequence[int] = 1,
  padding: PaddingLike = "same",
  kernel_dilation: int | Sequence[int] = 1,
  use_bias: bool = True,
  kernel_init: Initializer = glorot_uniform,
  dtype: Dtype = jnp.float32,
  name: str | None = None,
) -> Conv:
  """A depthwise :class:`Conv` (one filter per input channel; ``features`` = input channels).

  Kernel (*kernel_size, 1, features); PyTorch ``Conv2d(C, C, k, groups=C)`` weights (C, 1, kH, kW) map to it
  by ``transpose(2, 3, 1, 0)``.
  """
  return Conv(
    features,
    kernel_size,
    strides=strides,
    padding=padding,
    kernel_dilation=kernel_dilation,
    feature_group_count=features,
    use_bias=use_bias,
    kernel_init=kernel_init,
    dtype=dtype,
    name=name,
  )


_ACTIVATIONS: dict[str, Callable[[Array], Array]] = {
  "relu": nn.relu,
  "sigmoid": nn.sigmoid,
  "linear": lambda x: x,
}


def activation(name: str) -> Callable[[Array], Array]:
  """Returns the activation ``'relu'``, ``'sigmoid'`` or ``'linear'``; raises ValueError otherwise."""
  if name not in _ACTIVATIONS:
    raise ValueError(f"layers: activation must be one of {tuple(_ACTIVATIONS)}, got {name!r}")
  return _ACTIVATIONS[name]


class ConvBNAct(nn.Module):
  """Convolution + BatchNorm + activation, in either order (2-D or 3-D by ``kernel_size``).

  ``order='conv_bn_act'`` is the U-Net ``conv2d_block`` layer (conv -> BN -> ReLU, model_spec §1.1);
  ``order='conv_act_bn'`` is the depth nets' Keras ``Conv(..., activation='relu')`` followed by
  ``BatchNormalization()`` (docs/model_spec.md §1.2-§1.4). Submodules: ``conv``, ``bn``.

  Attributes:
    features: output channels.
    kernel_size: one int per spatial axis.
    padding: ``'same'`` or ``'valid'``.
    order: ``'conv_bn_act'`` or ``'conv_act_bn'``.
    act: ``'relu'``, ``'sigmoid'`` or ``'linear'``.
    kernel_init: conv kernel initialiser.
    dtype: computation dtype.
  """

  features: int
  kernel_size: Sequence[int] = (3, 3)
  padding: PaddingLike = "same"
  order: str = "conv_bn_act"
  act: str = "relu"
  kernel_init: Initializer = glorot_uniform
  dtype: Dtype = jnp.float32

  @nn.compact
  def __call__(self, x: Array, train: bool = False) -> Array:
    """(B, *spatial, C_in) -> (B, *spatial', features); BN statistics update only when ``train``."""
    if self.order not in ("conv_bn_act", "conv_act_bn"):
      raise ValueError(
        f"layers.ConvBNAct: order must be conv_bn_act/conv_act_bn, got {self.order!r}"
      )
    fn = activation(self.act)
    x = Conv(
      self.features,
      self.kernel_size,
      padding=self.padding,
      kernel_init=self.kernel_init,
      dtype=self.dtype,
      name="conv",
    )(x)
    bn = keras_batch_norm(train, dtype=self.dtype, name="bn")
    if self.order == "conv_bn_act":
      return fn(bn(x))
    return bn(fn(x))


class ResidualBlock(nn.Module):
  """SCRX residual block with a pre-activation on the input (docs/model_spec.md §1.2).

  ``y = ReLU(shortcut(x) + BN(conv3x3(ReLU(BN(conv3x3(ReLU(x)))))))`` with
  ``shortcut(x) = BN(conv1x1(x))`` applied to the *raw* input. The reference code's channel test compares
  a tensor with an int and therefore always adds the projection; ``project_shortcut=True`` (default)
  reproduces that, ``False`` uses the identity when the channel count is unchanged.

  Submodules: ``conv1``, ``bn1``, ``conv2``, ``bn2``, ``shortcut_conv``, ``shortcut_bn``.

  Attributes:
    features: output channels.
    kernel_size: kernel of the two main convolutions (2-D (3, 3) in SCRX).
    project_shortcut: always use the 1x1 conv + BN shortcut (reference code behaviour).
    dtype: computation dtype.
  """

  features: int
  kernel_size: Sequence[int] = (3, 3)
  project_shortcut: bool = True
  dtype: Dtype = jnp.float32

  @nn.compact
  def __call__(self, x: Array, train: bool = False) -> Array:
    """(B, H, W, C_in) -> (B, H, W, features)."""
    y = nn.relu(x)
    y = Conv(self.features, self.kernel_size, dtype=self.dtype, name="conv1")(y)
    y = nn.relu(keras_batch_norm(train, dtype=self.dtype, name="bn1")(y))
    y = Conv(self.features, self.kernel_size, dtype=self.dtype, name="conv2")(y)
    y = keras_batch_norm(train, dtype=self.dtype, name="bn2")(y)
    if self.project_shortcut or x.shape[-1] != self.features:
      ones = (1,) * len(self.kernel_size)
      s = Conv(self.features, ones, dtype=self.dtype, name="shortcut_conv")(x)
      s = keras_batch_norm(train, dtype=self.dtype, name="shortcut_bn")(s)
    else:
      s = x.astype(self.dtype)
    return nn.relu(s + y)


from semdepth_jax.models.contract import DEPTH_OUTPUTS  # noqa: E402  (the one definition of depth units)


def depth_head_output(
  x: Array,
  *,
  final_activation: str,
  depth_output: str,
  max_depth: float | None,
  out_size: Sequence[int] | None,
  where: str,
  depth_prior: float | None = None,
) -> Array:
  """Turns a depth head's pre-activation (B, h, w, 1) into the ``depth`` output (float32).

  Args:
    x: (B, h, w, 1) pre-activation.
    final_activation: ``'relu'``, ``'sigmoid'`` or ``'linear'``.
    depth_output: one of ``semdepth_jax.models.contract.DEPTH_OUTPUTS`` (``'metres'``, paper 000's
      ``'inverted_normalised'`` ``1 - min(d / d_sat, 1)`` (docs/model_spec.md §1.0), or ``'log'``, natural log
      of metres, which wants ``final_activation='linear'``); conversion to metres is the model's ``decode``
      (``semdepth_jax.models.contract``), not here.
    max_depth: with ``'metres'`` and a sigmoid, the output is ``max_depth * sigmoid`` (metres); required
      then, ignored otherwise.
    out_size: if given, bilinear upsampling (``antialias=False``) to this (H, W), the paper's "bilinear
      upsampling to the input size" (docs/model_spec.md §11 items 1-3).
    where: model name for error messages.
    depth_prior: metres; with ``'log'`` output the head predicts ``log(d / depth_prior)`` and the output
      is ``x + log(depth_prior)`` (natural log of metres), so a freshly initialised head (x ~ 0) starts at
      a depth typical of the data instead of 1 m. None = 1 m.

  Returns:
    (B, h, w, 1) or (B, *out_size, 1) float32.

  Raises:
    ValueError: unknown ``final_activation`` / ``depth_output``, or a metres sigmoid head without
      ``max_depth``.
  """
  if depth_output not in DEPTH_OUTPUTS:
    raise ValueError(f"{where}: depth_output must be one of {DEPTH_OUTPUTS}, got {depth_output!r}")
  y = activation(final_activation)(x.astype(jnp.float32))
  if final_activation == "sigmoid" and depth_output == "metres":
    if max_depth is None:
      raise ValueError(
        f"{where}: a sigmoid output lies in (0, 1); with depth_output='metres' set max_depth (metres, "
        "output = max_depth * sigmoid), or use depth_output='inverted_normalised' (paper 000) or "
        "final_activation='relu'"
      )
    y = y * max_depth
  if depth_output == "log" and depth_prior:
    if not depth_prior > 0:
      raise ValueError(f"{where}: depth_prior must be > 0 metres, got {depth_prior}")
    y = y + math.log(float(depth_prior))
  if out_size is not None:
    y = resize_bilinear(y, out_size)
  return y
