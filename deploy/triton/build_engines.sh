#!/usr/bin/env bash
# Build the GPU model repository: one TensorRT FP16 engine from the exported
# multi-task ONNX model (both task outputs), plus the tokenizer files, version
# and contract the other models need.
#
# Run inside NVIDIA's TensorRT container of the SAME release as the Triton
# container that will serve the plans (a plan only loads on the TensorRT
# version and GPU architecture that built it); see deploy/triton/README.md.
#
#   deploy/triton/build_engines.sh [ARTIFACTS_ROOT] [OUT_REPOSITORY]
#
# ARTIFACTS_ROOT  default inference/artifacts (needs moodwire/model.fp32.onnx from
#                 `moodwire export`, plus tokenizer.json and model.json)
# OUT_REPOSITORY  default build/triton-gpu (point tritonserver --model-repository here)
set -euo pipefail

# Optimization profile (one).  Batch bounds must equal the encoder
# config's max_batch_size and the sequence bound the contract's max_length;
# tests/test_triton_contract.py checks both.
MIN_BATCH=1
OPT_BATCH=64
MAX_BATCH=128
MIN_SEQ=1
OPT_SEQ=64
MAX_SEQ=256
WORKSPACE=4096M

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/../.." && pwd)"
ARTIFACTS="${1:-$ROOT/inference/artifacts}"
OUT="${2:-$ROOT/build/triton-gpu}"
TRTEXEC="${TRTEXEC:-$(command -v trtexec || echo /usr/src/tensorrt/bin/trtexec)}"

[ -x "$TRTEXEC" ] || { echo "build_engines: trtexec not found (run inside nvcr.io/nvidia/tensorrt:<release>-py3)" >&2; exit 1; }

rm -rf "$OUT"
mkdir -p "$OUT"
# -L: the gpu/ template shares model.py files with cpu/ through symlinks.
cp -rL "$ROOT/triton_models/gpu/." "$OUT/"
cp "$ROOT/triton_models/contract.json" "$OUT/contract.json"
find "$OUT" -name .gitkeep -delete

shape() { echo "input_ids:${1}x${2},attention_mask:${1}x${2}"; }

MODEL="$ARTIFACTS/moodwire"
onnx="$MODEL/model.fp32.onnx"
[ -f "$onnx" ] || { echo "build_engines: $onnx not found: run \`moodwire export\` first" >&2; exit 1; }
version="$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["version"])' "$MODEL/model.json")"
echo "== encoder $version: building FP16 engine (batch $MIN_BATCH/$OPT_BATCH/$MAX_BATCH, seq $MIN_SEQ/$OPT_SEQ/$MAX_SEQ)"
# One engine, both heads: sentiment_probabilities and topic_probabilities
# are graph outputs, so trtexec keeps both.
"$TRTEXEC" \
    --onnx="$onnx" \
    --saveEngine="$OUT/encoder/1/model.plan" \
    --fp16 \
    --minShapes="$(shape "$MIN_BATCH" "$MIN_SEQ")" \
    --optShapes="$(shape "$OPT_BATCH" "$OPT_SEQ")" \
    --maxShapes="$(shape "$MAX_BATCH" "$MAX_SEQ")" \
    --memPoolSize=workspace:"$WORKSPACE" \
    --skipInference
sed -i "s|@ARTIFACT_VERSION@|$version|" "$OUT/encoder/config.pbtxt" "$OUT/tokenizer/config.pbtxt"
cp "$MODEL/tokenizer.json" "$MODEL/model.json" "$OUT/tokenizer/1/"

if grep -rq '@[A-Z_]*@' "$OUT"/*/config.pbtxt; then
    echo "build_engines: unfilled placeholders left in $OUT" >&2
    exit 1
fi
echo "== GPU repository ready: $OUT"
