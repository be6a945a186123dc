"""Visualisation: colourised depth and labels, legends, and example grids (PNG via matplotlib Agg).

Colourisation functions are plain numpy (usable for TensorBoard image summaries and overlays); figure
functions build ``matplotlib.figure.Figure`` objects directly with the Agg canvas, never through
``pyplot``, so no GUI backend or global figure state is involved and nothing leaks between calls.

Depth is always shown with a *fixed* metric range (a dataset's ``DatasetMeta.depth_vis_range``), never
rescaled per frame, so colours mean the same distance in every image; invalid depth (``0``, negative or
non-finite) is drawn in ``INVALID_COLOR``. Class palettes and names come from
``semdepth_jax.data.meta``.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from semdepth_jax.data.meta import IGNORE_INDEX, DatasetMeta

INVALID_COLOR = (0, 0, 0)
"""RGB of invalid depth pixels."""
IGNORE_COLOR = (0, 0, 0)
"""RGB of ignored (``ignore_index``) label pixels."""
DEFAULT_DEPTH_CMAP = "turbo"
"""Colour map for depth: its ends are dark blue / dark red, never black, so invalid pixels stand out."""

ROW_HEIGHT_IN = 2.0
"""Height of one example row of ``example_grid`` in inches (the PNG is ``n * ROW_HEIGHT_IN * dpi`` tall)."""
LEGEND_ROWS = 10
"""Legend entries per legend column in ``example_grid``."""
LEGEND_COLUMNS = 3
"""At most this many legend columns per row in ``example_grid`` (further classes are counted as "+k more")."""


def _cmap(name: str):
  import matplotlib

  return matplotlib.colormaps[name]


def colourise_depth(
  depth_m: np.ndarray,
  vmin: float,
  vmax: float,
  cmap: str = DEFAULT_DEPTH_CMAP,
  invalid_color: tuple[int, int, int] = INVALID_COLOR,
) -> np.ndarray:
  """Maps metric depth to RGB with a fixed range.

  ``t = clip((d - vmin) / (vmax - vmin), 0, 1)`` indexes the colour map (``vmin`` -> first colour);
  depths outside the range saturate at the ends. Pixels with ``d <= 0`` or non-finite ``d`` get
  ``invalid_color``.

  Args:
    depth_m: (H, W) or (H, W, 1) depth in metres.
    vmin: near end of the range in metres (e.g. ``meta.depth_vis_range[0]``).
    vmax: far end in metres, > vmin.
    cmap: matplotlib colour map name.
    invalid_color: RGB of invalid pixels.

  Returns:
    uint8 (H, W, 3).

  Raises:
    ValueError: ``vmax <= vmin`` or depth is not 2-D.
  """
  if not vmax > vmin:
    raise ValueError(f"depth range must have vmax > vmin, got ({vmin}, {vmax})")
  d = np.asarray(depth_m, np.float32)
  if d.ndim == 3 and d.shape[-1] == 1:
    d = d[..., 0]
  if d.ndim != 2:
    raise ValueError(f"depth must be (H, W) or (H, W, 1), got {d.shape}")
  valid = np.isfinite(d) & (d > 0)
  t = np.clip((np.where(valid, d, vmin) - vmin) / (vmax - vmin), 0.0, 1.0)
  lut = (
    (np.asarray(_cmap(cmap)(np.linspace(0.0, 1.0, 256)))[:, :3] * 255.0).round().astype(np.uint8)
  )
  rgb = lut[np.rint(t * 255.0).astype(np.int64)]
  rgb[~valid] = np.asarray(invalid_color, np.uint8)
  return rgb


def colourise_labels(
  labels: np.ndarray,
  colors: Sequence[Sequence[int]],
  ignore_index: int = IGNORE_INDEX,
  ignore_color: tuple[int, int, int] = IGNORE_COLOR,
) -> np.ndarray:
  """Maps training ids to their palette colours.

  Args:
    labels: (H, W) or (H, W, 1) integer ids in ``[0, len(colors))`` or ``ignore_index``.
    colors: one (r, g, b) uint8 triple per class (``DatasetMeta.class_colors``).
    ignore_index: id drawn in ``ignore_color``.
    ignore_color: RGB of ignored pixels.

  Returns:
    uint8 (H, W, 3).

  Raises:
    ValueError: an id outside the palette that is not ``ignore_index`` (lists the ids).
  """
  lab = np.asarray(labels)
  if lab.ndim == 3 and lab.shape[-1] == 1:
    lab = lab[..., 0]
  lab = lab.astype(np.int64)
  palette = np.asarray(colors, np.uint8).reshape(-1, 3)
  ignored = lab == ignore_index
  bad = ~ignored & ((lab < 0) | (lab >= len(palette)))
  if bad.any():
    ids = np.unique(lab[bad]).tolist()
    raise ValueError(
      f"label ids {ids[:10]} are outside the palette of {len(palette)} classes "
      f"(ignore_index = {ignore_index})"
    )
  rgb = palette[np.where(ignored, 0, lab)] if len(palette) else np.zeros(lab.shape + (3,), np.uint8)
  rgb[ignored] = np.asarray(ignore_color, np.uint8)
  return rgb


def classes_present(labels: np.ndarray, ignore_index: int = IGNORE_INDEX) -> list[int]:
  """Class ids occurring in ``labels`` (``ignore_index`` excluded), most frequent first."""
  lab = np.asarray(labels).reshape(-1).astype(np.int64)
  lab = lab[lab != ignore_index]
  if lab.size == 0:
    return []
  ids, counts = np.unique(lab, return_counts=True)
  order = np.lexsort((ids, -counts))
  return [int(i) for i in ids[order]]


def legend_handles(
  class_ids: Sequence[int],
  class_names: Sequence[str],
  class_colors: Sequence[Sequence[int]],
) -> list:
  """``matplotlib.patches.Patch`` handles (colour + ``"id name"``) for ``ax.legend(handles=...)``."""
  from matplotlib.patches import Patch

  return [
    Patch(
      facecolor=np.asarray(class_colors[i], np.float64) / 255.0,
      edgecolor="black",
      linewidth=0.3,
      label=f"{i} {class_names[i]}",
    )
    for i in class_ids
  ]


def new_figure(width_in: float, height_in: float, dpi: int = 100):
  """A ``matplotlib.figure.Figure`` with an Agg canvas (no pyplot state)."""
  from matplotlib.backends.backend_agg import FigureCanvasAgg
  from matplotlib.figure import Figure

  fig = Figure(figsize=(width_in, height_in), dpi=dpi)
  FigureCanvasAgg(fig)
  return fig


def save_figure(fig, path: str | os.PathLike) -> str:
  """Writes ``fig`` as PNG at its own size and dpi (no tight cropping) and releases it.

  Returns:
    The path written.
  """
  path = os.fspath(path)
  parent = os.path.dirname(path)
  if parent:
    os.makedirs(parent, exist_ok=True)
  fig.savefig(path, format="png", dpi=fig.dpi)
  fig.clear()
  return path


def depth_colorbar(fig, ax, vmin: float, vmax: float, cmap: str = DEFAULT_DEPTH_CMAP):
  """Draws a vertical colour bar for depth in metres into axes ``ax`` (label ``depth [m]``)."""
  from matplotlib.cm import ScalarMappable
  from matplotlib.colors import Normalize

  mappable = ScalarMappable(norm=Normalize(vmin=vmin, vmax=vmax), cmap=_cmap(cmap))
  cbar = fig.colorbar(mappable, cax=ax)
  cbar.set_label("depth [m]", fontsize=7)
  cbar.ax.tick_params(labelsize=6)
  return cbar


def _as_uint8_rgb(image: np.ndarray) -> np.ndarray:
  img = np.asarray(image)
  if img.dtype != np.uint8:
    img = (np.clip(img.astype(np.float32), 0.0, 1.0) * 255.0).round().astype(np.uint8)
  return img


def _text_panel(ax, text: str, shape) -> None:
  ax.set_box_aspect(shape[0] / shape[1])  # same box as an image panel of this example
  ax.set_facecolor((0.85, 0.85, 0.85))
  ax.text(0.5, 0.5, text, ha="center", va="center", fontsize=8, transform=ax.transAxes)
  ax.set_xticks([])
  ax.set_yticks([])


def example_grid(
  examples: Sequence[Mapping[str, Any]],
  *,
  class_names: Sequence[str],
  class_colors: Sequence[Sequence[int]],
  depth_range: tuple[float, float],
  ignore_index: int = IGNORE_INDEX,
  cmap: str = DEFAULT_DEPTH_CMAP,
  titles: Sequence[str] | None = None,
  dpi: int = 100,
):
  """One row per example: RGB | colourised depth + colour bar in metres | labels + legend.

  The legend lists the classes present in that example's labels (most frequent first, at most
  ``LEGEND_COLUMNS * LEGEND_ROWS`` entries). Examples without depth/labels (``has_depth`` / ``has_segmentation`` False)
  show a grey "no depth" / "no labels" panel. The figure is ``len(examples) * ROW_HEIGHT_IN`` inches tall;
  panel widths follow the first image's aspect ratio.

  Args:
    examples: dicts with ``image`` (H, W, 3) uint8 or float [0, 1], ``depth`` (H, W) metres,
      ``segmentation`` (H, W) or (H, W, 1) ids, optional flags and ``file_name``.
    class_names: names of the training ids.
    class_colors: RGB per training id.
    depth_range: fixed (near, far) metres of the depth colours.
    ignore_index: label id drawn black and left out of legends.
    cmap: depth colour map.
    titles: per-row titles (default: ``file_name``).
    dpi: figure resolution.

  Returns:
    ``matplotlib.figure.Figure`` (save with ``save_figure``).

  Raises:
    ValueError: no examples.
  """
  n = len(examples)
  if n == 0:
    raise ValueError("example_grid needs at least one example")
  h0, w0 = np.shape(examples[0]["image"])[:2]
  panel_w = ROW_HEIGHT_IN * w0 / h0
  presents = [
    classes_present(ex["segmentation"], ignore_index)
    if bool(ex.get("has_segmentation", True)) and "segmentation" in ex
    else []
    for ex in examples
  ]
  # Legend column width from its longest entry (~0.05 in per character at 6 pt, plus the swatch).
  legend_w = 1.0
  for present in presents:
    shown = present[: LEGEND_COLUMNS * LEGEND_ROWS]
    if shown:
      chars = max(len(f"{i} {class_names[i]}") for i in shown)
      legend_w = max(legend_w, math.ceil(len(shown) / LEGEND_ROWS) * (0.3 + 0.05 * chars))
  cbar_w = 0.12
  # RGB, depth, colour bar (+ its tick labels), labels, legend.
  widths = [panel_w, panel_w, cbar_w, 0.4, panel_w, legend_w]
  fig = new_figure(sum(widths) + 0.2, n * ROW_HEIGHT_IN, dpi=dpi)
  grid = fig.add_gridspec(
    n, len(widths), width_ratios=widths, left=0.01, right=0.99, top=1 - 0.25 / n / ROW_HEIGHT_IN * 1.2,
    bottom=0.02 / n, wspace=0.04, hspace=0.18,
  )  # fmt: skip
  vmin, vmax = depth_range
  for r, ex in enumerate(examples):
    title = titles[r] if titles is not None else _name(ex)
    ax = fig.add_subplot(grid[r, 0])
    ax.imshow(_as_uint8_rgb(ex["image"]), interpolation="nearest")
    ax.set_xticks([])
    ax.set_yticks([])
    ax.set_ylabel(title, fontsize=7)
    if r == 0:
      ax.set_title("RGB", fontsize=8)

    ax = fig.add_subplot(grid[r, 1])
    if bool(ex.get("has_depth", True)) and "depth" in ex:
      ax.imshow(colourise_depth(ex["depth"], vmin, vmax, cmap), interpolation="nearest")
      ax.set_xticks([])
      ax.set_yticks([])
      depth_colorbar(fig, fig.add_subplot(grid[r, 2]), vmin, vmax, cmap)
    else:
      _text_panel(ax, "no depth", np.shape(ex["image"]))
    if r == 0:
      ax.set_title(f"depth (fixed {vmin:g}-{vmax:g} m, black = invalid)", fontsize=8)

    ax = fig.add_subplot(grid[r, 4])
    leg_ax = fig.add_subplot(grid[r, 5])
    leg_ax.axis("off")
    if bool(ex.get("has_segmentation", True)) and "segmentation" in ex:
      seg = ex["segmentation"]
      ax.imshow(colourise_labels(seg, class_colors, ignore_index), interpolation="nearest")
      ax.set_xticks([])
      ax.set_yticks([])
      present = presents[r]
      shown = present[: LEGEND_COLUMNS * LEGEND_ROWS]
      if shown:
        handles = legend_handles(shown, class_names, class_colors)
        extra = len(present) - len(shown)
        leg_ax.legend(
          handles=handles,
          loc="center left",
          fontsize=6,
          ncol=math.ceil(len(shown) / LEGEND_ROWS),
          frameon=False,
          handlelength=1.0,
          columnspacing=0.6,
          borderaxespad=0.0,
          title=f"+{extra} more" if extra else None,
          title_fontsize=6,
        )
    else:
      _text_panel(ax, "no labels", np.shape(ex["image"]))
    if r == 0:
      ax.set_title("labels (black = ignore)", fontsize=8)
  return fig


def dataset_grid(
  examples: Sequence[Mapping[str, Any]], meta: DatasetMeta, *, dpi: int = 100, **kwargs
):
  """``example_grid`` with the palette, class names, ignore index and depth range of ``meta``."""
  return example_grid(
    examples,
    class_names=meta.class_names,
    class_colors=meta.class_colors,
    depth_range=meta.depth_vis_range,
    ignore_index=meta.ignore_index,
    dpi=dpi,
    **kwargs,
  )


def _name(example: Mapping[str, Any]) -> str:
  name = example.get("file_name", "")
  return name.decode("utf-8") if isinstance(name, bytes) else str(name)
