"""Synthetic label-free cells and fields with known answers, for the demo and the tests.

Two "cell lines" differ the way HEK-293A and HT1080 differ under a benchtop brightfield
microscope (Yao et al. 2019): ``round`` cells are compact, nearly circular, smooth-edged and
finely textured; ``spindle`` cells are larger, elongated, with irregular protruding edges and a
coarser texture. The two overlap, so a classifier is good but not perfect.

Each flask adds nuisance that a model can latch onto and that a random split rewards:
background level, an illumination gradient, substrate texture (Yao's "background irregularities"),
camera noise, and a density-dependent shape shift (cells in dense flasks are smaller and rounder).
Each flask holds one line, as in the papers, so evaluation must hold out whole flasks.

Cells are rendered as a brightfield image of a slightly defocused cell: a dark edge with a bright
halo outside it, a slightly dark, textured body and a darker nucleus. Whole fields also carry a
fluorescence channel that marks the ``spindle`` line (the ground truth the papers use), with
uneven illumination so that background correction matters, and an instance mask.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd
from scipy import ndimage

from ..core.cellset import CellSet, provenance_entry
from ..utils import StainfreeError

#: Shape and texture of each synthetic line (means and spreads of the draws).
LINES = {
    "round": dict(radius=(8.0, 1.0), elongation=(1.15, 0.10), roughness=0.035, texture_scale=0.8, texture=0.10, nucleus=0.50),
    "spindle": dict(radius=(9.5, 1.3), elongation=(1.75, 0.30), roughness=0.10, texture_scale=1.8, texture=0.16, nucleus=0.38),
    # one shape, one texture; fibres run along the cell's long axis or across it: only their
    # direction relative to the outline differs, which neither the outline nor texture measured
    # along the image's axes can see (cells lie at any angle)
    "along": dict(radius=(9.0, 1.2), elongation=(1.6, 0.25), roughness=0.06, texture_scale=1.2, texture=0.06, nucleus=0.42, fibres=0.0),
    "across": dict(radius=(9.0, 1.2), elongation=(1.6, 0.25), roughness=0.06, texture_scale=1.2, texture=0.06, nucleus=0.42, fibres=90.0),
}
#: Contrast and period (pixels) of the fibres of the ``along`` and ``across`` lines.
FIBRES = (0.18, 5.0)
#: Relative shrinkage of cells in dense flasks.
DENSITY_SHRINK = {"low": 1.0, "high": 0.9}


@dataclasses.dataclass
class Flask:
    """The per-flask nuisance: what makes cells of one flask look alike.

    Attributes
    ----------
    name : str
        ``<line>-flask<k>``.
    line : str
        The cell line the flask holds (one line per flask).
    density : str
        ``"low"`` or ``"high"``; cells in dense flasks are smaller and rounder.
    background : float
        Mean background level (0 to 1).
    gradient : tuple of float
        Illumination gradient per pixel along y and x.
    substrate : float
        Strength of the substrate texture.
    noise : float
        Standard deviation of the camera noise.
    seed : int
        Seeds the flask's cells.
    """

    name: str
    line: str
    density: str
    background: float
    gradient: tuple[float, float]
    substrate: float
    noise: float
    seed: int


def _make_flasks(lines, flasks_per_line, densities, rng) -> list[Flask]:
    out = []
    for line in lines:
        for k in range(flasks_per_line):
            angle = rng.uniform(0, 2 * np.pi)
            amp = rng.uniform(0.0001, 0.0004)  # per pixel: up to 0.2 across a 512 px field
            out.append(
                Flask(
                    name=f"{line}-flask{k + 1}",
                    line=line,
                    density=densities[k % len(densities)],
                    background=rng.uniform(0.48, 0.56),
                    gradient=(amp * np.cos(angle), amp * np.sin(angle)),
                    substrate=rng.uniform(0.01, 0.025),
                    noise=rng.uniform(0.012, 0.02),
                    seed=int(rng.integers(2**31)),
                )
            )
    return out


def _draw_cell(line: str, density: str, rng: np.random.Generator) -> dict:
    p = LINES[line]
    radius = max(4.0, rng.normal(*p["radius"])) * DENSITY_SHRINK[density]
    elongation = max(1.0, rng.normal(*p["elongation"]))
    if density == "high":
        elongation = 1.0 + (elongation - 1.0) * 0.9
    harmonics = [(k, rng.normal(0, p["roughness"] / np.sqrt(k - 1)), rng.uniform(0, 2 * np.pi)) for k in range(2, 8)]
    return dict(
        radius=radius,
        elongation=elongation,
        angle=rng.uniform(0, np.pi),
        harmonics=harmonics,
        texture_scale=p["texture_scale"],
        texture=p["texture"],
        nucleus=p["nucleus"] * rng.uniform(0.85, 1.15),
        nucleus_offset=rng.normal(0, 0.15, size=2),
        fibres=p.get("fibres"),
        fibre_phase=rng.uniform(0, 2 * np.pi),
        seed=int(rng.integers(2**31)),
    )


def _render_cell(cell: dict, dy: np.ndarray, dx: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mask and brightfield contrast (added to background) of one cell on offset grids."""
    c, s = np.cos(cell["angle"]), np.sin(cell["angle"])
    u = c * dx + s * dy
    v = -s * dx + c * dy
    e = np.sqrt(cell["elongation"])
    uu, vv = u / e, v * e
    rho = np.hypot(uu, vv)
    phi = np.arctan2(vv, uu)
    boundary = np.full_like(rho, cell["radius"])
    for k, a, ph in cell["harmonics"]:
        boundary *= 1 + a * np.cos(k * phi + ph)
    d = rho - boundary  # approximately the signed distance to the edge, in pixels
    mask = d < 0
    rng = np.random.default_rng(cell["seed"])
    tex = ndimage.gaussian_filter(rng.standard_normal(d.shape), cell["texture_scale"])
    tex /= tex.std() + 1e-9
    body = 1.0 / (1.0 + np.exp(np.clip(d / 0.7, -50, 50)))
    nu, nv = cell["nucleus_offset"] * cell["radius"]
    nucleus_r = cell["radius"] * cell["nucleus"]
    nucleus = 1.0 / (1.0 + np.exp(np.clip((np.hypot(uu - nu, vv - nv) - nucleus_r) / 0.8, -50, 50)))
    contrast = (
        -0.25 * np.exp(-(d**2) / 2.0)  # dark edge
        + 0.22 * np.exp(-((d - 2.0) ** 2) / 3.0)  # bright halo outside
        - 0.06 * body
        + cell["texture"] * 0.5 * body * tex
        - 0.08 * nucleus
    )
    if cell.get("fibres") is not None:
        # fibres along the long axis vary across it (with v), fibres across it vary along it (u)
        across = np.deg2rad(cell["fibres"])
        coordinate = np.cos(across) * v + np.sin(across) * u
        strength, period = FIBRES
        contrast = contrast + strength * body * (1 - nucleus) * np.cos(2 * np.pi * coordinate / period + cell["fibre_phase"])
    return mask, contrast


