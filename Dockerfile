# depthweb in a container, laid out like a Docker Space: a non-root user with uid 1000, the app
# on port 7860, and everything that must persist (database, blobs, students, exports, the Hugging
# Face cache) on the data volume /data.
#   docker build -t depthweb . && docker run -p 7860:7860 -v depthweb-data:/data depthweb
# Python 3.10 as on ZeroGPU Spaces; torch==2.13.0 comes from PyPI (CUDA build) with onnx2torch
# and its matching torchvision, so Metric3D/UniDepth run on a GPU when one is passed in.
FROM python:3.10-slim

# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends libglib2.0-0 \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --create-home --uid 1000 user \
    && mkdir -p /data \
    && chown user:user /data

ENV PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    GRADIO_ANALYTICS_ENABLED=False \
    GRADIO_SERVER_NAME=0.0.0.0 \
    GRADIO_SERVER_PORT=7860 \
    DEPTHWEB_DATA_DIR=/data/depthweb \
    HF_HOME=/data/huggingface

WORKDIR /home/user/app
COPY requirements.txt .
RUN pip install --no-cache-dir -r requirements.txt
COPY --chown=user:user . .
RUN pip install --no-cache-dir --no-deps .

USER 1000:1000
VOLUME /data
EXPOSE 7860
HEALTHCHECK --interval=30s --timeout=10s --start-period=180s --retries=3 \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:7860/', timeout=8)"]
CMD ["python", "app.py"]
