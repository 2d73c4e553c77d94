"""Figure layout: a title never runs off a narrow (one-column) figure."""

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from edgercnn.reporting.figures import wrap_title


def test_a_long_title_is_wrapped_inside_a_one_column_figure():
    text = ("runs/reproduce/pennfudan/sobel-p2/seed-0 vs baseline\n"
            "orange: best-IoU prediction per GT instance (enlarged); white: ground truth")
    fig = Figure(figsize=(2.4 + 0.6, 4), layout="constrained")  # comparison_figure's width for one crop column
    canvas = FigureCanvasAgg(fig)
    title = fig.suptitle(wrap_title(text, fig), fontsize=10)
    canvas.draw()
    box, page = title.get_window_extent(canvas.get_renderer()), fig.bbox
    assert box.x0 >= page.x0 and box.x1 <= page.x1, (box, page)
    assert "".join(title.get_text().split()) == "".join(text.split())  # nothing lost, only wrapped
