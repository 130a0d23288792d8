FROM python:3.11-slim
ENV PYTHONUNBUFFERED=1 GRADIO_ANALYTICS_ENABLED=False GRADIO_SERVER_NAME=0.0.0.0 \
    DEPTHWEB_DATA_DIR=/data
RUN apt-get update && apt-get install -y --no-install-recommends libgl1 libglib2.0-0 \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /app
COPY requirements.txt .
RUN pip install --no-cache-dir -r requirements.txt
COPY . .
RUN pip install --no-cache-dir --no-deps -e .
VOLUME /data
EXPOSE 7860
CMD ["python", "app.py"]