def _background(shape, flask: Flask, origin, rng) -> np.ndarray:
    h, w = shape
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float64)
    gy, gx = flask.gradient
    plane = flask.background + gy * (yy + origin[0]) + gx * (xx + origin[1])
    substrate = ndimage.gaussian_filter(rng.standard_normal(shape), 3.0)
    substrate *= flask.substrate / (substrate.std() + 1e-9)
    return plane + substrate


def _to_uint8(img: np.ndarray, noise: float, rng) -> np.ndarray:
    img = img + rng.normal(0, noise, img.shape)
    return np.clip(np.rint(img * 255), 0, 255).astype(np.uint8)


def make_cells(
    n_per_class: int = 100,
    *,
    size: int = 64,
    lines: tuple[str, ...] = ("round", "spindle"),
    flasks_per_line: int = 4,
    densities: tuple[str, ...] = ("low", "high"),
    random_state: int = 0,
    return_masks: bool = False,
):
    """Single-cell brightfield crops of synthetic cell lines grown in separate flasks.

    Parameters
    ----------
    n_per_class : int, default 100
        Cells of each line.
    size : int, default 64
        Crop height and width in pixels (at least 16).
    lines : tuple of str, default ("round", "spindle")
        Which synthetic lines (the keys of ``LINES``); each is a class.
    flasks_per_line : int, default 4
        Flasks of each line; a line's cells are dealt over its flasks in turn.
    densities : tuple of str, default ("low", "high")
        Densities given to the flasks of a line in turn.
    random_state : int, default 0
        Seed; the same seed gives the same cells.
    return_masks : bool, default False
        Also return the true cell masks.

    Returns
    -------
    CellSet or tuple of (CellSet, numpy.ndarray)
        One channel ``bf``, ``uint8``, ``size x size``; the table has ``label`` (the line),
        ``flask``, ``density`` and ``area`` (true mask area in pixels), and ``flask`` is declared
        a group column. With ``return_masks``, also the ``(N, size, size)`` boolean masks.

    Raises
    ------
    StainfreeError
        For an unknown line, no cells or flasks, or ``size`` under 16.

    Examples
    --------
    >>> from stainfree.datasets.synthetic import make_cells
    >>> cs = make_cells(4, size=32, flasks_per_line=2, random_state=1)
    >>> cs.shape, cs.class_counts().to_dict(), cs.table["flask"].nunique()
    ((8, 1, 32, 32), {'round': 4, 'spindle': 4}, 4)
    """
    unknown = [ln for ln in lines if ln not in LINES]
    if unknown:
        raise StainfreeError(f"unknown synthetic line {unknown[0]!r} (choose from {', '.join(LINES)})")
    if n_per_class < 1 or flasks_per_line < 1 or size < 16:
        raise StainfreeError("need n_per_class >= 1, flasks_per_line >= 1 and size >= 16")
    rng = np.random.default_rng(random_state)
    flasks = _make_flasks(lines, flasks_per_line, densities, rng)
    images = np.empty((len(lines) * n_per_class, 1, size, size), np.uint8)
    masks = np.zeros((len(images), size, size), bool)
    rows = []
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float64)
    i = 0
    for line in lines:
        line_flasks = [f for f in flasks if f.line == line]
        for j in range(n_per_class):
            flask = line_flasks[j % len(line_flasks)]
            crng = np.random.default_rng([flask.seed, j])
            origin = crng.uniform(-256, 256, size=2)  # where in the flask the crop was taken
            img = _background((size, size), flask, origin, crng)
            cy, cx = (size - 1) / 2 + crng.normal(0, 1.0, size=2)
            if flask.density == "high" and crng.random() < 0.5:
                # a neighbour at the edge of the crop, as in dense cultures
                ang = crng.uniform(0, 2 * np.pi)
                ny, nx = cy + 0.62 * size * np.sin(ang), cx + 0.62 * size * np.cos(ang)
                _, contrast = _render_cell(_draw_cell(line, flask.density, crng), yy - ny, xx - nx)
                img += contrast
            cell = _draw_cell(line, flask.density, crng)
            mask, contrast = _render_cell(cell, yy - cy, xx - cx)
            img += contrast
            images[i, 0] = _to_uint8(img, flask.noise, crng)
            masks[i] = mask
            rows.append(
                {
                    "cell_id": f"{flask.name}/cell{j:05d}",
                    "label": line,
                    "flask": flask.name,
                    "density": flask.density,
                    "area": int(mask.sum()),
                }
            )
            i += 1
    table = pd.DataFrame(rows)
    prov = [
        provenance_entry(
            "synthetic.make_cells",
            n_per_class=n_per_class,
            size=size,
            lines=list(lines),
            flasks_per_line=flasks_per_line,
            seed=random_state,
        )
    ]
    cs = CellSet(images, table, channels=["bf"], groups=["flask"], provenance=prov)
    return (cs, masks) if return_masks else cs


