"""The report's figures (matplotlib, PNG), drawn from results rows.

Four views, each answering a question a user has when picking a method: how accurate is each
method on each task (and how much does that move between seeds); what does an answer cost in
time for that accuracy; how badly does each method suffer when the teacher's rationales are
wrong; and did training converge. Figures use matplotlib's object API (no pyplot), so drawing a
report never changes the caller's backend or global state.
"""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path
from statistics import mean, pstdev

DPI = 100


def group(rows: list[dict], keys: tuple[str, ...]) -> dict[tuple, list[dict]]:
    """Rows grouped by ``keys``, in first-seen order."""
    out: dict[tuple, list[dict]] = defaultdict(list)
    for r in rows:
        out[tuple(r[k] for k in keys)].append(r)
    return dict(out)


def spread(values: list[float]) -> tuple[float, float]:
    """Mean and (population) standard deviation over seeds; 0 spread for a single seed."""
    values = [v for v in values if v is not None]
    if not values:
        return float("nan"), 0.0
    return mean(values), (pstdev(values) if len(values) > 1 else 0.0)


def ignores_keep(row: dict) -> bool:
    """Methods without rationales (answer_only) train on the same data whatever the filter."""
    from ..methods import METHODS
    cls = METHODS.get(row.get("base_method") or row["method"])
    return cls is not None and not cls.uses_rationale


def setting_label(row: dict, rows: list[dict]) -> str:
    """What distinguishes this row's setting within its task: the hallucination rate and/or the
    rationale filter, named only when the grid varies them (and the filter only where it matters)."""
    same_task = [r for r in rows if r["task"] == row["task"]]
    parts = []
    if len({r["hallucination"] for r in same_task}) > 1:
        parts.append(f"h={row['hallucination']:g}")
    if len({r["keep"] for r in same_task if not ignores_keep(r)}) > 1 and not ignores_keep(row):
        parts.append(f"keep={row['keep']}")
    return ", ".join(parts)


def reference_rows(task_rows: list[dict]) -> list[dict]:
    """The runs of a task's reference setting (lowest hallucination rate, first rationale filter):
    the one the loss curves show."""
    h0 = min(r["hallucination"] for r in task_rows)
    keeps = [r["keep"] for r in task_rows if not ignores_keep(r)]
    return [r for r in task_rows if r["hallucination"] == h0 and (not keeps or ignores_keep(r) or r["keep"] == keeps[0])]


def method_colors(rows: list[dict]) -> dict[str, tuple]:
    from matplotlib import colormaps
    names = list(dict.fromkeys(r["method"] for r in rows))
    cmap = colormaps["tab10" if len(names) <= 10 else "tab20"]
    return {name: cmap(i % cmap.N) for i, name in enumerate(names)}


