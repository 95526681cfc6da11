"""Reports of a merging evaluation: curve figures, CSV tables and a self-contained `report.html`.

Everything a browser needs is inside the HTML (figures as embedded PNG), so a run folder can be
copied anywhere and read offline.
"""
from __future__ import annotations

import base64
import csv
import html
import io
import os
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402

from .merge_evaluation import EvaluationResult  # noqa: E402
from ..merge.methods import TABLE, current_rows, names  # noqa: E402
from ..weightspace import ACTIVATIONS, forward  # noqa: E402
from ..weightspace.family import network_family  # noqa: E402

# projections of the method table (gmnae/merge/methods.py)
METHOD_COLORS = {m.name: m.color for m in TABLE}
METHOD_STYLES = {m.name: m.plot_style for m in TABLE if m.style}
AE_METHODS = names(needs_model=True)
PAIR_TYPES_LEGEND = (
    "<p class='legend'><b>Pair types.</b> <b>orbit-…</b>: network B is network A moved along its symmetry "
    "orbit (same function, other weights), plus small noise: <b>P</b> permutes hidden neurons, <b>D</b> flips "
    "their signs (odd activations: sine, tanh), <b>S</b> rescales them by positive factors (ReLU); <b>PD</b>, "
    "<b>PS</b> combine both. <b>independent</b>: two separately trained networks of the same task (INRs: the "
    "same image, other seeds). <b>Methods.</b> naive: straight line between the raw weights; wm / wm-signed / "
    "wm-scale: weight matching (permutations; with sign flips; after unit-norm rescaling) aligns B to A first; "
    "ae: decoding the line between the latents enc(A), enc(B); ae-endpoints: the line between the decoded networks "
    "dec(enc(A)), dec(enc(B)).</p>")


def curves_figure(result: EvaluationResult, pair_types: list[str] | None = None):
    """One panel per pair type: mean curve per method with its interquartile band."""
    pair_types = pair_types or list(result.curves)
    fig, axes = plt.subplots(1, len(pair_types), figsize=(3.6 * len(pair_types), 3.2), squeeze=False)
    lam = result.lambdas.numpy()
    for ax, pair_type in zip(axes[0], pair_types):
        metric = result.primary[pair_type]
        for method, metrics in result.curves[pair_type].items():
            c = metrics[metric].numpy()
            q25, q75 = np.percentile(c, [25, 75], axis=0)
            color = METHOD_COLORS.get(method)
            ax.plot(lam, c.mean(0), label=method, color=color, lw=1.6, **METHOD_STYLES.get(method, {}))
            ax.fill_between(lam, q25, q75, color=color, alpha=0.15, lw=0)
        ax.set_title(f"{pair_type} (n={len(next(iter(result.curves[pair_type].values()))[metric])})", fontsize=9)
        ax.set_xlabel("λ")
        ax.set_ylabel(metric)
        ax.grid(alpha=0.3)
    axes[0][0].legend(fontsize=7)
    fig.tight_layout()
    return fig


def inr_reconstruction_figure(model, arch, params: torch.Tensor, resolution: int = 28):
    """Originals (top) and their reconstructions dec(enc(θ)) (bottom)."""
    from ..tasks.grid import coordinate_grid

    device, dtype = model.device, next(model.parameters()).dtype
    p = params.to(device, dtype)
    codes = torch.full((len(p),), ACTIVATIONS.index(arch.activation), device=device)
    with torch.no_grad():
        rec = model.decode(model.encode(p, codes))
        grid = coordinate_grid(resolution).to(device, dtype)
        imgs = [forward(arch, x, grid)[..., 0].view(-1, resolution, resolution).float().cpu() for x in (p, rec)]
    n = len(p)
    fig, axes = plt.subplots(2, n, figsize=(1.2 * n, 2.6), squeeze=False)
    for row, (name, batch) in enumerate(zip(("original", "decoded"), imgs)):
        for i in range(n):
            axes[row][i].imshow(batch[i].clamp(0, 1).numpy(), cmap="gray", vmin=0, vmax=1)
            axes[row][i].axis("off")
        axes[row][0].set_title(name, fontsize=8, loc="left")
    fig.tight_layout()
    return fig