@dataclasses.dataclass
class SyntheticField:
    """A whole synthetic field of view with its ground truth (made by :func:`make_field`).

    Attributes
    ----------
    brightfield : numpy.ndarray
        ``(H, W)`` ``uint8`` brightfield image.
    fluorescence : numpy.ndarray
        ``(H, W)`` ``uint16`` fluorescence that marks the marked line.
    labels : numpy.ndarray
        ``(H, W)`` ``int32`` instance mask, 0 for background.
    cells : pandas.DataFrame
        One row per cell: ``label_id``, ``centroid_x``, ``centroid_y``, ``label``, ``area``.
    """

    brightfield: np.ndarray
    fluorescence: np.ndarray
    labels: np.ndarray
    cells: pd.DataFrame


def make_field(
    shape: tuple[int, int] = (512, 512),
    *,
    n_cells: int = 40,
    lines: tuple[str, ...] = ("round", "spindle"),
    marked_line: str = "spindle",
    mix: float = 0.5,
    density: str = "low",
    random_state: int = 0,
) -> SyntheticField:
    """A field of mixed cells, its fluorescence ground truth and instance mask.

    Cells do not overlap (a minimum centre distance is kept); fewer than ``n_cells`` are placed
    when the field is too crowded. The ``marked_line`` expresses a fluorescent marker with
    log-normal brightness; the fluorescence has a dim, smooth uneven illumination (vignetting).

    Parameters
    ----------
    shape : tuple of int, default (512, 512)
        Field height and width in pixels.
    n_cells : int, default 40
        Cells to place, at most.
    lines : tuple of str, default ("round", "spindle")
        The lines to mix (see :func:`make_cells`).
    marked_line : str, default "spindle"
        The line that carries the fluorescent marker.
    mix : float, default 0.5
        Chance that a cell is of the second line.
    density : {"low", "high"}, default "low"
        Cell size and shape as in a flask of that density.
    random_state : int, default 0
        Seed; the same seed gives the same field.

    Returns
    -------
    SyntheticField
        The images, the instance mask and a table of the cells.

    Raises
    ------
    StainfreeError
        When ``marked_line`` is not one of ``lines``.

    Examples
    --------
    >>> from stainfree.datasets.synthetic import make_field
    >>> f = make_field((128, 128), n_cells=5, random_state=0)
    >>> f.brightfield.shape, f.fluorescence.dtype, int(f.labels.max()) == len(f.cells)
    ((128, 128), dtype('uint16'), True)
    """
    if marked_line not in lines:
        raise StainfreeError(f"marked line {marked_line!r} is not one of {lines}")
    rng = np.random.default_rng(random_state)
    flask = _make_flasks(("field",), 1, (density,), rng)[0]
    h, w = shape
    img = _background(shape, flask, (-h / 2, -w / 2), rng)
    labels = np.zeros(shape, np.int32)
    fluo = np.zeros(shape, np.float64)
    rows = []
    min_dist = 2.6 * max(LINES[ln]["radius"][0] for ln in lines) * DENSITY_SHRINK[density]
    centres: list[tuple[float, float]] = []
    margin = 12
    for _ in range(n_cells * 50):
        if len(centres) >= n_cells:
            break
        cy, cx = rng.uniform(margin, h - margin), rng.uniform(margin, w - margin)
        if any((cy - y) ** 2 + (cx - x) ** 2 < min_dist**2 for y, x in centres):
            continue
        line = lines[0] if rng.random() >= mix else lines[1] if len(lines) > 1 else lines[0]
        cell = _draw_cell(line, density, rng)
        r = int(np.ceil(cell["radius"] * np.sqrt(cell["elongation"]) * 1.6 + 6))
        y0, y1 = max(0, int(cy) - r), min(h, int(cy) + r + 1)
        x0, x1 = max(0, int(cx) - r), min(w, int(cx) + r + 1)
        yy, xx = np.mgrid[y0:y1, x0:x1].astype(np.float64)
        mask, contrast = _render_cell(cell, yy - cy, xx - cx)
        region = labels[y0:y1, x0:x1]
        if (region[mask] > 0).any():
            continue
        centres.append((cy, cx))
        label_id = len(centres)
        region[mask] = label_id
        img[y0:y1, x0:x1] += contrast
        expression = rng.lognormal(np.log(1500.0), 0.35) if line == marked_line else rng.lognormal(np.log(60.0), 0.5)
        fluo[y0:y1, x0:x1] += expression * ndimage.gaussian_filter(mask.astype(float), 1.0)
        ys, xs = np.nonzero(mask)
        rows.append(
            {
                "label_id": label_id,
                "centroid_x": float(xs.mean() + x0),
                "centroid_y": float(ys.mean() + y0),
                "label": line,
                "area": int(mask.sum()),
            }
        )
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float64)
    vignette = 1.0 - 0.35 * (((yy - h / 2) / h) ** 2 + ((xx - w / 2) / w) ** 2) * 4
    fluo = (fluo + 200.0) * vignette + rng.normal(0, 15, shape)
    return SyntheticField(
        brightfield=_to_uint8(img, flask.noise, rng),
        fluorescence=np.clip(np.rint(fluo), 0, 65535).astype(np.uint16),
        labels=labels,
        cells=pd.DataFrame(rows, columns=["label_id", "centroid_x", "centroid_y", "label", "area"]),
    )
