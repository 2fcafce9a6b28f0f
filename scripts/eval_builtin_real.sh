#!/usr/bin/env bash
# Per-clip tables of a model on held-out real clips (issues 31 and 38): each clip degraded the REDS
# way (vsrdb synth: blur and x4 bicubic), then by each setting (clean, H.264 at CRF 23 and 28, noise
# then CRF 23), scored for the model and bicubic on the same inputs.
# Clips: the files of HELD_OUT (default: ../shared/data/clips, i.e. tree and Megamind; `vsrdb data
# clips DIR` writes all four held-out clips: tree, bikes, carphone_pristine, Megamind).
# Usage: scripts/eval_builtin_real.sh WEIGHTS LABEL OUT_DIR [THREADS] [CLIPS_PER_VIDEO] [HELD_OUT]
# Tables: python scripts/builtin_tables.py OUT_DIR LABEL OTHER_LABEL --datasets tree bikes ...
# VSRDB: the command to run (default: vsrdb; e.g. "python3 -m vsrdb" where it is not installed).
# SETTINGS: the degradation settings (default: clean h264:crf=23 h264:crf=28 noise:3,h264:crf=23).
# SCALE: the scale scored (default 4): the clips are synthesised at it (data/eval-xSCALE/ below 4),
# and at x1 the baseline is the blurry input itself.
set -euo pipefail
weights=$1; label=$2; out=$3; threads=${4:-2}; clips=${5:-5}; held=${6:-../shared/data/clips}
vsrdb=${VSRDB:-vsrdb}
degrade=()
for setting in ${SETTINGS:-clean h264:crf=23 h264:crf=28 noise:3,h264:crf=23}; do degrade+=(--degrade "$setting"); done
scale=${SCALE:-4}
root=data/eval; [ "$scale" = 4 ] || root=data/eval-x$scale
mkdir -p "$out"
for video in "$held"/*.avi "$held"/*.mp4; do
  [ -e "$video" ] || continue
  d=$(basename "${video%.*}" | tr '[:upper:]' '[:lower:]' | sed 's/_pristine//')
  [ -d $root/$d ] || $vsrdb synth "$video" -o $root/$d --scale "$scale" --clip-frames 12 --seed 1
  $vsrdb evaluate --data $root/$d --scale "$scale" --weights "$weights" --baseline bicubic --max-clips "$clips" \
      "${degrade[@]}" --threads "$threads" --json "$out/$label-$d.json" --quiet --overwrite > "$out/$label-$d.md"
done
