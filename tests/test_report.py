"""``compt report``: aggregation over seeds, tables, paper comparison, plots and report.html."""

from __future__ import annotations

import base64
import csv
import json
import shutil
import statistics
from pathlib import Path

import pytest

from compt.cli import main
from compt.report import NoResultsError, Stat, build_report, group_runs, scan
from compt.report.aggregate import AVG, label_keys
from compt.report.tables import results_tables
from tests.helpers import FAST, run_script

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
DEMO_TASKS = ["sst2", "rte", "mnli", "stsb"]
GLUE = ["mnli", "qnli", "rte", "cola", "sst2", "stsb", "mrpc", "qqp"]


# ---------------------------------------------------------------------------------------------- synthetic
def fake_results(method: str, k: int, seed: int, scores: dict[str, float], **extra) -> dict:
    """A minimal complete results.json: overrides as a sweep would record them."""
    overrides = [f"method={method}", f"k={k}", f"seed={seed}", "hydra.sweep.dir=/x"]
    overrides += [f"{key}={value}" for key, value in extra.get("overrides", {}).items()]
    n_sources = int(extra.get("overrides", {}).get("n_sources", 3))
    avg = statistics.fmean(v for v in scores.values() if v is not None)
    return {
        "status": "complete",
        "method": method,
        "k": k,
        "seed": seed,
        "n_sources": n_sources,
        "tasks": list(scores),
        "eval_mode": "rank",
        "metrics_compat": False,
        "overrides": overrides,
        "primary": scores,
        "avg": avg,
        "primary_paper": extra.get("paper", scores),
        "avg_paper": statistics.fmean(v for v in extra.get("paper", scores).values() if v is not None),
        "masks": extra.get("masks", {"total": {"primary": scores, "avg": avg}}),
        "router_weights": None if method == "pt" else {t: [1 / n_sources] * n_sources for t in scores},
        "curves": {"train_loss": [[1, 3.0 - seed * 0.1], [2, 2.0]], "val_avg": [[2, 50.0 + seed]]},
        "config": {
            "model": {"name": "tiny"},
            "eval": {"max_samples": 4},
            "router": {"learn": extra.get("learn", True)},
            "optim": {"lr": {"private": float(extra.get("overrides", {}).get("optim.lr.private", 0.02))}},
        },
    }


def write_run(root: Path, name: str, results: dict) -> Path:
    folder = root / name
    (folder / ".hydra").mkdir(parents=True)
    (folder / "results.json").write_text(json.dumps(results))
    return folder


def test_aggregation_groups_by_overrides_minus_seed_with_mean_std_n(tmp_path):
    values = {("ssum", 8): [70.0, 74.0, 75.0], ("ssum", 16): [80.0, 82.0], ("pt", 8): [60.0]}
    for (method, k), scores in values.items():
        for seed, score in enumerate(scores, 1):
            write_run(
                tmp_path, f"{method}-{k}-{seed}", fake_results(method, k, seed, {"rte": score, "cola": 50.0})
            )
    write_run(tmp_path, "null-metric", fake_results("pt", 8, 9, {"rte": None, "cola": 50.0}))
    groups = group_runs(scan([tmp_path], progress=False).runs)
    assert [(g.settings["method"], g.settings["k"]) for g in groups] == [
        ("pt", "8"),
        ("ssum", "8"),
        ("ssum", "16"),
    ]
    assert label_keys(groups) == ["method", "k"]
    ssum8 = groups[1].stat("rte")
    assert ssum8 == Stat(statistics.fmean([70, 74, 75]), statistics.stdev([70, 74, 75]), 3)
    assert groups[0].stat("rte").n == 1 and groups[0].stat("cola").n == 2  # null metrics are skipped
    table = results_tables(groups)[0]
    assert table.columns == ["rte", "cola", AVG]
    assert table.rows[2][1]["rte"] == Stat(81.0, statistics.stdev([80, 82]), 2)


