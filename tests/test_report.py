"""``compt report``: aggregation over seeds, tables, paper comparison, plots and report.html."""

from __future__ import annotations

import base64
import csv
import json
import shutil
import statistics
from pathlib import Path

import pytest
import yaml
from omegaconf import OmegaConf

from compt.cli import main
from compt.report import NoResultsError, Stat, build_report, group_runs, scan
from compt.report.aggregate import AVG, label_keys
from compt.report.tables import results_tables
from compt.runs import RunDir
from compt.sweeps.records import keep_launch_record
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
        "router_logits": {t: [0.5] * n_sources for t in scores} if extra.get("learn", True) else None,
        "cross_prompts": extra.get("cross"),
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
    found = scan([tmp_path], progress=False)
    [left_out] = found.missing  # a null metric (NaN in JSON) is a failed evaluation: named, never averaged
    assert left_out.path.name == "null-metric" and "non-finite metric(s) primary.rte=null" in left_out.reason
    groups = group_runs(found.runs)
    assert [(g.settings["method"], g.settings["k"]) for g in groups] == [
        ("pt", "8"),
        ("ssum", "8"),
        ("ssum", "16"),
    ]
    assert label_keys(groups) == ["method", "k"]
    ssum8 = groups[1].stat("rte")
    assert ssum8 == Stat(statistics.fmean([70, 74, 75]), statistics.stdev([70, 74, 75]), 3)
    assert groups[0].stat("rte").n == groups[0].stat("cola").n == 1
    table = results_tables(groups)[0]
    assert table.columns == ["rte", "cola", AVG]
    assert table.rows[2][1]["rte"] == Stat(81.0, statistics.stdev([80, 82]), 2)


