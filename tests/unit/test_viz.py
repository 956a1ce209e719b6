"""Pictures: attention overlays, the explanation grid, the label-graph heat-map, AP bars."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace

import matplotlib
import numpy as np
import pytest
from PIL import Image
from scipy import ndimage

from ssgrl.viz.attention import overlay_attention, render_explanation, upsample_attention
from ssgrl.viz.graph import plot_graph
from ssgrl.viz.plots import plot_per_class_ap

GREEN = (0, 200, 0)


def _solid(width: int, height: int, colour: tuple[int, int, int] = GREEN) -> Image.Image:
    return Image.new("RGB", (width, height), colour)


def _texture(width: int = 64, height: int = 64, seed: int = 0) -> Image.Image:
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(40, 216, size=(height, width, 3), dtype=np.uint8))


def _corner_map(h: int = 7, w: int = 7) -> np.ndarray:
    """A distribution with all mass in the top-left 2×2 cells."""
    att = np.zeros((h, w))
    att[:2, :2] = 0.25
    return att


def _pixels(image: Image.Image) -> np.ndarray:
    return np.asarray(image.convert("RGB"), dtype=np.int16)  # (H, W, 3)


def _green_boxes(picture: Image.Image, min_area: int = 500) -> list[tuple[slice, slice]]:
    """Bounding boxes (row slice, column slice) of large pure-green regions, row-major order."""
    px = _pixels(picture)
    mask = np.abs(px - np.array(GREEN)).max(axis=-1) <= 2
    labels, _ = ndimage.label(mask)
    boxes = [
        box
        for i, box in enumerate(ndimage.find_objects(labels), start=1)
        if box is not None and (labels[box] == i).sum() >= min_area
    ]
    return sorted(boxes, key=lambda b: (b[0].start, b[1].start))


# --- upsample_attention / overlay_attention --------------------------------------------------


def test_upsample_is_normalised_smooth_and_scale_invariant() -> None:
    att = _corner_map(8, 8)
    heat = upsample_attention(att, (80, 40))  # (width, height); a cell is 10×5 px
    assert heat.shape == (40, 80) and heat.dtype == np.float32
    assert heat.min() >= 0.0 and heat.max() <= 1.0 and heat.max() > 0.95
    peak_row, peak_col = np.unravel_index(int(heat.argmax()), heat.shape)
    assert peak_row < 20 and peak_col < 40  # peak in the attended (top-left) quadrant
    assert heat[-10:, -20:].max() == 0.0  # cells 6-7, beyond the bicubic support: nothing
    assert len(np.unique(heat)) > 20  # smooth, not a blocky nearest-neighbour upsampling
    np.testing.assert_allclose(upsample_attention(7.5 * att, (80, 40)), heat, atol=1e-6)
    assert not upsample_attention(np.zeros((3, 3)), (8, 8)).any()


def test_overlay_changes_pixels_only_where_attention_is() -> None:
    image = _texture(70, 70)
    out = overlay_attention(image, _corner_map(7, 7), alpha=0.5)
    assert out.size == image.size and out.mode == "RGB"
    diff = np.abs(_pixels(out) - _pixels(image)).sum(axis=-1)  # (H, W)
    top_left, bottom_right = diff[:20, :20], diff[35:, 35:]
    assert top_left.mean() > 40.0
    assert bottom_right.max() <= 1  # zero attention leaves the photo untouched
    assert diff[:35, :35].sum() > 0.95 * diff.sum()  # the change is concentrated where attended


def test_overlay_of_uniform_attention_matches_colormap_blend() -> None:
    image = _texture(32, 24)
    out = overlay_attention(image, np.full((5, 5), 1 / 25), alpha=0.4, cmap="inferno")
    peak_colour = np.array(matplotlib.colormaps["inferno"](1.0)[:3]) * 255.0
    expected = np.round(0.6 * _pixels(image) + 0.4 * peak_colour)
    np.testing.assert_allclose(_pixels(out), expected, atol=1)


def test_overlay_zero_alpha_or_zero_map_is_identity() -> None:
    image = _texture(40, 30)
    assert np.array_equal(
        _pixels(overlay_attention(image, _corner_map(), alpha=0.0)), _pixels(image)
    )
    assert np.array_equal(_pixels(overlay_attention(image, np.zeros((7, 7)))), _pixels(image))


@pytest.mark.parametrize(
    ("attention", "message"),
    [
        (np.full((7, 7), np.nan), "non-finite"),
        (np.array([[0.5, -0.1], [0.3, 0.3]]), "negative"),
        (np.zeros((2, 3, 3)), "2-D"),
        (np.zeros((0, 3)), "2-D"),
    ],
)
def test_overlay_rejects_bad_maps(attention: np.ndarray, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        overlay_attention(_texture(), attention)


def test_overlay_rejects_bad_arguments() -> None:
    with pytest.raises(ValueError, match="alpha"):
        overlay_attention(_texture(), _corner_map(), alpha=1.5)
    with pytest.raises(ValueError, match="colour map"):
        overlay_attention(_texture(), _corner_map(), cmap="no-such-map")
    with pytest.raises(TypeError, match="PIL"):
        overlay_attention(np.zeros((8, 8, 3)), _corner_map())  # type: ignore[arg-type]


# --- render_explanation ----------------------------------------------------------------------


@pytest.mark.parametrize(("k", "rows", "cols"), [(0, 1, 1), (1, 1, 2), (5, 2, 3), (20, 7, 3)])
def test_render_grid_has_one_tile_per_class_plus_input(k: int, rows: int, cols: int) -> None:
    image = _solid(120, 80)  # tiles 96×64 px
    attention = np.zeros((k, 5, 5))  # zero maps keep every tile pure green
    names = [f"class{i}" for i in range(k)]
    picture = render_explanation(
        image, attention, names, [0.5] * k, max_columns=3, tile_size=96, title="t"
    )
    boxes = _green_boxes(picture)
    assert len(boxes) == 1 + k
    for rs, cs in boxes:  # consistent tile size, aspect ratio kept
        assert abs((rs.stop - rs.start) - 64) <= 1 and abs((cs.stop - cs.start) - 96) <= 1
    assert len({b[0].start for b in boxes}) == rows
    assert len({b[1].start for b in boxes}) == cols
    assert picture.width < (cols + 1) * 96  # tight spacing: < one tile of padding in all


def test_render_size_grows_with_k_and_title() -> None:
    image = _texture(64, 64)
    sizes = []
    for k in range(7):
        maps = np.stack([_corner_map()] * k) if k else np.zeros((0, 7, 7))
        sizes.append(render_explanation(image, maps, ["c"] * k, [0.9] * k, tile_size=64).size)
    widths, heights = zip(*sizes, strict=True)
    assert list(widths) == sorted(widths) and widths[3] == widths[6]  # 4 columns at most
    assert list(heights) == sorted(heights) and heights[4] > heights[3]  # 5 tiles: second row
    untitled = render_explanation(image, np.zeros((0, 7, 7)), [], [], tile_size=64)
    titled = render_explanation(image, np.zeros((0, 7, 7)), [], [], title="x", tile_size=64)
    assert titled.width == untitled.width and titled.height > untitled.height


def test_render_overlay_concentrates_in_the_attended_corner() -> None:
    image = _solid(112, 112)
    plain = render_explanation(image, np.zeros((1, 7, 7)), ["dog"], [0.93], tile_size=112)
    looked = render_explanation(
        image, _corner_map()[None], ["dog"], [0.93], tile_size=112, mark_peak=False
    )
    assert plain.size == looked.size
    diff = np.abs(_pixels(plain) - _pixels(looked)).sum(axis=-1)  # (H, W)
    _, (rows, cols) = _green_boxes(plain)  # the class tile, right of the input tile
    tile = diff[rows, cols]
    assert tile[:32, :32].mean() > 60.0  # top-left cells carry all the attention
    assert tile[56:, 56:].max() <= 3
    assert diff.sum() == tile.sum()  # nothing else in the picture changed


def test_render_marks_the_attention_peak() -> None:
    image = _solid(112, 112)
    att = np.zeros((1, 7, 7))
    att[0, 5, 1] = 1.0  # peak in row 5, column 1 of the grid
    marked = render_explanation(image, att, ["cat"], [0.5], tile_size=112)
    unmarked = render_explanation(image, att, ["cat"], [0.5], tile_size=112, mark_peak=False)
    diff = np.abs(_pixels(marked) - _pixels(unmarked)).sum(axis=-1)
    _, (rows, cols) = _green_boxes(unmarked)
    ys, xs = np.nonzero(diff[rows, cols])
    assert len(ys) > 0 and diff.sum() == diff[rows, cols].sum()
    assert abs(ys.mean() - 5.5 * 16) < 4 and abs(xs.mean() - 1.5 * 16) < 4  # cell centre


def test_render_writes_png_and_returns_the_same_picture(tmp_path: Path) -> None:
    out = tmp_path / "nested" / "dir" / "explain.png"
    picture = render_explanation(
        _texture(90, 60),
        np.stack([_corner_map(), np.full((7, 7), 1 / 49)]),
        ["person", "a rather long class name that needs shortening"],
        [0.97, 0.51],
        out_path=out,
        title="sample.jpg",
    )
    assert out.is_file()
    with Image.open(out) as saved:
        assert saved.format == "PNG"
        assert np.array_equal(_pixels(saved), _pixels(picture))


def test_render_without_classes_shows_the_image_and_a_note(tmp_path: Path) -> None:
    out = tmp_path / "k0.png"
    picture = render_explanation(_solid(100, 100), np.zeros((0, 7, 7)), [], [], out_path=out)
    assert out.is_file()
    boxes = _green_boxes(picture)
    assert len(boxes) == 1
    below = _pixels(picture)[boxes[0][0].stop + 2 :]  # the note sits under the image
    assert (below.sum(axis=-1) < 400).sum() > 50  # dark text pixels


def test_render_on_a_real_photo() -> None:
    skimage_data = pytest.importorskip("skimage.data")
    photo = Image.fromarray(skimage_data.astronaut())  # 512×512, face near the top centre
    yy, xx = np.mgrid[0:7, 0:7]
    face = np.exp(-((yy - 1.2) ** 2 + (xx - 3.3) ** 2) / 0.8)
    body = np.exp(-((yy - 5.0) ** 2 + (xx - 3.0) ** 2) / 4.0)
    maps = np.stack([face / face.sum(), body / body.sum()])
    picture = render_explanation(photo, maps, ["person", "spacesuit"], [0.97, 0.81])
    assert picture.width >= 3 * 256 and picture.height >= 256
    tile = overlay_attention(photo, maps[0])
    diff = np.abs(_pixels(tile) - _pixels(photo)).sum(axis=-1)
    assert diff[:220, 150:350].mean() > 5 * diff[300:, :].mean()  # face, not the suit


@pytest.mark.parametrize(
    ("attention", "names", "probs", "message"),
    [
        (np.zeros((2, 7, 7)), ["a"], [0.5, 0.5], "K=2 maps but got 1 class names"),
        (np.zeros((2, 7, 7)), ["a", "b"], [0.5], "1 probabilities"),
        (np.zeros((7, 7)), ["a"], [0.5], r"\(K, h, w\)"),
        (np.zeros((1, 7, 7)), ["a"], [1.5], "probability of class 'a'"),
        (np.zeros((1, 7, 7)), ["a"], [float("nan")], "probability"),
    ],
)
def test_render_rejects_inconsistent_inputs(
    attention: np.ndarray, names: list[str], probs: list[float], message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        render_explanation(_texture(), attention, names, probs)


def test_render_names_the_class_with_a_non_finite_map() -> None:
    maps = np.stack([_corner_map(), _corner_map()])
    maps[1, 3, 4] = np.inf
    with pytest.raises(ValueError, match=r"class 'dog' \(index 1\).*row 3, column 4"):
        render_explanation(_texture(), maps, ["cat", "dog"], [0.9, 0.8])
    with pytest.raises(ValueError, match="max_columns"):
        render_explanation(_texture(), maps[:1], ["cat"], [0.9], max_columns=0)


# --- plot_graph ------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Graph:
    matrix: np.ndarray
    classes: list[str]
    split: str
    num_images: int


def _cooccurrence(num_classes: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    labels = (rng.uniform(size=(200, num_classes)) < 0.3).astype(np.float64)  # (N, C)
    counts = labels.T @ labels  # (C, C)
    return counts / np.maximum(np.diag(counts)[:, None], 1.0)  # P(j | i), diagonal 1


def _has_colour(px: np.ndarray, rgb: tuple[int, ...], tol: int = 6) -> int:
    return int((np.abs(px - np.array(rgb)).max(axis=-1) <= tol).sum())


def test_plot_graph_small_draws_the_matrix_in_colour(tmp_path: Path) -> None:
    matrix = np.eye(5)
    matrix[0, 1] = 0.5
    out = tmp_path / "plots" / "graph.png"
    plot_graph(_Graph(matrix, ["a", "b", "c", "d", "e"], "train", 123), out)
    with Image.open(out) as im:
        assert im.format == "PNG"
        px = _pixels(im)
    viridis = matplotlib.colormaps["viridis"]
    ones = tuple(round(255 * v) for v in viridis(1.0)[:3])
    zeros = tuple(round(255 * v) for v in viridis(0.0)[:3])
    assert _has_colour(px, ones) > 5 * 1000  # five diagonal cells (plus the colour bar)
    assert _has_colour(px, zeros) > 19 * 1000  # nineteen zero cells


def test_plot_graph_grows_with_the_number_of_classes(tmp_path: Path) -> None:
    sizes = {}
    for num in (5, 80):
        graph = SimpleNamespace(
            matrix=_cooccurrence(num),
            classes=[f"category {i}" for i in range(num)],
            split="train2014",
            num_images=200,
        )
        out = tmp_path / f"graph{num}.png"
        plot_graph(graph, out)
        with Image.open(out) as im:
            sizes[num] = im.size
    assert sizes[80][0] > 2 * sizes[5][0] and sizes[80][1] > 2 * sizes[5][1]


def test_plot_graph_rejects_inconsistent_graphs(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"C = 3 classes, got shape \(2, 2\)"):
        plot_graph(_Graph(np.eye(2), ["a", "b", "c"], "train", 1), tmp_path / "g.png")
    bad = np.eye(2)
    bad[1, 0] = np.nan
    with pytest.raises(ValueError, match=r"row 1 \('b'\), column 0 \('a'\)"):
        plot_graph(_Graph(bad, ["a", "b"], "train", 1), tmp_path / "g.png")
    assert not (tmp_path / "g.png").exists()


# --- plot_per_class_ap -----------------------------------------------------------------------


def test_plot_per_class_ap_handles_undefined_classes(tmp_path: Path) -> None:
    out = tmp_path / "report" / "ap.png"
    plot_per_class_ap(["cat", "dog", "bus"], [0.9, None, 0.5], [0.8, 0.7, float("nan")], out)
    with Image.open(out) as im:
        assert im.format == "PNG" and im.height > 200
        px = _pixels(im)
    assert _has_colour(px, (31, 119, 180), tol=2) > 500  # blue bars of model a
    assert _has_colour(px, (255, 127, 14), tol=2) > 500  # orange bars of model b


def test_plot_per_class_ap_rejects_bad_values(tmp_path: Path) -> None:
    out = tmp_path / "ap.png"
    with pytest.raises(ValueError, match="ap_b has 2 values but there are 3"):
        plot_per_class_ap(["a", "b", "c"], [0.1, 0.2, 0.3], [0.1, 0.2], out)
    with pytest.raises(ValueError, match=r"ap_a\[1\] = 93.4 .*percentages"):
        plot_per_class_ap(["a", "b"], [0.5, 93.4], [0.1, 0.2], out)
    with pytest.raises(ValueError, match="labels must be two strings"):
        plot_per_class_ap(["a"], [0.5], [0.4], out, labels=("only one",))  # type: ignore[arg-type]