def test_one_job_under_folder_names_of_several_loggers_is_one_run(tmp_path):
    """Folders named after the logger (before it left job names): the same job and seed, counted once."""
    for logger in ("csv", "tensorboard", "mlflow"):
        results = fake_results("ssum", 8, 1, {"rte": 70.0}, overrides={"logger": logger})
        write_run(tmp_path, f"logger={logger},k=8,method=ssum,seed=1", results)
    write_run(tmp_path, "k=8,method=ssum,seed=2", fake_results("ssum", 8, 2, {"rte": 74.0}))
    result = scan([tmp_path], progress=False)
    [group] = group_runs(result.runs)
    assert group.stat("rte") == Stat(72.0, statistics.stdev([70.0, 74.0]), 2)
    assert sorted(m.path.name for m in result.missing) == [
        "logger=mlflow,k=8,method=ssum,seed=1",
        "logger=tensorboard,k=8,method=ssum,seed=1",
    ]
    assert all(
        m.reason.startswith("left out: the same job (settings, seed, tasks) as ") for m in result.missing
    )


def test_other_varying_overrides_become_row_labels(tmp_path):
    for lr in ("0.01", "0.02"):
        for seed in (1, 2):
            extra = {"overrides": {"optim.lr.private": lr}}
            write_run(tmp_path, f"{lr}-{seed}", fake_results("ssum", 8, seed, {"rte": 60.0 + seed}, **extra))
    groups = group_runs(scan([tmp_path], progress=False).runs)
    assert label_keys(groups) == ["method", "k", "optim.lr.private"]
    assert [g.settings["optim.lr.private"] for g in groups] == ["0.01", "0.02"]
    assert all(g.stat("rte").n == 2 for g in groups)


def test_every_plot_kind_and_the_paper_comparison_on_synthetic_sweeps(tmp_path):
    sweep = tmp_path / "sweep"
    masks = {
        m: {"primary": dict.fromkeys(GLUE, 60.0), "avg": 60.0}
        for m in ("src0", "all_src", "private", "total")
    }
    for method in ("ssum", "msum"):
        for n in (1, 2, 3):
            for learn in ("true", "false"):
                for seed in (1, 2):
                    overrides = {"n_sources": n, "router.learn": learn}
                    scores = {t: 70.0 + n + seed + (learn == "true") for t in GLUE}
                    results = fake_results(
                        method, 8, seed, scores, overrides=overrides, masks=masks, learn=learn == "true"
                    )
                    write_run(sweep, f"{method}-{n}-{learn}-{seed}", results)
    for lr in ("0.01", "0.05"):
        write_run(
            sweep,
            f"lr-{lr}",
            fake_results("ssum", 8, 1, dict.fromkeys(GLUE, 75.0), overrides={"optim.lr.private": lr}),
        )
    report = build_report([sweep], tmp_path / "out", progress=False)
    made = {p.name: p for p in report.plots}
    assert all(p.skipped is None and p.files for p in made.values()), {n: p.skipped for n, p in made.items()}
    for path in (f for p in report.plots for f in p.files):
        assert path.read_bytes().startswith(PNG_SIGNATURE) and path.stat().st_size > 5000
    # ssum, k=8, n_sources=3, learned weights is Table 1's ssum/8 row (n_sources unspecified there)
    [comparison] = report.comparisons
    ssum = [(label, cells) for label, cells in comparison.rows if label["method"] == "ssum"]
    assert [label["source"] for label, _ in ssum[:3]] == ["ours", "paper", "Δ"]
    (_, ours), (_, paper), (_, delta) = ssum[:3]
    assert paper[AVG] == "74.38" and paper["rte"] == "60.9"
    assert delta[AVG] == pytest.approx(ours[AVG].mean - 74.38)
    assert (tmp_path / "out" / "paper_table1.tex").is_file()


def _drawn_figures(monkeypatch) -> list:
    """The figures the plot functions save, captured."""
    from compt.report import plots

    figures = []
    save = plots._save
    monkeypatch.setattr(
        plots, "_save", lambda figure, path, **kw: figures.append(figure) or save(figure, path, **kw)
    )
    return figures