def _read_csv(path: Path) -> list[dict]:
    try:
        with open(path, newline="") as f:
            return list(csv.DictReader(f))
    except (OSError, csv.Error):
        return []


def _series(rows: list[dict], key: str) -> tuple[list[float], list[float]]:
    pts = [(float(r["step"]), float(r[key])) for r in rows if r.get(key) not in (None, "") and r.get("step")]
    return [p[0] for p in pts], [p[1] for p in pts]


def training_figure(metrics_csv: Path):
    """Loss, and PSNR or accuracy, over steps from the run's own `csv/metrics.csv` (None when it has none)."""
    rows = _read_csv(metrics_csv)
    quality = next((k for k in ("val/psnr", "val/accuracy") if any(r.get(k) for r in rows)), None)
    if not rows or not any(r.get("train/loss_step") or r.get("val/loss") for r in rows):
        return None
    panels = [("loss", ("train/loss_step", "val/loss"))] + ([(quality.split("/")[1], (quality.replace("val", "train")
                                                              + "_step", quality))] if quality else [])
    fig, axes = plt.subplots(1, len(panels), figsize=(4.6 * len(panels), 3.0), squeeze=False)
    for ax, (name, keys) in zip(axes[0], panels):
        for key in keys:
            x, y = _series(rows, key)
            if x:
                ax.plot(x, y, label=key, lw=1.2, marker="o" if key.startswith("val") else None, ms=3)
        ax.set_xlabel("step")
        ax.set_ylabel(name + (" (dB)" if name == "psnr" else ""))
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    fig.tight_layout()
    return fig


def barrier_history_figure(barriers_csv: Path):
    """Mean barrier of each method over the evaluations of a run, one panel per pair type."""
    rows = current_rows(_read_csv(barriers_csv))  # older evaluations' names read as today's
    pair_types = list(dict.fromkeys(r["kind"] for r in rows))
    if not pair_types:
        return None
    fig, axes = plt.subplots(1, len(pair_types), figsize=(3.2 * len(pair_types), 2.6), squeeze=False)
    for ax, pair_type in zip(axes[0], pair_types):
        for method in dict.fromkeys(r["method"] for r in rows if r["kind"] == pair_type):
            pts = [(int(r["step"]), float(r["barrier_mean"])) for r in rows if r["kind"] == pair_type and r["method"] == method]
            style = {"marker": "o", "ms": 3, **METHOD_STYLES.get(method, {})}
            ax.plot([p[0] for p in pts], [p[1] for p in pts], label=method, color=METHOD_COLORS.get(method), **style)
        ax.set_title(pair_type, fontsize=9)
        ax.set_xlabel("step")
        ax.grid(alpha=0.3)
    axes[0][0].set_ylabel("barrier (mean)")
    axes[0][0].legend(fontsize=7)
    fig.tight_layout()
    return fig


def decoded_worse_than_mean_network(reconstruction: dict[str, float]) -> bool:
    """True when the autoencoder's decoded networks are worse than decoding nothing (the zoo's mean network):
    its interpolation paths are then no evidence of anything and are not ranked."""
    for key, value in reconstruction.items():
        for ours, baseline in (("psnr_decoded_vs_original", "psnr_baseline_mean_network_vs_original"),
                               ("accuracy_decoded", "accuracy_baseline_mean_network")):
            if key.endswith(ours) and value < reconstruction.get(key[: -len(ours)] + baseline, float("-inf")):
                return True
    return False


def _recon_label(key: str) -> tuple[str, str]:
    unit = "dB" if "psnr" in key else "fraction correct" if "accuracy" in key else ""
    return key.replace("_", " "), unit


