# syntax=docker/dockerfile:1
# moodwire's Triton: two targets from one release of NVIDIA's containers (a TensorRT plan only
# loads on the TensorRT version and GPU architecture that built it, so both use TRITON_RELEASE).
#
#   docker build -f deploy/docker/triton.Dockerfile --target engine-builder -t moodwire-triton-engines:0.1.0 .
#   docker build -f deploy/docker/triton.Dockerfile --target server -t moodwire-triton:0.1.0 .
#
# engine-builder: runs deploy/triton/build_engines.sh on the serving GPU at INIT time (a compose
#   one-shot service or a Kubernetes initContainer) into a shared volume; `docker build` has no
#   GPU, so the plan cannot be built at image build time.  Needs inference/artifacts/moodwire/
#   model.fp32.onnx in the build context (`moodwire export`).
# server: serves that GPU repository when its plans exist and a GPU is visible, else renders and
#   serves the CPU repository (python backend + ONNX Runtime, the committed int8 model).
ARG TRITON_RELEASE=24.09

FROM nvcr.io/nvidia/tensorrt:${TRITON_RELEASE}-py3 AS engine-builder
WORKDIR /opt/moodwire
COPY triton_models/ triton_models/
COPY deploy/triton/build_engines.sh deploy/triton/build_engines.sh
COPY inference/artifacts/ inference/artifacts/
# The output is a sub-directory of the mounted volume: the script replaces it whole.
ENTRYPOINT ["deploy/triton/build_engines.sh", "/opt/moodwire/inference/artifacts"]
CMD ["/engines/repository"]

FROM nvcr.io/nvidia/tritonserver:${TRITON_RELEASE}-py3 AS server
# The python models (moodwire, tokenizer; encoder on CPU) need these in Triton's Python 3.10.
RUN pip install --no-cache-dir numpy==1.26.4 tokenizers==0.20.3 onnxruntime==1.19.2
COPY triton_models/ /opt/moodwire/triton_models/
COPY inference/artifacts/moodwire/model.int8.onnx inference/artifacts/moodwire/model.json inference/artifacts/moodwire/tokenizer.json /opt/moodwire/artifacts/moodwire/
COPY inference/artifacts/moodwire-zh/model.int8.onnx inference/artifacts/moodwire-zh/model.json inference/artifacts/moodwire-zh/tokenizer.json /opt/moodwire/artifacts/moodwire-zh/
COPY deploy/docker/triton-entrypoint.sh /opt/moodwire/triton-entrypoint.sh
RUN groupadd --system --gid 10002 triton-mw \
    && useradd --system --uid 10002 --gid triton-mw --home-dir /var/lib/triton-mw --create-home triton-mw
USER 10002:10002
EXPOSE 8000 8001 8002
HEALTHCHECK --interval=15s --timeout=5s --start-period=120s --retries=3 \
    CMD ["python3", "-c", "import sys, urllib.request; sys.exit(0 if urllib.request.urlopen('http://127.0.0.1:8000/v2/health/ready', timeout=4).status == 200 else 1)"]
ENTRYPOINT ["/opt/moodwire/triton-entrypoint.sh"]
