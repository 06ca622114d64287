#!/usr/bin/env bash
# The whole GPU session as one command, run on the device machine from the repository root:
#
#     bash scripts/gpu_session.sh
#
# (device tool: run(command="bash scripts/gpu_session.sh", carry=["data/gpu_pack"], timeout_s=600),
# after `make gpu-pack` here). Within BUDGET seconds (default 570, under the tool's 600 per command):
#
# 1. puts the carried pure-Python packages (data/gpu_pack/site: Hydra, OmegaConf; the device has
#    torch but not these) on PYTHONPATH and checks that the suite imports;
# 2. decodes the carried CIFAR-10 JPEG copy into data/cifar10_from_jpeg/ (about 30 s; the data.root
#    in every manifest then says which copy it was: not the official pixels);
# 3. runs scripts/gpu_check.py with CHECK_SHARE % of what is left -> results/bench/*_cuda.*;
# 4. runs scripts/paper_cifar10.py (ARMS x SEEDS, JOBS at once, scale=paper) for the rest, stopping
#    every run cleanly before the end -> runs/gpu/table1_cifar/ (metrics.csv, manifest.json; no checkpoints);
# 5. leaves at most 8 files in $OUT (the tool's limit), none deeper than one folder:
#    gpu_session.log, gpu_check_cuda.md, gpu_check_cuda.tar.gz (results/bench/*_cuda.*),
#    paper_cifar10_records.tar.gz (runs/gpu/table1_cifar), PROVENANCE.txt.
#
# Back here: `make collect-gpu RECORDS=<files_at>/paper_cifar10_records.tar.gz` and
# `tar xzf <files_at>/gpu_check_cuda.tar.gz` (README "On a GPU").
set -uo pipefail
cd "$(dirname "$0")/.."

BUDGET=${BUDGET:-570}
CHECK_SHARE=${CHECK_SHARE:-70}
ARMS=${ARMS:-sgd,lookahead_sgd}
SEEDS=${SEEDS:-0,1}
JOBS=${JOBS:-4}
PY=${PYTHON:-python3}
PACK=${PACK:-data/gpu_pack}
DATA=${DATA:-data/cifar10_from_jpeg}
OUTDIR=$(mkdir -p "${OUT:-runs/gpu_session}" && cd "${OUT:-runs/gpu_session}" && pwd)
START=$(date +%s)
if [ -n "${DRY_RUN:-}" ]; then  # a CPU check of this script (tests/test_gpu_session.py): tiny sizes, nothing in results/
    CHECK_ARGS=(--cpu-dry-run --out "$OUTDIR/bench"); BENCH_OUT="$OUTDIR/bench"; TAG=cpu_dryrun; RECORDS='*_cpu*'
    PAPER_ARGS=(--scale smoke --device cpu --min-run-s 5); RUNS="$OUTDIR/runs"
else
    CHECK_ARGS=(); BENCH_OUT=results/bench; TAG=cuda; RECORDS='*_cuda.*'; PAPER_ARGS=(); RUNS=runs/gpu
fi

left() { echo $(( BUDGET - ($(date +%s) - START) )); }

session() {
    export PYTHONPATH="$PWD:$PWD/$PACK/site${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
    $PY -c "import torch, hydra, omegaconf, experiments.train; print('torch', torch.__version__, '| cuda', torch.cuda.is_available(), '| hydra', hydra.__version__)" \
        || { echo "error: the suite does not import; was data/gpu_pack carried (make gpu-pack here, carry=[\"data/gpu_pack\"])?"; return 2; }
    local data_args=()
    if [ -f "$DATA/cifar-10-batches-py/test_batch" ]; then
        data_args=(--data-root "$DATA")
    elif [ -f "$PACK/cifar10_jpeg/make_batches.py" ]; then
        $PY "$PACK/cifar10_jpeg/make_batches.py" "$DATA" && data_args=(--data-root "$DATA")
    fi
    [ ${#data_args[@]} -gt 0 ] || echo "no CIFAR-10 copy: gpu_check uses synthetic images, the paper runs are skipped"

    local check=$(( $(left) * CHECK_SHARE / 100 ))
    echo "== gpu_check, budget ${check} s"
    $PY scripts/gpu_check.py --budget-s "$check" "${data_args[@]}" "${CHECK_ARGS[@]}"
    local check_rc=$?
    cp "$BENCH_OUT/gpu_check_$TAG.md" "$OUTDIR/"
    (cd "$BENCH_OUT" && tar czf "$OUTDIR/gpu_check_$TAG.tar.gz" $RECORDS)

    local paper_rc=0
    if [ ${#data_args[@]} -gt 0 ]; then
        local paper=$(( $(left) - 45 ))  # 25 s for the runs to write their records, the rest to pack
        echo "== paper_cifar10, budget ${paper} s"
        $PY scripts/paper_cifar10.py --arms "$ARMS" --seeds "$SEEDS" --jobs "$JOBS" --budget-s "$paper" \
            --grace-s 25 "${data_args[@]}" "${PAPER_ARGS[@]}" --out "$RUNS" --pack "$OUTDIR/paper_cifar10_records.tar.gz"
        paper_rc=$?
    fi
    cp "$PACK/PROVENANCE.txt" "$OUTDIR/" 2>/dev/null
    echo "== done in $(( $(date +%s) - START )) s: gpu_check exit $check_rc, paper_cifar10 exit $paper_rc"
    ls -l "$OUTDIR"
    [ "$check_rc" -eq 0 ] && [ "$paper_rc" -eq 0 ]
}

session 2>&1 | tee "$OUTDIR/gpu_session.log"