def figure_png(fig) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110)
    plt.close(fig)
    return buf.getvalue()


def _atomic_write(path: Path, data: bytes | str) -> None:
    tmp = Path(f"{path}.tmp{os.getpid()}")
    tmp.write_bytes(data) if isinstance(data, bytes) else tmp.write_text(data)
    os.replace(tmp, path)


def write_curves_csv(result: EvaluationResult, path: Path) -> None:
    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(["kind", "method", "metric", "lambda", "mean", "q25", "median", "q75"])
    for pair_type, methods in result.curves.items():
        for method, metrics in methods.items():
            for metric, c in metrics.items():
                c = c.numpy()
                q25, med, q75 = np.percentile(c, [25, 50, 75], axis=0)
                for j, lam in enumerate(result.lambdas.tolist()):
                    w.writerow([pair_type, method, metric, f"{lam:.6g}", f"{c[:, j].mean():.6g}", f"{q25[j]:.6g}",
                                f"{med[j]:.6g}", f"{q75[j]:.6g}"])
    _atomic_write(path, buf.getvalue())


def append_barriers_csv(result: EvaluationResult, path: Path, step: int, epoch: int) -> None:
    rows = result.summary()
    fields = ["step", "epoch", *rows[0].keys()]
    new = not path.exists()
    with open(path, "a", newline="") as f:
        w = csv.DictWriter(f, fieldnames=fields)
        if new:
            w.writeheader()
        for r in rows:
            w.writerow({"step": step, "epoch": epoch, **{k: (f"{v:.6g}" if isinstance(v, float) else v)
                                                          for k, v in r.items()}})


def _img(png: bytes, alt: str) -> str:
    return f'<img alt="{html.escape(alt)}" src="data:image/png;base64,{base64.b64encode(png).decode()}">'


def barrier_table_html(result: EvaluationResult) -> str:
    rows = result.summary()
    unranked = set(AE_METHODS) if decoded_worse_than_mean_network(result.reconstruction) else set()
    pair_types = list(dict.fromkeys(r["kind"] for r in rows))
    methods = list(dict.fromkeys(r["method"] for r in rows))
    by = {(r["kind"], r["method"]): r for r in rows}
    head = "".join(f"<th>{html.escape(k)}</th>" for k in pair_types)
    body = []
    for m in methods:
        cells = []
        for k in pair_types:
            r = by.get((k, m))
            if r is None:
                cells.append("<td>–</td>")
                continue
            best = min((by[(k, mm)]["barrier_mean"] for mm in methods if (k, mm) in by and mm not in unranked),
                       default=None)
            cls = ' class="best"' if r["barrier_mean"] == best and m not in unranked else ""
            extra = f"<br><small>max {r['max_mean']:.4f}</small>" if "max_mean" in r else ""
            if "mid_accuracy_mean" in r:  # the merged network's quality next to its barrier
                extra += f"<br><small>acc {r['end_accuracy_mean']:.3f} → mid {r['mid_accuracy_mean']:.3f}</small>"
            cells.append(f"<td{cls}>{r['barrier_mean']:.4f} ± {r['barrier_std']:.4f}{extra}</td>")
        body.append(f"<tr><th>{html.escape(m)}</th>{''.join(cells)}</tr>")
    note = (f"<p class='note'>{', '.join(AE_METHODS)}: not ranked (no green cell) -- the decoded networks are worse than the "
            "zoo's mean network (see reconstruction quality), so a low barrier says nothing yet.</p>" if unranked else "")
    return f"<table><tr><th>method</th>{head}</tr>{''.join(body)}</table>{note}"


