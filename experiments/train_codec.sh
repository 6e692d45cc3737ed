#!/usr/bin/env bash
# Train the codec (`stylecodec train codec`). Usage:
#   bash experiments/train_codec.sh cpu [MIN]      # slim 256x256 codec, joint from scratch, 1 thread, MIN minutes (60)
#   bash experiments/train_codec.sh cpu128 [MIN]   # the same at 128x128, same 81-byte file (0.04 bpp there; 0.01 bpp would be 20 bytes)
#   bash experiments/train_codec.sh gpu-pretrain   # default model (n = 14) on one GPU: encoder pretraining on the prior
#   bash experiments/train_codec.sh gpu-joint      # joint style-based autoencoder (G too), from the prior if present
#   bash experiments/train_codec.sh gpu-finetune   # G frozen, codec parts on real faces, from gpu-joint's model.pt
#   bash experiments/train_codec.sh gpu-multi K    # gpu-joint on K GPUs of one node (torchrun; global batch kept)
#   bash experiments/train_codec.sh pack-val       # 64 validation faces as one .npz (for packed --data on a GPU box)
# Every run writes RUN_DIR/{ckpt-<step>.pt, config.json, tb/, samples/, model.pt, model.json}; re-running
# the same line continues from the newest checkpoint (--resume auto); Ctrl-C / SIGTERM save one first.
# The default quality's whole three-layer file is steered to 81 bytes at 256x256 (0.01 bpp; --target-bytes),
# and the basic layer extracted alone to 24 bytes (0.003 bpp; --target-basic-bpp).
set -euo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$repo"
py="${PYTHON:-$repo/.venv/bin/python}"
data="${STYLECODEC_DATA:-$repo/../shared/data/utkface}"
prior="${PRIOR:-runs/prior_gpu256/prior.pt}"
gpu_data=(--data "${DATA:-$data}")
[ -n "${VAL_DATA:-}" ] && gpu_data+=(--val-data "$VAL_DATA")

case "${1:-}" in
  cpu)
    # One torch thread: on 2 cores shared with other jobs, 2 threads are several times SLOWER.
    # Prefix sampling (one synthesis per sample) is part of the preset. ~1.2 img/s under load.
    OMP_NUM_THREADS=1 "$py" -m stylecodec.cli train codec --preset cpu --mode joint --data "$data" \
      --out runs/codec_cpu256 --threads 1 --workers 0 --max-minutes "${2:-60}" --resume auto "${@:3}"
    ;;
  cpu128)
    OMP_NUM_THREADS=1 "$py" -m stylecodec.cli train codec --preset cpu --mode joint --data "$data" \
      --resolution 128 --target-bytes 81 --target-basic-bpp 0.012 --out runs/codec_cpu128 --threads 1 --workers 0 \
      --max-minutes "${2:-60}" --resume auto "${@:3}"
    ;;
  gpu-pretrain)
    # pSp/e4e pretraining on faces the frozen prior generates (w known); needs a 256 prior.
    "$py" -m stylecodec.cli train codec --preset gpu256 --mode pretrain-encoder --prior "$prior" \
      --out runs/codec_gpu_pre --kimg 300 --max-minutes 25 --resume auto "${@:2}"
    ;;
  gpu-joint)
    # Compute-aware route (DESIGN.md §1): E + codec + G.synthesis on real faces, light adversarial term.
    init=(); [ -f runs/codec_gpu_pre/model.pt ] && init=(--init runs/codec_gpu_pre/model.pt)
    [ ${#init[@]} -eq 0 ] && [ -f "$prior" ] && init=(--prior "$prior")
    "$py" -m stylecodec.cli train codec --preset gpu256 --mode joint "${gpu_data[@]}" "${init[@]}" \
      --adv-weight 0.05 --out runs/codec_gpu_joint --kimg 2000 --max-minutes 25 --resume auto "${@:2}"
    ;;
  gpu-finetune)
    "$py" -m stylecodec.cli train codec --preset gpu256 --mode finetune "${gpu_data[@]}" \
      --init runs/codec_gpu_joint/model.pt --out runs/codec_gpu_ft --kimg 300 --max-minutes 10 --resume auto "${@:2}"
    ;;
  gpu-multi)
    k="${2:?number of GPUs}"
    "$py" -m torch.distributed.run --standalone --nproc_per_node="$k" -m stylecodec.cli train codec \
      --preset gpu256 --mode joint "${gpu_data[@]}" --adv-weight 0.05 --out runs/codec_gpu_joint \
      --kimg 4000 --resume auto "${@:3}"
    ;;
  pack-val)
    mkdir -p runs/packs
    "$py" -m stylecodec.data --root "$data" --split val --limit 64 --out runs/packs/utk_val.npz
    ;;
  *)
    sed -n '2,11p' "$0"; exit 2
    ;;
esac