def test_router_heatmaps_show_each_seed_on_one_colour_scale(tmp_path, monkeypatch):
    """Seed 1's src0 is not seed 2's src0: each seed is its own panel (a mean would blur both to ~1/S), and
    every panel (k=8, k=16, seeds) reads on one colour scale."""
    from compt.report.plots import plot_router_weights

    weights = {1: [0.8, 0.1, 0.1], 2: [0.1, 0.1, 0.8]}  # the same routing, the sources in another order
    for k in (8, 16):
        for seed, rte in weights.items():
            results = fake_results("ssum", k, seed, {"rte": 60.0, "sst2": 70.0})
            results["router_weights"] = {"rte": [w * k / 16 for w in rte], "sst2": [0.2, 0.5, 0.3]}
            write_run(tmp_path / "sweep", f"{k}-{seed}", results)
    groups = group_runs(scan([tmp_path / "sweep"], progress=False).runs)
    figures = _drawn_figures(monkeypatch)
    [path] = plot_router_weights(groups, tmp_path)
    assert path.name == "router_ssum.png" and len(figures) == 1
    images = [(ax.get_title(), image) for ax in figures[0].axes for image in ax.get_images()]
    assert [title for title, _ in images] == ["k=8, seed 1", "k=8, seed 2", "k=16, seed 1", "k=16, seed 2"]
    assert images[1][1].get_array()[0].tolist() == pytest.approx([0.05, 0.05, 0.4])  # seed 2 alone, k=8
    assert [image.get_clim() for _, image in images] == [pytest.approx((0.05, 0.8))] * 4


def test_the_validation_curve_says_when_it_is_the_test_set(tmp_path, monkeypatch):
    from compt.report.plots import plot_curves

    for seed in (1, 2):
        write_run(tmp_path / "paper", f"{seed}", fake_results("ssum", 8, seed, {"rte": 60.0}))
        dev = fake_results("ssum", 8, seed, {"rte": 60.0})
        dev["validation"] = {"from_train": 8}
        write_run(tmp_path / "dev", f"{seed}", dev)
    figures = _drawn_figures(monkeypatch)
    for sweep in ("paper", "dev"):
        plot_curves(group_runs(scan([tmp_path / sweep], progress=False).runs), tmp_path)
    labels = [(figure.axes[1].get_ylabel(), figure.axes[1].get_title()) for figure in figures]
    assert labels[0] == ("test Avg.", "the test set (no development split: data.validation_from_train=0)")
    assert labels[1] == ("validation Avg.", "a development split carved from the training split")


def test_the_paper_comparison_reads_the_paper_metric_and_says_so(tmp_path):
    """Runs whose primary metrics are Matthews/F1/Pearson are compared with the paper in its reading."""
    configured = {t: 40.0 for t in GLUE}  # e.g. cola matthews, mrpc/qqp f1, stsb pearson
    paper = {t: 70.0 + i for i, t in enumerate(GLUE)}  # accuracy, stsb spearman
    for seed in (1, 2):
        write_run(tmp_path, f"msum-{seed}", fake_results("msum", 16, seed, configured, paper=paper))
    report = build_report([tmp_path], tmp_path / "out", plots=False, progress=False)
    [results_table] = report.tables
    assert results_table.rows[0][1]["cola"].mean == 40.0  # its own table keeps the configured metric
    [comparison] = report.comparisons
    (_, ours), (_, published), (_, delta) = comparison.rows
    assert ours["cola"].mean == paper["cola"] and ours[AVG].mean == pytest.approx(
        statistics.fmean(paper.values())
    )
    assert published["cola"] == "67.9" and delta["cola"] == pytest.approx(paper["cola"] - 67.9)
    assert "in the paper's reading" in comparison.title and "Spearman" in " ".join(comparison.notes)
    assert "in the paper's reading: accuracy for every classification task" in report.markdown


def test_an_old_results_file_gets_the_paper_reading_from_its_metrics(tmp_path):
    results = fake_results("ssum", 16, 1, {"cola": 20.0, "stsb": 30.0})
    for key in ("primary_paper", "avg_paper"):
        del results[key]
    results["metrics"] = {
        "cola": {"matthews": 20.0, "accuracy": 69.0},
        "stsb": {"pearson": 30.0, "spearman": 31.0},
    }
    write_run(tmp_path, "old", results)
    [run] = scan([tmp_path], progress=False).runs
    assert run.results["primary_paper"] == {"cola": 69.0, "stsb": 31.0} and run.results["avg_paper"] == 50.0


# ---------------------------------------------------------------------------------------------- real sweep
@pytest.fixture(scope="module")
def sweep(tmp_path_factory) -> Path:
    """A real 8-job toy sweep: method pt/ssum × k 4/8 × seed 1/2, one step each."""
    folder = tmp_path_factory.mktemp("sweep") / "multirun"
    run_script(
        "train.py",
        "-m",
        *FAST,
        "method=pt,ssum",
        "k=4,8",
        "seed=1,2",
        "trainer.max_steps=1",
        "eval.max_samples=4",
        f"hydra.sweep.dir={folder}",
    )
    return folder


