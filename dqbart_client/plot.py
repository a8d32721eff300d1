"""`dqbart jobs metrics --plot`: a job's loss curves and evaluation scores as one PNG.

matplotlib is optional (pip install 'dqbart[plot]'); it is imported only when a plot is drawn.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from dqbart_client.errors import DqbartError
from dqbart_client.types import MetricPoint


def _series(points: Sequence[MetricPoint], prefix: str) -> dict[str, tuple[list[int], list[float]]]:
    out: dict[str, tuple[list[int], list[float]]] = {}
    for p in points:
        if p.name.startswith(prefix):
            steps, values = out.setdefault(p.name.removeprefix(prefix), ([], []))
            steps.append(p.step)
            values.append(p.value)
    return out


def plot_metrics(points: Sequence[MetricPoint], out: Path, title: str) -> Path:
    """Loss components (loss/*) against steps on the left, eval/* scores on the right."""
    try:
        import matplotlib

        matplotlib.use("Agg")  # no display needed: the figure only goes to a file
        import matplotlib.pyplot as plt
        from matplotlib.ticker import MaxNLocator
    except ImportError as exc:
        raise DqbartError("--plot needs matplotlib: pip install 'dqbart[plot]'") from exc
    losses, evals = _series(points, "loss/"), _series(points, "eval/")
    if not losses and not evals:
        raise DqbartError("this job has no loss or evaluation values to plot yet")
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4.2), layout="constrained")
    for name, (steps, values) in sorted(losses.items()):
        left.plot(steps, values, label=name, linewidth=2 if name == "total" else 1.2)
    left.set(title="training loss by component", xlabel="step", ylabel="loss")
    for name, (steps, values) in sorted(evals.items()):
        right.plot(steps, values, marker="o", label=name)
    right.set(title="evaluation (validation split)", xlabel="step", ylabel="score")
    for axes in (left, right):
        axes.xaxis.set_major_locator(MaxNLocator(integer=True))  # steps are whole numbers
        axes.grid(alpha=0.3)
        if axes.get_legend_handles_labels()[0]:
            axes.legend(fontsize="small", frameon=False)
    fig.suptitle(title)
    fig.savefig(out, dpi=120)
    plt.close(fig)
    return out
