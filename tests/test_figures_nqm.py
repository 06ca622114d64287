"""NQM figures (Figs. 2-4) and the `make figures` driver, on small fixture CSVs.

The fixtures follow the columns `scripts/nqm_theory.py` writes and, for the optional trained
overlay of Fig. 2, the long summary format of `scripts/collect.py` (group columns, then
metric, mean, std, n, ci95).
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from scripts import make_figures
from scripts.figures import fig2_nqm, fig3_quadratic_rate, fig4_quadratic_condition

ROOT = Path(__file__).resolve().parents[1]
MODULES = [fig2_nqm, fig3_quadratic_rate, fig4_quadratic_condition]
TAGS = dict(scale="fixture-scale", dataset="fixture-data", source="experiments/nqm/analytic.py")


def _write(df: pd.DataFrame, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    df.assign(**TAGS).to_csv(path, index=False)


def write_fig2(results: Path) -> None:
    curves, final = [], []
    for lr, beta in [(0.2, 0.0), (0.5, 0.0), (0.5, 0.9), (0.7, 0.0)]:
        for method, k, alpha in [("sgd", np.nan, np.nan), ("lookahead_sgd", 5, 0.5),
                                 ("lookahead_sgd", 5, 1.0)]:
            end = 1.0 + lr * (alpha if k == 5 else 1.0) + beta
            common = dict(method=method, k=k, alpha=alpha, lr=lr, momentum=beta)
            curves += [dict(common, step=s, expected_loss=end + 2.0 / (1 + s)) for s in (0, 5, 10)]
            if not beta:
                rate = 0.01 * lr * np.nan_to_num(alpha, nan=1.0)
                final.append(dict(common, final_loss=end, rate=rate))
    _write(pd.DataFrame(curves), results / "fig2_nqm" / "theory.csv")
    _write(pd.DataFrame(final), results / "fig2_nqm" / "theory_final.csv")


def write_nqm_ema(results: Path) -> None:
    """nqm_ema/table.csv as scripts/nqm_ema.py writes it, with a few small trained cells."""
    from experiments.nqm.problem import default_problem
    from scripts import nqm_ema

    problem = default_problem()
    trained = nqm_ema.trained_table(problem, replicas=20, seed=0, window=50,
                                    trained_lrs={0.0: (0.5, 1.0), 0.9: (0.5,)}, alphas=(0.5, 0.8))
    nqm_ema.write(nqm_ema.combine(problem, nqm_ema.analytic_table(problem), trained), results)


def write_rates(results: Path, artifact: str, x: str) -> None:
    rows = [dict(method=method, k=k, alpha=alpha, lr=0.1 * v, momentum=beta, kappa=10 * v,
                 spectrum=spectrum, rate=0.01 * v - 0.005)  # v = 0.1 gives a divergent row
            for spectrum in ("extremes", "interval") for beta in (0.9, 0.99)
            for method, k, alpha in [("momentum", np.nan, np.nan), ("lookahead_momentum", 20, 0.5)]
            for v in (0.1, 1.0, 2.0, 4.0)]
    df = pd.DataFrame(rows)
    if x == "lr":
        df["kappa"] = 100.0
    _write(df, results / artifact / "theory.csv")


@pytest.fixture
def results(tmp_path: Path) -> Path:
    write_fig2(tmp_path)
    write_rates(tmp_path, "fig3_quadratic_rate", "lr")
    write_rates(tmp_path, "fig4_quadratic_condition", "kappa")
    return tmp_path


def _run(module, results_dir: Path):
    summary = module.summarize(module.load(results_dir))
    fig, axes = module.plot(summary)
    return summary, fig, axes


@pytest.mark.parametrize("module", MODULES, ids=lambda m: m.ARTIFACT)
def test_figure_runs_and_states_scale_and_data_from_the_data(module, results: Path) -> None:
    summary, fig, axes = _run(module, results)
    assert len(summary) and all(ax.has_data() for ax in axes)
    title = fig.get_suptitle()
    assert "fixture-scale" in title and "fixture-data" in title


@pytest.mark.parametrize("module", [fig3_quadratic_rate, fig4_quadratic_condition])
def test_rate_figures_leave_out_divergent_settings(module, results: Path) -> None:
    summary, _, _ = _run(module, results)
    assert (summary["rate"] > 0).all() and len(summary) == 3 * 8


def test_fig2_overlays_trained_runs_when_collected(results: Path) -> None:
    groups = [("sgd", np.nan, 0.5), ("lookahead_sgd", 0.5, 0.5), ("lookahead_adam", 0.5, 0.5)]
    rows = [{"scale": "cpu", "task": "nqm", "optim": o, "optim.lr": lr, "optim.momentum": 0.0,
             "optim.lookahead.alpha": a, "metric": metric, "mean": 1.3, "std": 0.1, "n": 3,
             "ci95": 0.2, "n_runs": 3}
            for o, a, lr in groups for metric in ("final_val_loss", "final_val_loss_slow")
            if not (o == "sgd" and metric.endswith("slow"))]
    rows[1]["mean"] = 9.0  # Lookahead's fast-weight loss: the slow-weight row must win
    pd.DataFrame(rows).to_csv(results / fig2_nqm.TRAINED, index=False)
    summary, fig, axes = _run(fig2_nqm, results)
    trained = summary[summary["panel"] == "trained"].set_index("method")
    assert sorted(trained.index) == ["lookahead_sgd", "sgd"]
    assert trained.loc["lookahead_sgd", "final_loss"] == 1.3
    assert trained.loc["sgd", "alpha"] == 1.0  # plain SGD is Lookahead with alpha = 1
    # only the trained learning rate (0.5) is shown, with and without momentum
    last = summary[summary["panel"] == "last"]
    assert set(last["lr"]) == {0.5} and set(last["momentum"]) == {0.0, 0.9}
    assert len(axes[2].containers) == 2  # one error bar per trained optimizer
    assert "cpu" in fig.get_suptitle() and "fixture-scale" in fig.get_suptitle()


def test_fig2_without_overlay_shows_the_default_learning_rates(results: Path) -> None:
    summary, _, axes = _run(fig2_nqm, results)
    last = summary[summary["panel"] == "last"]
    assert set(last["lr"]) == {0.2, 0.5}  # LRS_SHOWN present in the data; 0.7 is not shown
    assert set(last["step"]) == {10} and set(last["method"]) == {"lookahead_sgd"}
    curve = summary[summary["panel"] == "curve"]
    assert set(curve["lr"]) == {0.5} and set(curve["momentum"]) == {0.0}
    assert not axes[2].containers


def test_fig2_analytic_grid_covers_every_trained_setting() -> None:
    """Each (lr, momentum) of the trained sweep needs its analytic curve to be compared with."""
    from omegaconf import OmegaConf

    from scripts import nqm_theory

    params = OmegaConf.load(ROOT / "conf/experiment/fig2_nqm.yaml").hydra.sweeper.params
    lrs = [float(v) for v in str(params["optim.lr"]).split(",")]
    for beta in (float(v) for v in str(params["optim.momentum"]).split(",")):
        missing = [lr for lr in lrs if not np.isclose(nqm_theory.FIG2_MOMENTA[beta], lr).any()]
        assert not missing, f"momentum {beta}: no analytic curve for lr {missing}"


@pytest.mark.parametrize("module", MODULES, ids=lambda m: m.ARTIFACT)
def test_figure_runs_on_the_committed_results(module) -> None:
    if not all((ROOT / "results" / f).exists() for f in module.REQUIRES):
        pytest.skip(f"no committed results for {module.ARTIFACT}")
    _, fig, _ = _run(module, ROOT / "results")
    assert "analytic" in fig.get_suptitle()


def test_driver_skips_missing_artifacts_and_builds_the_rest(results: Path, capsys) -> None:
    (results / "fig2_nqm" / "theory_final.csv").unlink()
    out = results / "figures"
    # Two artifacts keep the test fast; the selection is the only difference from `make figures`.
    args = ["--results", str(results), "--out", str(out), "fig2_nqm", "fig3_quadratic_rate"]
    assert make_figures.main(args) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == (f"skip fig2_nqm: missing {results.as_posix()}/fig2_nqm/theory_final.csv;"
                        " run `make nqm-theory`")
    assert len(lines) == 2 and lines[1].startswith("wrote ")
    assert sorted(p.name for p in out.iterdir()) == ["fig3_quadratic_rate.pdf",
                                                     "fig3_quadratic_rate.png"]


def test_driver_fails_only_for_a_broken_figure_whose_results_exist(results: Path) -> None:
    (results / "fig2_nqm" / "theory.csv").unlink()  # skipped: keeps the test fast
    pd.DataFrame({"method": ["momentum"]}).to_csv(results / fig4_quadratic_condition.REQUIRES[0])
    cmd = [sys.executable, "scripts/make_figures.py", "--results", str(results),
           "--out", str(results / "figures")]
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 1, proc.stderr
    assert "failed: fig4_quadratic_condition" in proc.stderr
    assert "skip fig2_nqm: missing" in proc.stdout
    assert sorted(p.name for p in (results / "figures").iterdir()) == [
        "fig3_quadratic_rate.pdf", "fig3_quadratic_rate.png"]


def test_figure_scripts_read_only_results() -> None:
    for path in [*(ROOT / "scripts" / "figures").glob("*.py"), ROOT / "scripts/make_figures.py"]:
        tree = ast.parse(path.read_text())
        names = {a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
        names |= {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.module}
        banned = {n for n in names if n.split(".")[0] in ("torch", "experiments", "pyplot")}
        assert not banned and "matplotlib.pyplot" not in names, f"{path.name} imports {banned}"