FIDELITY_LABELS = {
    "agreement_own": "agreement with own teacher", "agreement_other": "agreement with another teacher",
    "kl_own": "KL(own teacher ‖ decoded)", "kl_other": "KL(another teacher ‖ decoded)",
    "accuracy_teacher": "teacher accuracy", "accuracy_decoded": "decoded accuracy",
    "agreement_similar": "agreement with a teacher of similar accuracy",
    "kl_similar": "KL(similar-accuracy teacher ‖ decoded)",
    "accuracy_corr": "corr(decoded acc, teacher acc)", "accuracy_tau": "Kendall τ(decoded acc, teacher acc)",
    "accuracy_abs_delta": "mean |decoded acc − teacher acc|",
    "similar_within": "fraction of similar teachers within ± 0.02",
    "psnr_own": "PSNR vs own rendering (dB)", "psnr_other": "PSNR vs another image's rendering (dB)",
}


def fidelity_table_html(result: EvaluationResult) -> str:
    """Does the decoder reproduce its own input? Own vs another network's original, beside the latent-blind
    decoder (one fixed latent for every network); empty when the result has no fidelity measures."""
    parts = []
    for prefix, m in result.fidelity().items():
        names = [k for k in m if not k.startswith("blind_")]
        head = "".join(f"<th>{html.escape(FIDELITY_LABELS.get(k, k))}</th>" for k in names)
        rows = "".join(
            f"<tr><th>{label}</th>" + "".join(f"<td>{m[who + k]:.4f}</td>" if who + k in m else "<td>–</td>"
                                              for k in names) + "</tr>"
            for who, label in (("", "autoencoder dec(enc(θ))"), ("blind_", "latent-blind dec(z̄)")))
        title = f"<h3>{html.escape(prefix.rstrip(':'))}</h3>" if prefix else ""
        parts.append(f"{title}<table><tr><th></th>{head}</tr>{rows}</table>")
    if not parts:
        return ""
    return ("<h2>Fidelity: does the decoded network reproduce its own input?</h2>"
            "<p class='note'>Each decoded network against its own original and against another network's (the "
            "independent pairs' networks; with <code>gmnae evaluate</code> also every network of the split, "
            "tables marked 'split'). The gap is the autoencoder's specificity: a decoder that ignores its input "
            "scores the same on both. CNNs: prediction agreement and KL on held-out task images, against the own "
            "teacher, the teacher of most similar accuracy and another teacher; decoded vs teacher accuracy (Kendall "
            "τ, mean |Δ|). INRs: PSNR between renderings. latent-blind: the decoder fed the mean latent of these "
            "networks.</p>" + "".join(parts))


