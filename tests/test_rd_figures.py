"""RD figures a paper can use (issue 30): one colour per model in every figure, λ labels that never overlap, and
the BD-rate method in the title."""

from __future__ import annotations

import itertools
import json

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pytest  # noqa: E402

from compresslab.rd.curves import MODEL_COLOURS, model_colour, rd_figure, summarize_runs  # noqa: E402


def _curve(bpps, psnrs, lambdas):
    return [{"bpp": b, "psnr-rgb": q, "lmbda": l} for b, q, l in zip(bpps, psnrs, lambdas)]


def _line_colours(fig) -> dict[str, str]:
    ax = fig.axes[0]
    return {line.get_label(): matplotlib.colors.to_hex(line.get_color()) for line in ax.get_lines()}


def test_a_model_has_the_same_colour_in_two_different_figures():
    lam = [0.0018, 0.0035, 0.0067, 0.013]
    one = rd_figure({"factorized": _curve([0.2, 0.3, 0.5, 0.8], [27, 28, 30, 32], lam),
                     "hyperprior": _curve([0.15, 0.25, 0.45, 0.7], [27, 28.5, 30.5, 32.5], lam)}, context=())
    # another figure: other curves first, hyperprior in a different position of matplotlib's colour cycle
    two = rd_figure({"adaptive": _curve([0.1, 0.2, 0.4, 0.6], [27, 28, 30, 32], lam),
                     "msp": _curve([0.12, 0.22, 0.42, 0.62], [27, 28.4, 30.4, 32.4], lam),
                     "hyperprior": _curve([0.15, 0.25, 0.45, 0.7], [27, 28.5, 30.5, 32.5], lam),
                     "my-new-model": _curve([0.11, 0.21, 0.41, 0.61], [27, 28.3, 30.3, 32.3], lam)},
                    context=("kodak/vtm",))
    c1, c2 = _line_colours(one), _line_colours(two)
    assert c1["hyperprior"] == c2["hyperprior"] == MODEL_COLOURS["hyperprior"]
    assert c1["factorized"] == MODEL_COLOURS["factorized"]
    # a model outside the palette still gets one fixed colour, and no two curves of a figure share one
    assert c2["my-new-model"] == model_colour("my-new-model") == model_colour("my-new-model")
    ours = [c2[k] for k in ("adaptive", "msp", "hyperprior", "my-new-model")]
    assert len(set(ours)) == len(ours)
    plt.close(one), plt.close(two)


def test_lambda_labels_never_overlap_in_a_crowded_plot():
    # eight curves crossing in the same small region, six lambdas each: every label wants the same few pixels
    lam = [0.0009, 0.0018, 0.0035, 0.0067, 0.013, 0.025]
    curves = {f"model{i}": _curve([0.20 + 0.01 * i + 0.05 * k for k in range(6)],
                                  [27 + 0.05 * i + 0.6 * k for k in range(6)], lam) for i in range(8)}
    curves["factorized"] = _curve([0.21 + 0.05 * k for k in range(6)], [27.02 + 0.6 * k for k in range(6)], lam)
    fig = rd_figure(curves, context=(), title="crowded")
    renderer = fig.canvas.get_renderer()
    ax = fig.axes[0]
    labels = [t for t in ax.texts if t.get_text().startswith("λ=")]
    assert labels, "some λ labels must still be drawn"
    boxes = [t.get_window_extent(renderer) for t in labels]
    for (i, a), (j, b) in itertools.combinations(enumerate(boxes), 2):
        assert not a.overlaps(b), f"{labels[i].get_text()} overlaps {labels[j].get_text()}"
    legend = ax.get_legend().get_window_extent(renderer)
    assert not any(b.overlaps(legend) for b in boxes)
    inside = ax.get_window_extent(renderer)
    assert all(inside.x0 <= b.x0 and b.x1 <= inside.x1 and inside.y0 <= b.y0 and b.y1 <= inside.y1 for b in boxes)
    plt.close(fig)


def test_rd_figure_title_names_the_bd_method(tmp_path, monkeypatch):
    import compresslab.rd.curves as curves_mod

    for i, (b, q, l) in enumerate(zip([0.2, 0.3, 0.5, 0.8], [27, 28, 30, 32], [0.0018, 0.0035, 0.0067, 0.013])):
        (tmp_path / "runs" / f"r{i}").mkdir(parents=True)
        (tmp_path / "runs" / f"r{i}" / "rd.json").write_text(json.dumps(
            {"name": "factorized", "results": {"bpp": [b], "psnr-rgb": [q]},
             "meta": {"model": {"name": "factorized"}, "lambda": l}}))
    titles, real = [], curves_mod.plot_curves

    def spy(curves, path, **kw):
        titles.append(kw.get("title", ""))
        return real(curves, path, **kw)

    monkeypatch.setattr(curves_mod, "plot_curves", spy)
    summarize_runs([str(tmp_path / "runs")], tmp_path / "out", method="pchip")
    assert "PCHIP interpolation" in titles[0] and "kodak/vtm" in titles[0]
