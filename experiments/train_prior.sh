#!/usr/bin/env bash
# Train the StyleGAN2 prior G (`stylecodec train prior`). Usage:
#   bash experiments/train_prior.sh cpu          # 64x64 tiny prior on a 2-core CPU (~1 h, fp32)
#   bash experiments/train_prior.sh gpu          # 256x256 prior (n = 14) on one H100 (< 1 h, bf16 autocast)
#   bash experiments/train_prior.sh gpu-multi K  # the same on K GPUs of one node (torchrun; global batch kept)
#   bash experiments/train_prior.sh pack         # pack UTKFace train images into <= 60 MiB .npz chunks
# Every run writes RUN_DIR/{ckpt-<step>.pt, config.json, tb/, samples/, prior.pt}. Re-running the
# same line continues from the newest checkpoint (--resume auto); Ctrl-C / SIGTERM save one first.
# Data: ../shared/data/utkface (or $STYLECODEC_DATA); the last 1000 files by name are validation
# and never trained on. View the logs with: tensorboard --logdir runs/
set -euo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$repo"
py="${PYTHON:-$repo/.venv/bin/python}"
data="${STYLECODEC_DATA:-$repo/../shared/data/utkface}"

case "${1:-}" in
  cpu)
    # Measured on the project's shared 2-core Xeon VM (the other processes kept the load at 5-9):
    # one train step costs ~17 images per CPU-second; wall clock 8-11 img/s with 2 threads and
    # OMP_WAIT_POLICY=PASSIVE, 1-2 img/s with 2 threads and the default (spinning) OpenMP wait,
    # 7-13 img/s with 1 thread. Hence PASSIVE below; on an idle machine expect ~25 img/s, i.e.
    # 60 kimg (the preset) in 40-70 min. Live numbers: `Timing/images_per_s` in TensorBoard.
    OMP_NUM_THREADS="${OMP_NUM_THREADS:-2}" OMP_WAIT_POLICY="${OMP_WAIT_POLICY:-PASSIVE}" \
    "$py" -m stylecodec.cli train prior \
      --preset cpu64 --data "$data" --out runs/prior_cpu64 --resume auto "${@:2}"
    ;;
  gpu)
    # One H100: batch 64, bf16 autocast, stops at --kimg or after 55 minutes (preset), whichever first.
    "$py" -m stylecodec.cli train prior \
      --preset gpu256 --data "${DATA:-$data}" --out runs/prior_gpu256 --resume auto "${@:2}"
    ;;
  gpu-multi)
    k="${2:?number of GPUs}"
    "$py" -m torch.distributed.run --standalone --nproc_per_node="$k" -m stylecodec.cli train prior \
      --preset gpu256 --data "${DATA:-$data}" --out runs/prior_gpu256 --resume auto "${@:3}"
    ;;
  pack)
    # For a GPU machine reached through a 64 MiB transfer: original JPEG bytes (~5.2 KB each),
    # so one 60 MiB chunk holds ~11.8k of the 22,707 training faces (two chunks hold them all).
    # Train on one with DATA=runs/packs/utk_train_00.npz, or on all with DATA='runs/packs/utk_train_*.npz'.
    mkdir -p runs/packs
    total=$("$py" -c "from stylecodec.data import list_images, split_files; print(len(split_files(list_images('$data'), 'train')))")
    start=0; i=0
    while [ "$start" -lt "$total" ]; do
      out=$(printf "runs/packs/utk_train_%02d.npz" "$i")
      "$py" -m stylecodec.data --root "$data" --split train --start "$start" --max-mib 60 --out "$out"
      n=$("$py" -c "import numpy as np; print(len(np.load('$out')['names']))")
      start=$((start + n)); i=$((i + 1))
    done
    ;;
  *)
    sed -n '2,10p' "$0"; exit 2
    ;;
esac