def write_report(out_dir: Path, result: EvaluationResult, title: str, config_yaml: str = "",
                 recon_png: bytes | None = None, curves_png: bytes | None = None, step: int | None = None,
                 history_csv: Path | None = None, split: str | None = None, metrics_csv: Path | None = None,
                 extra_html: str = "") -> Path:
    """Write `report.html` (self-contained) into out_dir; returns its path. `extra_html`: further sections
    (e.g. the K-way merge table of `gmnae evaluate`), placed before the config."""
    out_dir.mkdir(parents=True, exist_ok=True)
    curves_png = curves_png or figure_png(curves_figure(result))
    recon_rows = "".join(f"<tr><th>{html.escape(label)}</th><td>{v:.4f}</td><td>{unit}</td></tr>"
                         for k, v in result.reconstruction.items() if "fidelity_" not in k  # own table above
                         for label, unit in [_recon_label(k)])
    where = f"the {html.escape(split)} split" if split else "the evaluated split"
    metric = ", ".join(sorted(set(result.primary.values())))
    parts = [
        "<!doctype html><html><head><meta charset='utf-8'>",
        f"<title>{html.escape(title)}</title><style>",
        "body{font-family:system-ui,sans-serif;margin:2em;max-width:1400px}table{border-collapse:collapse;margin:1em 0}",
        "td,th{border:1px solid #ccc;padding:4px 8px;text-align:right}th{background:#f4f4f4}td.best{background:#e3f5e3}",
        ".legend,.note{max-width:1000px;font-size:90%;color:#333}",
        "img{max-width:100%}pre{background:#f8f8f8;padding:1em;overflow:auto}</style></head><body>",
        f"<h1>{html.escape(title)}</h1>",
        f"<p>step {step if step is not None else '–'} · evaluation took {result.seconds:.1f}s · "
        f"{len(result.lambdas)} λ points · barrier = max<sub>λ</sub> L(θ(λ)) − ½(L(a)+L(b)) on {html.escape(metric)}; "
        "for the autoencoder paths, 'max' is the absolute maximum loss (their endpoints carry reconstruction error).</p>",
    ]
    training = training_figure(metrics_csv) if metrics_csv is not None else None
    if training is not None:
        parts += ["<h2>Training curves</h2>", _img(figure_png(training), "training curves")]
    parts += [
        fidelity_table_html(result),  # first: a barrier between decoded networks means little without it
        f"<h2>Loss barriers on {where} (mean ± std over pairs; green: lowest)</h2>", barrier_table_html(result),
        "<p class='note'>acc a → mid b: mean accuracy of the two endpoints, and of the midpoint λ = 0.5.</p>"
        if any("mid_accuracy_mean" in r for r in result.summary()) else "",
        PAIR_TYPES_LEGEND,
        "<h2>Interpolation curves (mean, interquartile band)</h2>", _img(curves_png, "interpolation curves"),
        f"<h2>Reconstruction quality on {where}</h2>",
        "<p class='note'>decoded = dec(enc(θ)); baselines decode nothing: the zoo's mean network, or (INRs) the "
        "mean image of the training split. Higher is better.</p>",
        f"<table><tr><th>measure</th><th>value</th><th>unit</th></tr>{recon_rows}</table>",
    ]
    if recon_png:
        parts += [_img(recon_png, "reconstructions")]
    history = barrier_history_figure(history_csv) if history_csv is not None and history_csv.exists() else None
    if history is not None:
        parts += ["<h2>Barrier history</h2>", _img(figure_png(history), "barrier history"),
                  f"<p class='note'>all numbers: {html.escape(history_csv.name)} beside this report's figures</p>"]
    if extra_html:
        parts.append(extra_html)
    if config_yaml:
        parts += ["<h2>Config</h2>", f"<pre>{html.escape(config_yaml)}</pre>"]
    parts.append("</body></html>")
    path = out_dir / "report.html"
    _atomic_write(path, "\n".join(parts))
    return path


def write_evaluation(out_dir: Path, result: EvaluationResult, title: str, model=None, config_yaml: str = "",
                     step: int = 0, epoch: int = 0, sample: tuple | None = None, split: str | None = None,
                     metrics_csv: Path | None = None, extra_html: str = "") -> dict[str, bytes]:
    """CSV + PNG + HTML for one evaluation (rank 0 only). Returns the PNGs for loggers."""
    out_dir.mkdir(parents=True, exist_ok=True)
    curves_png = figure_png(curves_figure(result))
    _atomic_write(out_dir / "curves.png", curves_png)
    write_curves_csv(result, out_dir / "curves.csv")
    append_barriers_csv(result, out_dir / "barriers.csv", step, epoch)
    pngs = {"curves": curves_png}
    if model is not None and sample is not None and not network_family(sample[0]).classifies:
        pngs["reconstructions"] = figure_png(inr_reconstruction_figure(model, sample[0], sample[1]))
        _atomic_write(out_dir / "reconstructions.png", pngs["reconstructions"])
    report_dir = out_dir.parent if out_dir.name == "eval" else out_dir
    write_report(report_dir, result, title, config_yaml, pngs.get("reconstructions"), curves_png, step,
                 out_dir / "barriers.csv", split, metrics_csv or report_dir / "csv" / "metrics.csv", extra_html)
    return pngs
