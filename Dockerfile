# syntax=docker/dockerfile:1
# Build: docker build -t vectorgate .
# Run:   docker run -p 8000:8000 --ulimit nofile=65536:65536 -v vectorgate-data:/data vectorgate
# The port faces clients as is: header size and time, body read deadlines and a
# connection cap (below the fd limit, which `serve` raises to the hard limit) are on by
# default; docs/DEPLOYMENT.md lists them and what a proxy in front should add.
FROM python:3.11-slim AS build
WORKDIR /src
RUN python -m venv /opt/venv
COPY pyproject.toml README.md ./
COPY src ./src
COPY alembic ./alembic
RUN /opt/venv/bin/pip install --no-cache-dir .

FROM python:3.11-slim
RUN useradd --create-home --uid 10001 vectorgate && mkdir /data && chown vectorgate /data
COPY --from=build /opt/venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    VECTORGATE_DATA_DIR=/data
USER vectorgate
WORKDIR /data
EXPOSE 8000
HEALTHCHECK --interval=30s --timeout=5s --start-period=20s \
    CMD python -c "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/healthz', timeout=4)"
# `serve` applies migrations, then serves.
CMD ["vectorgate", "serve", "--host", "0.0.0.0", "--port", "8000"]