def _figure(n_panels: int, width: float = 4.2, height: float = 3.4, cols: int = 3):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    cols = min(cols, n_panels)
    nrows = -(-n_panels // cols)
    fig = Figure(figsize=(width * cols, height * nrows + 0.6), dpi=DPI, layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(nrows, cols, squeeze=False).ravel().tolist()
    for ax in axes[n_panels:]:
        ax.set_visible(False)
    return fig, axes[:n_panels]


def plain_log_ticks(axis) -> None:
    """Log-scale ticks as plain numbers (2, 5, 10, 0.3), minor ones labelled only when the axis
    spans less than a couple of decades, so every panel has readable labels."""
    from matplotlib.ticker import LogFormatter

    class PlainLogFormatter(LogFormatter):  # matplotlib writes values below 1 as 6e-01
        def _num_to_string(self, x: float, vmin: float, vmax: float) -> str:
            return f"{x:g}"

    axis.set_major_formatter(PlainLogFormatter())
    axis.set_minor_formatter(PlainLogFormatter(labelOnlyBase=False, minor_thresholds=(2, 0.5)))


def _save(fig, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    fig.savefig(tmp, format="png", bbox_inches="tight")
    tmp.replace(path)
    return path


def plot_accuracy(rows: list[dict], path: Path) -> Path:
    """Bars: accuracy per method in each task (one bar per setting), mean ± std over seeds, with
    chance (dashed) and the majority-answer baseline (dotted)."""
    colors = method_colors(rows)
    tasks = list(dict.fromkeys(r["task"] for r in rows))
    fig, axes = _figure(len(tasks), width=max(4.2, 0.5 * len({r["method"] for r in rows}) + 2.5))
    for ax, task in zip(axes, tasks):
        task_rows = [r for r in rows if r["task"] == task]
        methods = list(dict.fromkeys(r["method"] for r in task_rows))
        settings = list(dict.fromkeys(setting_label(r, rows) for r in task_rows))
        hatches = ["", "//", "..", "xx", "\\\\", "++"]
        labelled: set[str] = set()
        for mi, method in enumerate(methods):
            mine = [r for r in task_rows if r["method"] == method]
            own = list(dict.fromkeys(setting_label(r, rows) for r in mine))
            width = 0.8 / len(own)
            for si, setting in enumerate(own):
                m, sd = spread([r["accuracy"] for r in mine if setting_label(r, rows) == setting])
                k = settings.index(setting)
                ax.bar(mi - 0.4 + width * (si + 0.5), m, width, yerr=sd, color=colors[method], capsize=2,
                       hatch=hatches[k % len(hatches)], edgecolor="black" if k else "white", linewidth=0.5,
                       label=setting if setting and setting not in labelled and len(settings) > 1 else None)
                labelled.add(setting)
        chance = next((r["chance"] for r in task_rows if r.get("chance") is not None), None)
        if chance is not None:
            ax.axhline(chance, color="black", linestyle="--", linewidth=1, label="chance")
        majority = [r["majority"] for r in task_rows if r.get("majority") is not None]
        if majority:
            ax.axhline(mean(majority), color="grey", linestyle=":", linewidth=1.2, label="majority answer")
        ax.set_xticks(range(len(methods)), methods, rotation=30, ha="right", fontsize=8)
        ax.set_ylim(0, 1.05)
        ax.set_ylabel("accuracy")
        ax.set_title(task, fontsize=10)
        ax.legend(fontsize=7, loc="upper right")
        ax.grid(axis="y", alpha=0.3)
    fig.suptitle("Accuracy per method and task (mean ± std over seeds)")
    return _save(fig, path)


def plot_tradeoff(rows: list[dict], path: Path) -> Path:
    """Scatter: accuracy against milliseconds to the answer (log scale), one marker shape per task,
    one colour per method; each point is a (task, setting) mean over seeds."""
    colors = method_colors(rows)
    markers = "osD^v<>P*X"
    tasks = list(dict.fromkeys(r["task"] for r in rows))
    fig, [ax] = _figure(1, width=7.5, height=4.8)
    for (task, method, label), group_rows in group([{**r, "_s": setting_label(r, rows)} for r in rows],
                                                   ("task", "method", "_s")).items():
        ms, _ = spread([r["ms_to_answer"] for r in group_rows])
        acc, acc_sd = spread([r["accuracy"] for r in group_rows])
        ax.errorbar(ms, acc, yerr=acc_sd, fmt=markers[tasks.index(task) % len(markers)], color=colors[method],
                    markersize=7, capsize=2, alpha=0.85)
    from matplotlib.lines import Line2D
    handles = [Line2D([], [], color=c, marker="o", linestyle="", label=m) for m, c in colors.items()]
    handles += [Line2D([], [], color="black", marker=markers[i % len(markers)], linestyle="", label=t)
                for i, t in enumerate(tasks)]
    ax.legend(handles=handles, fontsize=7, loc="center left", bbox_to_anchor=(1.01, 0.5))
    ax.set_xscale("log")
    plain_log_ticks(ax.xaxis)
    ax.set_xlabel("milliseconds to the answer (per question, log scale)")
    ax.set_ylabel("accuracy")
    ax.set_ylim(0, 1.05)
    ax.grid(alpha=0.3, which="both")
    ax.set_title("Accuracy against time to answer: up and to the left is better")
    return _save(fig, path)


def plot_hallucination(rows: list[dict], path: Path) -> Path | None:
    """Lines: accuracy against the fraction of hallucinated training rationales, one line per
    method, one panel per task that was run at more than one rate. None when no task was."""
    colors = method_colors(rows)
    tasks = [t for t in dict.fromkeys(r["task"] for r in rows)
             if len({r["hallucination"] for r in rows if r["task"] == t}) > 1]
    if not tasks:
        return None
    fig, axes = _figure(len(tasks))
    for ax, task in zip(axes, tasks):
        task_rows = [r for r in rows if r["task"] == task]
        for method in dict.fromkeys(r["method"] for r in task_rows):
            points = group([r for r in task_rows if r["method"] == method], ("hallucination",))
            xs = sorted(h for (h,) in points)
            stats = [spread([r["accuracy"] for r in points[(h,)]]) for h in xs]
            ax.errorbar(xs, [m for m, _ in stats], yerr=[s for _, s in stats], color=colors[method], marker="o",
                        capsize=2, label=method)
        chance = next((r["chance"] for r in task_rows if r.get("chance") is not None), None)
        if chance is not None:
            ax.axhline(chance, color="black", linestyle="--", linewidth=1, label="chance")
        ax.set_xlabel("hallucinated training rationales")
        ax.set_ylabel("accuracy (clean test set)")
        ax.set_ylim(0, 1.05)
        ax.set_title(task, fontsize=10)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    fig.suptitle("Robustness to wrong teacher rationales (mean ± std over seeds)")
    return _save(fig, path)


def read_curve(run_dir: Path) -> list[dict]:
    from ..io import read_jsonl
    from ..runfolder import METRICS_LOG
    path = Path(run_dir) / METRICS_LOG
    if not path.exists():
        return []
    return [row for _, row in read_jsonl(path)]


def plot_losses(rows: list[dict], root: Path, path: Path) -> Path | None:
    """Training curves per task: total loss (top) and answer cross-entropy (bottom, the one term
    every method shares, so comparable across methods), mean over seeds of each method's runs in
    the task's reference setting. None when no run left a metrics.jsonl."""
    colors = method_colors(rows)
    tasks = list(dict.fromkeys(r["task"] for r in rows))
    curves: dict[tuple[str, str], list[list[dict]]] = defaultdict(list)
    for task in tasks:
        for r in reference_rows([r for r in rows if r["task"] == task]):
            curve = read_curve(root / r["run_dir"])
            if curve:
                curves[(task, r["method"])].append(curve)
    if not curves:
        return None
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    fig = Figure(figsize=(4.2 * len(tasks), 6.4), dpi=DPI, layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(2, len(tasks), squeeze=False)
    for col, task in enumerate(tasks):
        for row, key in enumerate(("loss", "ce_answer")):
            ax = axes[row][col]
            for (t, method), runs in curves.items():
                if t != task:
                    continue
                by_step: dict[int, list[float]] = defaultdict(list)
                for curve in runs:
                    for point in curve:
                        if point.get(key) is not None:
                            by_step[point["step"]].append(point[key])
                steps = sorted(by_step)
                if steps:
                    ax.plot(steps, [mean(by_step[s]) for s in steps], color=colors[method], label=method)
            ax.set_yscale("log")
            plain_log_ticks(ax.yaxis)
            ax.set_xlabel("step")
            ax.set_ylabel("training loss" if key == "loss" else "answer cross-entropy")
            ax.grid(alpha=0.3, which="both")
            if row == 0:
                ref = reference_rows([r for r in rows if r["task"] == task])
                label = ", ".join(dict.fromkeys(x for x in (setting_label(r, rows) for r in ref) if x))
                ax.set_title(f"{task} ({label})" if label else task, fontsize=10)
                ax.legend(fontsize=7)
    fig.suptitle("Training curves (mean over seeds)")
    return _save(fig, path)


def plot_time_curve(rows: list[dict], path: Path) -> Path | None:
    """Per task and setting: accuracy against milliseconds to the answer for every method, with
    seed spread on both axes; rows of one base method (a think-first method at several thinking
    budgets) are joined into a curve in order of time, so it shows where thinking longer stops
    paying. Drawn for grids with long-trace tasks or budget rows; None otherwise."""
    families = group(rows, ("task", "base_method"))
    budgets = any(len({r["method"] for r in fam}) > 1 for fam in families.values())
    if not budgets and not any("-long" in r["task"] for r in rows):
        return None
    colors = method_colors(rows)
    panels = list(dict.fromkeys((r["task"], setting_label(r, rows)) for r in rows))
    fig, axes = _figure(len(panels), width=4.6, height=3.6)
    for ax, (task, setting) in zip(axes, panels):
        mine = [r for r in rows if r["task"] == task and setting_label(r, rows) == setting]
        for fam in group(mine, ("base_method",)).values():
            points = []
            for (name,), runs in group(fam, ("method",)).items():
                (ms, ms_sd), (acc, acc_sd) = spread([r["ms_to_answer"] for r in runs]), spread([r["accuracy"] for r in runs])
                ax.errorbar(ms, acc, xerr=ms_sd, yerr=acc_sd, fmt="o", color=colors[name], markersize=6, capsize=2,
                            label=name)
                points.append((ms, acc))
            if len(points) > 1:
                xs, ys = zip(*sorted(points))
                ax.plot(xs, ys, color="grey", linewidth=1, alpha=0.7, zorder=0)
        majority = [r["majority"] for r in mine if r.get("majority") is not None]
        if majority:
            ax.axhline(mean(majority), color="grey", linestyle=":", linewidth=1.2, label="majority answer")
        ax.set_xscale("log")
        plain_log_ticks(ax.xaxis)
        ax.set_ylim(0, 1.05)
        ax.set_xlabel("ms to the answer (log)")
        ax.set_ylabel("accuracy")
        ax.set_title(f"{task} {setting}".strip(), fontsize=9)
        ax.grid(alpha=0.3, which="both")
        ax.legend(fontsize=6, loc="best")
    fig.suptitle("Accuracy against time to answer: methods and thinking budgets (mean ± std over seeds)")
    return _save(fig, path)


def draw_all(rows: list[dict], root: Path, out_dir: Path) -> list[tuple[str, Path]]:
    """Every figure that applies to these rows: (title, PNG path) in report order."""
    figures = [("Accuracy per method and task", plot_accuracy(rows, out_dir / "accuracy.png")),
               ("Accuracy against time to answer", plot_tradeoff(rows, out_dir / "tradeoff.png")),
               ("Accuracy against time to answer, per setting", plot_time_curve(rows, out_dir / "time_curve.png")),
               ("Accuracy against hallucinated rationales", plot_hallucination(rows, out_dir / "hallucination.png")),
               ("Training curves", plot_losses(rows, root, out_dir / "losses.png"))]
    return [(title, p) for title, p in figures if p is not None]
