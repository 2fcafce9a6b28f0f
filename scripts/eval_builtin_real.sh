#!/usr/bin/env bash
# Issue 31's per-clip tables: held-out real clips (Megamind, tree from ../shared/data), degraded the
# REDS way and then encoded, scored for one model and bicubic on the same inputs.
# Usage: scripts/eval_builtin_real.sh WEIGHTS LABEL OUT_DIR [THREADS] [MEGAMIND_CLIPS]
set -euo pipefail
weights=$1; label=$2; out=$3; threads=${4:-2}; clips=${5:-5}
mkdir -p "$out"
for d in megamind tree; do
  [ -d data/eval/$d ] || vsrdb synth ../shared/data/clips/$( [ $d = megamind ] && echo Megamind || echo tree ).avi \
      -o data/eval/$d --clip-frames 12 --seed 1
  vsrdb evaluate --data data/eval/$d --weights "$weights" --baseline bicubic --max-clips "$clips" \
      --degrade clean --degrade h264:crf=23 --degrade h264:crf=28 --degrade noise:3,h264:crf=23 \
      --threads "$threads" --json "$out/$label-$d.json" --quiet --overwrite > "$out/$label-$d.md"
done