@pytest.fixture(scope="module")
def report(sweep, tmp_path_factory):
    return build_report([sweep], tmp_path_factory.mktemp("report"), progress=False)


@pytest.mark.slow
def test_table_cells_are_the_mean_and_std_of_the_runs(sweep, report):
    runs = [json.loads(p.read_text()) for p in sweep.rglob("results.json")]
    assert len(runs) == 8
    with (report.out / "results.csv").open() as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == 4
    for row in rows:
        members = [r for r in runs if r["method"] == row["method"] and str(r["k"]) == row["k"]]
        assert len(members) == 2
        for task in DEMO_TASKS:
            values = [r["primary"][task] for r in members]
            assert float(row[f"{task}_mean"]) == pytest.approx(statistics.fmean(values), abs=1e-9)
            assert float(row[f"{task}_std"]) == pytest.approx(statistics.stdev(values), abs=1e-9)
            assert row[f"{task}_n"] == "2"
        avgs = [r["avg"] for r in members]
        assert float(row["Avg._mean"]) == pytest.approx(statistics.fmean(avgs), abs=1e-9)
        assert float(row["Avg._std"]) == pytest.approx(statistics.stdev(avgs), abs=1e-9)
    assert [(r["method"], r["k"]) for r in rows] == [("pt", "4"), ("pt", "8"), ("ssum", "4"), ("ssum", "8")]
    assert "| method | k | sst2 | rte | mnli | stsb | Avg. |" in report.markdown
    assert "\\begin{tabular}" in (report.out / "results.tex").read_text()


@pytest.mark.slow
def test_plots_are_pngs_and_the_html_embeds_every_one(report):
    made = {p.name: p for p in report.plots}
    assert made["router_weights"].files and made["curves"].files  # what this sweep supports
    for name in ("n_sources", "router_learn", "masks", "lr_private"):
        assert made[name].skipped and not made[name].files
    html = report.html.read_text()
    images = [f for p in report.plots for f in p.files]
    for path in images:
        data = path.read_bytes()
        assert data.startswith(PNG_SIGNATURE) and len(data) > 5000
        assert path.relative_to(report.out).as_posix() in html
        assert base64.b64encode(data).decode() in html
    assert "Skipped plots" in html and "n_sources does not vary" in html
    assert "No published table matches" in report.markdown


@pytest.mark.slow
def test_cli_prints_the_table_and_reports_a_missing_job(sweep, tmp_path, capsys):
    partial = tmp_path / "partial"
    shutil.copytree(sweep, partial, ignore=shutil.ignore_patterns("checkpoints", "bank"))
    victim = next(p for p in sorted(partial.iterdir()) if "method=ssum" in p.name and "k=8" in p.name)
    (victim / "results.json").unlink()
    gone = next(p for p in sorted(partial.iterdir()) if "method=pt" in p.name and "seed=2" in p.name)
    shutil.rmtree(gone)  # a job the sweep never launched: only multirun.yaml knows it
    assert main(["report", str(partial), "--out", str(tmp_path / "out")]) == 0
    printed = capsys.readouterr().out
    assert "| method | k |" in printed and "Missing jobs (2)" in printed and victim.name in printed
    assert "never started (in multirun.yaml)" in printed and "method=pt,k=4,seed=2" in printed
    assert victim.name in (tmp_path / "out" / "report.html").read_text()
    with (tmp_path / "out" / "results.csv").open() as handle:
        ssum8 = next(r for r in csv.DictReader(handle) if r["method"] == "ssum" and r["k"] == "8")
    assert ssum8["Avg._n"] == "1" and ssum8["Avg._std"] == ""


def test_a_folder_without_results_is_an_error_naming_it(tmp_path, capsys):
    (tmp_path / "empty" / "job" / ".hydra").mkdir(parents=True)
    assert main(["report", str(tmp_path / "empty"), "--out", str(tmp_path / "out")]) == 2
    assert str(tmp_path / "empty") in capsys.readouterr().err
    with pytest.raises(NoResultsError, match="no such folder"):
        scan([tmp_path / "nowhere"])