def test_a_run_with_a_nan_or_infinite_metric_is_not_complete_and_the_report_names_it(tmp_path, capsys):
    from compt.runs import RunDir

    for seed, score in ((1, "70.0"), (2, "74.0"), (3, "NaN"), (4, "Infinity")):
        text = json.dumps(fake_results("ssum", 8, seed, {"rte": 1.0})).replace("1.0", score)
        (tmp_path / f"seed{seed}" / ".hydra").mkdir(parents=True)
        (tmp_path / f"seed{seed}" / "results.json").write_text(text)
    assert RunDir(tmp_path / "seed3").check().status == "new"  # relaunched, not skipped as done
    assert "non-finite metric(s) primary.rte=NaN" in (RunDir(tmp_path / "seed3").check().problem or "")
    assert RunDir(tmp_path / "seed1").valid_results()["primary"] == {"rte": 70.0}
    assert main(["report", str(tmp_path), "--out", str(tmp_path / "out"), "--no-plots", "--quiet"]) == 0
    err = capsys.readouterr().err
    assert "left out of the tables: 2 job(s) or run(s)" in err
    assert f"{tmp_path / 'seed3'}: results.json is damaged: non-finite metric(s) primary.rte=NaN" in err
    assert f"{tmp_path / 'seed4'}:" in err and "primary.rte=Infinity" in err
    with (tmp_path / "out" / "results.csv").open() as handle:
        [row] = csv.DictReader(handle)
    assert (row["rte_mean"], row["rte_n"]) == ("72.0", "2")


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
                    evaluated = masks if n == 1 else {"total": masks["total"]}  # few figures: a fast test
                    results = fake_results(
                        method, 8, seed, scores, overrides=overrides, masks=evaluated, learn=learn == "true"
                    )
                    write_run(sweep, f"{method}-{n}-{learn}-{seed}", results)
    for lr in ("0.01", "0.05"):
        write_run(
            sweep,
            f"lr-{lr}",
            fake_results(
                "ssum",
                8,
                1,
                dict.fromkeys(GLUE, 75.0),
                overrides={"optim.lr.private": lr},
                cross={t: {"primary": dict.fromkeys(GLUE, 50.0)} for t in GLUE},
            ),
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


def test_table7_averages_a_run_with_mnli_over_the_set2_tasks_only(tmp_path):
    set2 = ["multinli", "scitail", "imdb", "yelp_polarity", "paws", "mrpc"]
    for name, extra in (("set2", {}), ("set2_mnli", {"mnli": 10.0})):
        for seed in (1, 2):
            scores = {**dict.fromkeys(set2, 60.0 + seed), **extra}
            results = fake_results("ssum", 16, seed, scores, overrides={"tasks": name})
            write_run(tmp_path / name, f"seed-{seed}", results)
    alone = build_report([tmp_path / "set2"], tmp_path / "alone", plots=False, progress=False)
    assert [c.name for c in alone.comparisons] == ["paper_table2"]  # plain SET2 runs are Table 2's
    report = build_report([tmp_path / "set2", tmp_path / "set2_mnli"], tmp_path / "out", plots=False)
    table7 = next(c for c in report.comparisons if c.name == "paper_table7")
    rows = {(label["tasks"], label["source"]): cells for label, cells in table7.rows}
    assert "mnli" not in table7.columns
    assert rows["set2_mnli", "ours"][AVG] == Stat(61.5, statistics.stdev([61.0, 62.0]), 2)  # mnli left out
    assert rows["set2_mnli", "paper"][AVG] == "72.7" and rows["set2", "paper"][AVG] == "70.5"
    assert rows["set2", "Δ"]["imdb"] == pytest.approx(61.5 - 75)


def test_fig4_is_compared_mask_by_mask_for_runs_evaluated_under_several_masks(tmp_path):
    def scores(mask: str) -> dict:
        values = {t: 50.0 + i + (mask == "total") for i, t in enumerate(GLUE)}
        avg = statistics.fmean(values.values())
        return {"primary": values, "avg": avg, "primary_paper": values, "avg_paper": avg}

    masked = {m: scores(m) for m in ("src0", "src1", "all_src", "private", "total")}  # no src2
    for seed in (1, 2):
        write_run(
            tmp_path,
            f"masked-{seed}",
            fake_results("msum", 16, seed, masked["total"]["primary"], masks=masked),
        )
        plain = fake_results("msum", 16, seed, masked["total"]["primary"], overrides={"n_sources": 2})
        write_run(tmp_path, f"plain-{seed}", plain)  # evaluated under `total` only: not a masking analysis
    report = build_report([tmp_path], tmp_path / "out", plots=False, progress=False)
    fig4 = next(c for c in report.comparisons if c.name == "paper_fig4")
    assert fig4.label_keys[-2:] == ["mask", "source"]
    rows = {(label["mask"], label["source"]): cells for label, cells in fig4.rows}
    assert list(dict.fromkeys(mask for mask, _ in rows)) == ["src0", "src1", "total"]  # MSUM (3) columns run
    assert rows["src1", "paper"]["mnli"] == "44.0" and rows["total", "paper"][AVG] == "75.0"
    assert rows["src1", "ours"]["mnli"].mean == 50.0 + GLUE.index("mnli")
    assert rows["total", "Δ"]["sst2"] == pytest.approx(51.0 + GLUE.index("sst2") - 92)
    notes = " ".join(fig4.notes + next(c for c in report.comparisons if c.name == "paper_table1").notes)
    assert "100 test examples per task" in notes and "full evaluation sets" not in report.markdown


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
    assert "never started (launched into this sweep folder)" in printed and "method=pt,k=4,seed=2" in printed
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


# ---------------------------------------------------------------------------------------------- masked sweep
@pytest.fixture(scope="module")
def masked_sweep(tmp_path_factory) -> Path:
    """A real 2-job toy sweep evaluated under every mask and with every task's prompt: ssum, 2 sources,
    constant vs learned weights (Fig. 6), one step each."""
    folder = tmp_path_factory.mktemp("masked") / "multirun"
    run_script(
        "train.py",
        "-m",
        *FAST,
        "method=ssum",
        "n_sources=2",
        "router.learn=false,true",
        "eval.masks=[total,private,all_src,src*]",
        "eval.cross_prompts=rank",
        "trainer.max_steps=1",
        "eval.max_samples=4",
        f"hydra.sweep.dir={folder}",
    )
    return folder


@pytest.fixture(scope="module")
def masked_report(masked_sweep, tmp_path_factory):
    return build_report([masked_sweep], tmp_path_factory.mktemp("masked_report"), progress=False)


def _correct(rows: list[dict]) -> float:
    return 100 * sum(bool(r["valid"]) and r["value"] == r["gold"] for r in rows) / len(rows)


@pytest.mark.slow
def test_every_evaluated_mask_keeps_predictions_that_give_its_scores(masked_sweep):
    for results_file in sorted(masked_sweep.rglob("results.json")):
        results, run = json.loads(results_file.read_text()), RunDir(results_file.parent)
        main = [json.loads(line) for line in run.predictions_file.read_text().splitlines()]
        assert {r["mask"] for r in main} == {"total"} and len(main) == 4 * len(DEMO_TASKS)  # as before
        rows = run.read_predictions()
        assert list(dict.fromkeys(r["mask"] for r in rows)) == list(results["masks"])
        for mask, scores in results["masks"].items():
            for task in ("sst2", "rte", "mnli"):  # accuracy tasks: the stored answers give the recorded score
                mine = [r for r in rows if r["mask"] == mask and r["task"] == task]
                assert len(mine) == 4 and _correct(mine) == pytest.approx(scores["primary"][task])


@pytest.mark.slow
def test_the_report_counts_every_masks_answers_into_confusion_tables(masked_sweep, masked_report):
    ours = [t for t in masked_report.confusions if t.name.startswith("confusion_")]
    assert len(ours) == 2 * 3  # 2 groups x the classification tasks (stsb, a score, has none)
    learned = next(t for t in ours if t.name.endswith("True_rte"))
    run = next(p.parent for p in masked_sweep.rglob("results.json") if "router.learn=True" in str(p))
    rows = [r for r in RunDir(run).read_predictions() if r["task"] == "rte"]
    results = json.loads((run / "results.json").read_text())
    for label, cells in learned.rows:
        mine = [r for r in rows if r["mask"] == label["mask"]]
        if label["prediction"] == "recall":
            assert cells["acc."] == f"{results['masks'][label['mask']]['primary']['rte']:.0f}%"
            continue
        for gold in ("entailment", "not_entailment"):
            count = sum(r["prediction"] == label["prediction"] and r["target"] == gold for r in mine)
            assert cells.get(gold) == str(count)
    assert [label["mask"] for label, _ in learned.rows if label["prediction"] == "recall"] == [
        "src0",
        "src1",
        "all_src",
        "private",
        "total",
    ]
    published = [t.name for t in masked_report.confusions if t.name.startswith("paper_")]
    assert published == ["paper_table6", "paper_table5"]  # rte and mnli: the paper's tasks this sweep has
    assert "## Answers per mask (paper Tables 5, 6, A1)" in masked_report.markdown
    assert "Table 6: RTE predictions" in masked_report.markdown
    with (masked_report.out / "confusions.csv").open() as handle:
        assert len({r["table"] for r in csv.DictReader(handle)}) == len(masked_report.confusions)


@pytest.mark.slow
def test_the_task_by_prompt_matrix_and_the_constant_vs_learned_figure(masked_sweep, masked_report):
    for results_file in masked_sweep.rglob("results.json"):
        results = json.loads(results_file.read_text())
        diagonal = {t: results["cross_prompts"][t]["primary"][t] for t in DEMO_TASKS}
        assert diagonal == pytest.approx(results["primary"])  # a task under its own prompt: its score
        learned = "router.learn=True" in str(results_file)
        assert (results["router_logits"] is not None) == learned
    assert len(masked_report.cross_prompts) == 2
    matrix = masked_report.cross_prompts[0]
    assert matrix.columns == DEMO_TASKS and [label["task"] for label, _ in matrix.rows] == DEMO_TASKS
    made = {p.name: p for p in masked_report.plots}
    assert len(made["cross_prompts"].files) == 2 and len(made["fig6"].files) == 1
    for path in [*made["cross_prompts"].files, *made["fig6"].files]:
        assert path.read_bytes().startswith(PNG_SIGNATURE)
    assert "## Task × prompt (paper Fig. A1)" in masked_report.markdown


def test_two_sweeps_sharing_a_folder_keep_each_launchs_jobs_that_never_started(tmp_path):
    def launch(*overrides: str) -> None:  # what a -m launch writes: Hydra's multirun.yaml and compt's record
        config = OmegaConf.create(
            {
                "hydra": {
                    "sweep": {"dir": str(tmp_path)},
                    "sweeper": {"_target_": "hydra._internal.core_plugins.basic_sweeper.BasicSweeper"},
                    "overrides": {"task": list(overrides)},
                }
            }
        )
        keep_launch_record(config)
        OmegaConf.save(config, tmp_path / "multirun.yaml")

    launch("method=pt", "k=8", "seed=1,2")  # stopped after its first job
    ran = write_run(tmp_path, "pt-1", fake_results("pt", 8, 1, {"rte": 60.0}))
    (ran / ".hydra" / "overrides.yaml").write_text(yaml.safe_dump(["method=pt", "k=8", "seed=1"]))
    launch("method=ssum", "k=8", "seed=1")  # another sweep into the same folder (name=s, other overrides)
    launch("method=ssum", "k=8", "seed=1")  # relaunched: nothing new to keep
    assert len(list((tmp_path / ".compt-launches").glob("*.yaml"))) == 2
    missing = {m.reason for m in scan([tmp_path], progress=False).missing}
    assert missing == {
        "never started (launched into this sweep folder): method=pt,k=8,seed=2",
        "never started (launched into this sweep folder): method=ssum,k=8,seed=1",
    }
