#!/usr/bin/env bash
# Issue 17's face figures for one model, in one command: the held-out faces plain and with the encoder's search
# (two processes, one per core), the linear prior and VVC's floor at the bytes of each, the merged table and the
# paired differences. Every step appends to its JSON-lines file and skips the faces it holds, so a rerun resumes.
#
#   experiments/issue17_faces.sh MODEL TAG [STEPS [SEARCH_CONFIG]]
#   experiments/issue17_faces.sh runs/refiner_g2qf_250k_model.pt g2qf250k 40 w_mse=25,w_id=0.05
#
# MODEL: a codec model (name or path); TAG: column prefix ("TAG all", "TAG+sSTEPS all"; SEARCH_TAG=... overrides the
# second); STEPS: search steps (default 40; 0: plain only); SEARCH_CONFIG: faces_heldout.py --search-config.
# Environment: LIMIT (held-out faces, default 1000), SHARDS (processes, default 2), PY (default .venv/bin/python).
# Writes runs/heldout_LIMIT_TAG.jsonl, runs/heldout_LIMIT_SEARCH_TAG.jsonl (shards: *_shardK.jsonl, concatenated),
# runs/heldout_LIMIT_anchors_TAG[_search].jsonl and experiments/results/faces/heldout_LIMIT_TAG[_search].md.
# Time for 1,000 faces on two Xeon cores: plain ≈ 15 min, 40-step search ≈ 2 h (14 s per face per core),
# anchors ≈ 27 min (one process).
set -euo pipefail
cd "$(dirname "$0")/.."
MODEL=${1:?usage: experiments/issue17_faces.sh MODEL TAG [STEPS [SEARCH_CONFIG]]}
TAG=${2:?usage: experiments/issue17_faces.sh MODEL TAG [STEPS [SEARCH_CONFIG]]}
STEPS=${3:-40}
CONFIG=${4:-}
LIMIT=${LIMIT:-1000}
SHARDS=${SHARDS:-2}
PY=${PY:-.venv/bin/python}
SEARCH_TAG=${SEARCH_TAG:-$TAG+s$STEPS}
export OMP_NUM_THREADS=1

# faces_heldout.py in SHARDS processes; $1: output stem, $2: column tag, the rest: extra options
heldout() {
  local stem=$1 tag=$2; shift 2
  local pids=() k
  for ((k = 0; k < SHARDS; k++)); do
    $PY experiments/faces_heldout.py --models "$MODEL" --tags "$tag" --limit "$LIMIT" --no-anchors \
      --shard "$k/$SHARDS" --out "${stem}_shard$k.jsonl" "$@" > "${stem}_shard$k.log" 2>&1 &
    pids+=($!)
  done
  for k in "${pids[@]}"; do wait "$k" || { echo "a shard failed: see ${stem}_shard*.log" >&2; exit 1; }; done
  cat "${stem}"_shard*.jsonl > "$stem.jsonl"
  echo "$(wc -l < "$stem.jsonl") faces in $stem.jsonl"
}

PLAIN=runs/heldout_${LIMIT}_$TAG
heldout "$PLAIN" "$TAG"
BYTES=(--bytes "$PLAIN.jsonl" "$TAG all")
TABLES=("$PLAIN.jsonl")
NAME=$TAG                      # names the table and the anchors file: the search's tag when there is a search
if [ "$STEPS" -gt 0 ]; then
  SEARCH=runs/heldout_${LIMIT}_${SEARCH_TAG//+/_}
  EXTRA=(--search-steps "$STEPS")
  [ -n "$CONFIG" ] && EXTRA+=(--search-config "$CONFIG")
  heldout "$SEARCH" "$SEARCH_TAG" "${EXTRA[@]}"
  BYTES+=(--bytes "$SEARCH.jsonl" "$SEARCH_TAG all")
  TABLES+=("$SEARCH.jsonl")
  NAME=${SEARCH_TAG//+/_}
fi
OUT_MD=experiments/results/faces/heldout_${LIMIT}_$NAME.md
ANCHORS=runs/heldout_${LIMIT}_anchors_$NAME.jsonl
$PY experiments/anchors_at_bytes.py "${BYTES[@]}" --vvc --out "$ANCHORS" > "${ANCHORS%.jsonl}.log" 2>&1
TABLES+=("$ANCHORS")
$PY experiments/merge_faces.py "${TABLES[@]}" --out "$OUT_MD"
{
  echo
  echo "Command: \`experiments/issue17_faces.sh $*\` (LIMIT=$LIMIT, SHARDS=$SHARDS). Face by face (paired_faces.py):"
  echo
  COLS=("$PLAIN.jsonl|$TAG all")
  [ "$STEPS" -gt 0 ] && COLS+=("$SEARCH.jsonl|$SEARCH_TAG all")
  for c in "${COLS[@]}"; do
    f=${c%%|*} name=${c#*|}
    for ref in "linear prior (<= $name)" "VVC QP 63 (floor)"; do
      $PY experiments/paired_faces.py "$f" "$name" "$ANCHORS" "$ref" | sed 's/^/    /'
    done
  done
  if [ "$STEPS" -gt 0 ]; then
    $PY experiments/paired_faces.py "$SEARCH.jsonl" "$SEARCH_TAG all" "$PLAIN.jsonl" "$TAG all" | sed 's/^/    /'
  fi
} >> "$OUT_MD"
echo "table: $OUT_MD"
tail -n 12 "$OUT_MD"
