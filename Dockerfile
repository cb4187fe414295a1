# One image for the Dagster code location (webserver/daemon/run workers) and the prediction API.
#   docker build -t alphapulse .
#   docker run -p 8000:8000 -v alphapulse:/data \
#       -v ./api-keys:/run/secrets/api-keys:ro -e ALPHAPULSE_API_KEYS_FILE=/run/secrets/api-keys alphapulse   # API
#   docker run -p 3000:3000 -v alphapulse:/data alphapulse \
#       dagster-webserver -w workspace.yaml -h 0.0.0.0 -p 3000                  # UI
FROM python:3.11-slim-bookworm AS build
ENV UV_LINK_MODE=copy UV_COMPILE_BYTECODE=1 UV_PYTHON_DOWNLOADS=never PIP_NO_CACHE_DIR=1
RUN pip install --no-cache-dir "uv==0.13.*"
WORKDIR /app
# Dependencies first: they change far less often than the code, so this layer stays cached.
COPY pyproject.toml uv.lock README.md ./
RUN uv sync --frozen --no-dev --no-install-project
COPY alphapulse_contract ./alphapulse_contract
COPY alphapulse_assets ./alphapulse_assets
COPY alphapulse_serving ./alphapulse_serving
COPY workspace.yaml dagster.yaml ./
COPY infra/dagster ./infra/dagster
RUN uv sync --frozen --no-dev --no-editable

FROM python:3.11-slim-bookworm
# xgboost's wheel links the system OpenMP runtime.
RUN apt-get update \
    && apt-get install -y --no-install-recommends libgomp1=12.2.0-14+deb12u1 \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --create-home --uid 10001 alphapulse \
    && mkdir -p /data/dagster && chown -R alphapulse /data
WORKDIR /app
COPY --from=build --chown=alphapulse:alphapulse /app /app
ENV PATH=/app/.venv/bin:$PATH \
    ALPHAPULSE_HOME=/data \
    DAGSTER_HOME=/data/dagster \
    ALPHAPULSE_API_HOST=0.0.0.0 \
    PYTHONUNBUFFERED=1
USER 10001
EXPOSE 8000 3000
# /health answers 200 whenever the process serves (the body says how well); an exception exits non-zero.
HEALTHCHECK --interval=30s --timeout=3s CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/health', timeout=2)"]
CMD ["python", "-m", "alphapulse_serving"]
