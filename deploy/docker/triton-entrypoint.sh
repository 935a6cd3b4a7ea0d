#!/usr/bin/env bash
# Start tritonserver on moodwire's GPU repository (TensorRT plans built by the engine-builder
# target into $MOODWIRE_GPU_REPOSITORY) or, as the fallback, on the CPU repository rendered
# here from the template in /opt/moodwire/triton_models/cpu (what inference.serve.triton_server's
# render_repository does for `moodwire triton serve`, without needing the moodwire package).
#
# MOODWIRE_TRITON_REPOSITORY: auto (default: gpu when the encoder plan exists and nvidia-smi sees a
# GPU, else cpu) | gpu (fail without plans) | cpu.  Extra arguments go to tritonserver.
set -euo pipefail

MODE="${MOODWIRE_TRITON_REPOSITORY:-auto}"
GPU_REPO="${MOODWIRE_GPU_REPOSITORY:-/engines/repository}"
TEMPLATE="${MOODWIRE_TRITON_TEMPLATE:-/opt/moodwire/triton_models}"
ARTIFACTS="${MOODWIRE_TRITON_ARTIFACTS:-/opt/moodwire/artifacts}"
CPU_REPO="${TMPDIR:-/tmp}/moodwire-cpu-repository"

have_plans() { [ -s "$GPU_REPO/encoder/1/model.plan" ]; }
have_gpu() { command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1; }
version_of() { python3 -c 'import json, sys; print(json.load(open(sys.argv[1]))["version"])' "$1/model.json"; }

render_cpu() {
    rm -rf "$CPU_REPO"
    cp -rL "$TEMPLATE/cpu" "$CPU_REPO"
    cp "$TEMPLATE/contract.json" "$CPU_REPO/contract.json"
    local model_dir version
    model_dir="$ARTIFACTS/moodwire"
    version="$(version_of "$model_dir")"
    sed -i -e "s#@ARTIFACT_DIR@#$model_dir#g" -e "s#@ARTIFACT_VERSION@#$version#g" "$CPU_REPO"/*/config.pbtxt
    # The Chinese model, when shipped: the three models again with a _zh suffix, the entry
    # naming its own tokenizer and encoder (as render_repository does).
    if [ -f "$ARTIFACTS/moodwire-zh/model.json" ]; then
        model_dir="$ARTIFACTS/moodwire-zh"
        version="$(version_of "$model_dir")"
        local m
        for m in tokenizer encoder moodwire; do
            cp -rL "$TEMPLATE/cpu/$m" "$CPU_REPO/${m}_zh"
            sed -i -e "0,/^name: \"$m\"/s//name: \"${m}_zh\"/" \
                -e "s#@ARTIFACT_DIR@#$model_dir#g" -e "s#@ARTIFACT_VERSION@#$version#g" \
                "$CPU_REPO/${m}_zh/config.pbtxt"
        done
        sed -i -e '0,/^parameters \[$/s//parameters [\n  { key: "tokenizer_model" value: { string_value: "tokenizer_zh" } },\n  { key: "encoder_model" value: { string_value: "encoder_zh" } },/' \
            "$CPU_REPO/moodwire_zh/config.pbtxt"
    fi
    if grep -q '@[A-Z_]*@' "$CPU_REPO"/*/config.pbtxt; then
        echo "triton-entrypoint: unfilled placeholders in $CPU_REPO" >&2
        exit 1
    fi
}

if [ "$MODE" = auto ]; then
    if have_plans && have_gpu; then MODE=gpu; else MODE=cpu; fi
fi
case "$MODE" in
gpu)
    have_plans || { echo "triton-entrypoint: no TensorRT plans under $GPU_REPO (run the engine-builder first)" >&2; exit 1; }
    echo "triton-entrypoint: repository=gpu path=$GPU_REPO"
    exec tritonserver --model-repository="$GPU_REPO" --strict-readiness=true --exit-timeout-secs=10 "$@"
    ;;
cpu)
    render_cpu
    echo "triton-entrypoint: repository=cpu path=$CPU_REPO"
    exec tritonserver --model-repository="$CPU_REPO" --strict-readiness=true --exit-timeout-secs=10 \
        --allow-gpu-metrics=false --pinned-memory-pool-byte-size=0 "$@"
    ;;
*)
    echo "triton-entrypoint: MOODWIRE_TRITON_REPOSITORY=$MODE: use auto, gpu or cpu" >&2
    exit 2
    ;;
esac
