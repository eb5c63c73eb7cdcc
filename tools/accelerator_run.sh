#!/usr/bin/env bash
# One training run on a lent GPU machine, from the repository root: `python -m unetsr.train` on the photos
# that tools/pack_photos.py packed into .carry/photos, then what should come back moved directly under $OUT
# (at most 8 files, none over 16 MiB, none deeper than 2 folders).
#
#   bash tools/accelerator_run.sh RECIPE STEPS [more python -m unetsr.train flags...]
#
# Before, here: pack the photos, and pypng (unetsr reads PNGs with it; the lent Python may lack it):
#   python tools/pack_photos.py --out .carry/photos --pylib .carry/pylib --budget-mb 56 \
#       --train ../shared/photos/train --val ../shared/photos/val
# The device call (check `status` first: budget_left_s must cover the machine's start and timeout_s):
#   run(command="bash tools/accelerator_run.sh x2 60000 --batch 64 --workers 12 --ema 0.999 --val-every 2000",
#       carry=[".carry"], timeout_s=560)
# Training is stopped after TRAIN_SECONDS (default 450; keep it about 100 s under timeout_s, e.g.
# command="TRAIN_SECONDS=300 bash tools/...") as Ctrl-C stops it: after the step in progress, saved. The
# learning rate then has not decayed to the end of its schedule, so choose STEPS that fit the time when the
# speed is known (the run prints it after 25 steps). unetsr uses the GPU by itself (CUDA when available,
# bf16 autocast with --precision auto).
#
# What comes back (under files_at):
#   train.log         everything the run printed
#   log.jsonl         losses and validation scores, as `python -m unetsr.train` logs them
#   last.pt           the model at the last step, without training state (python -m unetsr.export --full)
#   best.pt           the model at the best validation PSNR-Y
#   state/last.pt.NN  the full training checkpoint in 15 MiB parts, when they fit in the 8 files
# If the command is killed at its limit instead, train.log, run/log.jsonl and run/best.pt still come back.
# Afterwards, here (FILES_AT is the reply's files_at):
#   python -m unetsr.train --recipe x2 --data ../shared/photos/train --val ../shared/photos/val \
#       --out runs/after_gpu --init FILES_AT/best.pt ...           # warm-start a CPU run from it
#   python -m unetsr.export FILES_AT/best.pt mine.pt --check ../shared/photos/val   # or export it
#   cat FILES_AT/state/last.pt.* > runs/gpu/last.pt                # the training state, for --resume
# With $OUT unset it writes to ./runs/accelerator_out, so it also runs (slowly) on a CPU.
set -euo pipefail

prog=accelerator_run
if [ $# -lt 2 ]; then
    echo "usage: bash tools/accelerator_run.sh RECIPE STEPS [python -m unetsr.train flags...]" >&2
    exit 2
fi
recipe=$1 steps=$2
shift 2
OUT=${OUT:-./runs/accelerator_out}
TRAIN_SECONDS=${TRAIN_SECONDS:-450}
MAX_FILES=8
MAX_BYTES=$((16 * 1024 * 1024))
PART_BYTES=$((15 * 1024 * 1024))

for folder in .carry/photos/train .carry/photos/val; do
    if [ ! -d "$folder" ]; then
        echo "$prog: error: no $folder in $(pwd); pack it with tools/pack_photos.py and run from the repository root" >&2
        exit 2
    fi
done
mkdir -p "$OUT"
if [ -n "$(ls -A "$OUT")" ]; then
    echo "$prog: error: $OUT is not empty; choose another OUT" >&2
    exit 2
fi
log=$OUT/train.log
logged() { "$@" 2>&1 | tee -a "$log"; }  # with pipefail: the command's status
say() { echo "$prog: $*" | tee -a "$log"; }

export PYTHONPATH=".${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
if ! python3 -c "import png" 2>/dev/null && [ -f .carry/pylib/png.py ]; then
    PYTHONPATH="$PYTHONPATH:.carry/pylib"
fi
if command -v nvidia-smi >/dev/null; then logged nvidia-smi -L || true; fi

status=0
logged timeout --foreground --signal=INT --kill-after=60 "$TRAIN_SECONDS" \
    python3 -m unetsr.train --recipe "$recipe" --data .carry/photos/train --val .carry/photos/val \
    --out "$OUT/run" --steps "$steps" "$@" || status=$?
case $status in
    0) ;;
    124) say "stopped after TRAIN_SECONDS=$TRAIN_SECONDS s; last.pt holds the step it reached" ;;
    *) say "training ended with status $status; keeping what it saved" ;;
esac

size() { stat -c %s "$1"; }
slim() {  # SRC DST: SRC's model without training state, float32, or float16 if that is over MAX_BYTES
    logged python3 -m unetsr.export "$1" "$2" --full --overwrite || return 1
    if [ "$(size "$2")" -le "$MAX_BYTES" ]; then return 0; fi
    logged python3 -m unetsr.export "$1" "$2" --overwrite
}
run=$OUT/run
if [ -f "$run/log.jsonl" ]; then mv "$run/log.jsonl" "$OUT/log.jsonl"; fi
if [ -f "$run/last.pt" ]; then slim "$run/last.pt" "$OUT/last.pt" || say "could not export last.pt"; fi
if [ -f "$run/best.pt" ]; then
    if [ "$(size "$run/best.pt")" -le "$MAX_BYTES" ]; then mv "$run/best.pt" "$OUT/best.pt"
    else slim "$run/best.pt" "$OUT/best.pt" || say "could not export best.pt"; fi
fi
if [ -f "$run/last.pt" ]; then
    parts=$(( ($(size "$run/last.pt") + PART_BYTES - 1) / PART_BYTES ))
    files=$(find "$OUT" -mindepth 1 -maxdepth 2 -type f -not -path "$run/*" | wc -l)
    if [ $((files + parts)) -le "$MAX_FILES" ]; then
        mkdir -p "$OUT/state"
        split --bytes="$PART_BYTES" --numeric-suffixes --suffix-length=2 "$run/last.pt" "$OUT/state/last.pt."
    else
        say "the training state ($parts parts) does not fit in $MAX_FILES files beside $files; left out"
    fi
fi
rm -rf "$run"
say "under $OUT: $(cd "$OUT" && find . -type f | sort | tr '\n' ' ')"
case $status in 0 | 124) exit 0 ;; *) exit "$status" ;; esac
