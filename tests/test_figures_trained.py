"""Every figure module in scripts/figures/ builds from a results folder in collect's format.

The fixture is a miniature of each sweep: fake runs (``fake_runs.py``: real configs and job
lists from the experiment files, made-up numbers in the loop's metrics format) collected by
``scripts/collect_lib.collect`` into ``results/<artifact>/``, with one diverged run (Table 1) and
one failed run (Table 5) among them. Four inputs are not collect output and are written in
the format of the script that makes them: Fig. 1's surface.csv/path.csv
(``scripts/trajectory_plane.py``: it needs a trained model's weight snapshots) and the analytic
theory.csv files of Figs. 2-4 (``scripts/nqm_theory.py``, fixtures of test_figures_nqm.py;
Fig. 2 also overlays a collected fig2_nqm sweep) and the NQM EMA table (``scripts/nqm_ema.py``).

Pinned: `make figures` discovers no module without a fixture here and none fails to import;
each module's load -> summarize -> plot draws every panel and titles it with the scale and
data of its input; make_figures.build writes its .png and .pdf.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from fake_runs import write_sweep
from scripts import make_figures
from scripts.collect_lib import collect
from test_figures_nqm import write_fig2, write_nqm_ema, write_rates

PAPER = Path(__file__).resolve().parents[1] / "results" / "paper_numbers.csv"
MAKE_ARGS = ["scale=smoke", "trainer.threads=1", "trainer.progress=false"]
# artifact -> command-line values that narrow its grid (as `make sweep-<artifact> ARGS=...`).
SWEEPS = {
    "table1_cifar": ["seed=0,1"],                                        # 2 tasks x 5 optims x 2
    "table2_imagenet": ["seed=0,1"],                                     # 2 optims x 2 schedules x 2
    "table3_ptb": ["seed=0,1"],                                          # 4 optims x 2
    "table5_k_alpha": ["seed=0,1"],                                      # 5 arms x 2
    "ptb_k_alpha": ["seed=0,1"],                                         # 5 arms x 2
    "slow_bn_cifar": ["seed=0,1"],
    "fig7b_wmt": ["seed=0,1"],                                           # 5 arms x 2
    "fig8_inner_lr": ["optim.lr=0.1,0.3", "seed=0,1"],                   # 2 arms x 2 lr x 2
    "fig8_momentum": ["optim.momentum=0.9,0.98", "seed=0,1"],            # 2 arms x 2 momenta x 2
    "fig10_per_update": ["seed=0,1"],
    "fig2_nqm": ["optim.lr=0.5", "optim.lookahead.alpha=0.5,1.0", "optim.momentum=0.0", "seed=0,1"],
    "report_radam": ["seed=0,1"],                                        # 2 tasks x 2 optims x 2
    "report_lr001": ["task=cifar10", "seed=0,1"],
    "report_fast_decay": ["task=cifar10", "seed=0,1"],
    "report_k_alpha": ["task=cifar10", "seed=0,1"],                      # 4 arms x 2
    "report_inner_ablation": ["task=cifar10", "optim=lookahead_sgd,lookahead_adam", "seed=0,1"],
    "report_batch_k": ["task=cifar10", "seed=0,1"],                      # 3 (k, batch) x 2
}


def _outcome(job: list) -> str:
    if {"task=cifar100", "optim=adam", "seed=1"} <= set(job):
        return "diverged"
    if {"+experiment=table5_k_alpha", "la=disabled", "seed=1"} <= set(job):
        return "failed"
    return "completed"


def write_fig1(results) -> None:
    """surface.csv and path.csv in the columns scripts/trajectory_plane.py writes."""
    meta = dict(run="fake", scale="smoke", task="cifar10", dataset="cifar10", model="resnet20", k=10,
                alpha=0.8, bn="recomputed on 5 training batches", test_batches=2)
    grid = np.linspace(-1, 2, 5)
    surface = pd.DataFrame([dict(u=u, v=v, test_acc=0.9 - 0.05 * (u - 0.5) ** 2 - 0.05 * v ** 2,
                                 test_loss=0.3 + 0.1 * (u * u + v * v)) for u in grid for v in grid])
    path = pd.DataFrame([dict(step=s, kind=kind, u=s / 10, v=(0.1 if kind == "fast" else 0.0) * (s % 10),
                              off_plane=0.0, test_acc=0.8) for s in range(1, 31) for kind in ("fast", "slow")])
    out = results / "fig1_trajectory"
    out.mkdir(parents=True)
    for name, df in (("surface.csv", surface), ("path.csv", path)):
        df.assign(**meta).to_csv(out / name, index=False, float_format="%.8g", lineterminator="\n")


@pytest.fixture(scope="module")
def results(tmp_path_factory):
    root = tmp_path_factory.mktemp("figures")
    for artifact, extra in SWEEPS.items():
        write_sweep(root / "runs", [f"+experiment={artifact}", *MAKE_ARGS, *extra], _outcome)
    out = root / "results"
    # With the paper's numbers, as `make collect` runs it: the figures draw the paper's values too.
    assert sorted(collect(root / "runs", out, paper_path=PAPER, scales=("smoke",))) == sorted(SWEEPS)
    write_fig1(out)
    write_fig2(out)  # theory.csv, theory_final.csv beside the collected fig2_nqm tables
    write_rates(out, "fig3_quadratic_rate", "lr")
    write_rates(out, "fig4_quadratic_condition", "kappa")
    write_nqm_ema(out)
    return out


MODULES, BROKEN = make_figures.discover()


def test_the_fixture_has_every_outcome(results):
    table1 = pd.read_csv(results / "table1_cifar" / "runs.csv")
    assert len(table1) == 20 and (table1["status"] == "diverged").sum() == 1
    # The failed run has only .hydra/ to say what it is (optim.name: ${optim.inner} there): it
    # is the SGD baseline's, counted beside the table (excluded.csv), never in its cell.
    table5 = pd.read_csv(results / "table5_k_alpha" / "table.csv")
    cell = table5[table5["column"] == "baseline"].iloc[0]
    assert (cell["n"], cell["n_runs"]) == (1, 1)
    excluded = pd.read_csv(results / "table5_k_alpha" / "excluded.csv")
    assert excluded[["status", "optim", "la"]].values.tolist() == [["failed", "sgd", "disabled"]]


def test_every_figure_module_imports_and_has_its_results_here(results):
    assert not BROKEN
    assert len(MODULES) == 21  # figs 1-10 (8a, 8b, 7a, 7b), the PTB k/alpha grid, slow-weight BN, six report_*, the NQM EMA
    missing = {m.ARTIFACT: f for m in MODULES for f in m.REQUIRES if not (results / f).exists()}
    assert not missing, f"no fixture for {missing}"


@pytest.mark.parametrize("module", MODULES, ids=lambda m: m.ARTIFACT)
def test_figure_builds_from_collected_results(module, results, tmp_path, monkeypatch):
    drawn = []
    plot = module.plot
    monkeypatch.setattr(module, "plot", lambda summary: drawn.append((summary, *plot(summary))) or drawn[-1][1:])
    paths = make_figures.build(module, results, tmp_path)  # load -> summarize -> plot -> save
    assert sorted(p.name for p in paths) == [f"{module.ARTIFACT}.pdf", f"{module.ARTIFACT}.png"]
    assert all(p.stat().st_size > 0 for p in paths)
    (summary, fig, axes), = drawn
    assert len(summary)
    empty = [ax.get_title() or i for i, ax in enumerate(np.ravel(axes)) if not ax.has_data()]
    assert not empty, f"panels without data: {empty}"
    provenance = fig.get_suptitle().splitlines()[-1]  # 'scale: a, b | data: c, d'
    assert provenance.startswith("scale: ") and "unknown" not in provenance
    for part in provenance.split(" | "):
        values = part.split(": ", 1)[1].split(", ")
        assert len(values) == len(set(values)), f"repeated in {provenance!r}"


def test_provenance_names_the_dataset_not_also_the_task():
    """Multi30k runs of the wmt14 task are labelled 'data: multi30k'; `task` is only a fallback."""
    from scripts.figures import _style

    runs = pd.DataFrame({"scale": ["cpu", "cpu"], "task": ["wmt14", "wmt14"], "dataset": ["multi30k", None]})
    assert _style.provenance(runs) == "scale: cpu | data: multi30k"
    assert _style.provenance(runs.drop(columns="dataset")) == "scale: cpu | data: wmt14"


def test_the_slow_bn_table_reads_each_evaluation_at_each_point_of_the_run(results):
    # The fakes score theta at loss 1.1 L, phi with kept statistics at L, recomputed at 0.95 L.
    table = pd.read_csv(results / "slow_bn_cifar" / "table.csv").set_index(["row", "column"])["mean"]
    for column in ("1/7 of the run", "4/7 of the run", "end"):
        fast, kept, bn = (table[(row, column)] for row in (
            "fast weights", "slow weights, BN statistics kept", "slow weights, BN re-estimated"))
        assert fast < kept < bn
    assert table[("slow weights, BN statistics kept", "1/7 of the run")] < table[("slow weights, BN statistics kept", "end")]
