# adk-postgres API server image: ADK's api_server with sessions, artifacts and memory on
# PostgreSQL. Two stages: build the wheel (Rust + maturin), then a slim runtime without
# compilers. Checked by tests/test_compose.py (there is no Docker engine in CI).
#
#   docker build -t adk-postgres-api:0.1 .
#   docker run -e DATABASE_URL=postgresql://user:pass@host:5432/db -p 8000:8000 adk-postgres-api:0.1

FROM python:3.12-slim-bookworm AS builder
RUN apt-get update \
    && apt-get install -y --no-install-recommends build-essential curl ca-certificates \
    && rm -rf /var/lib/apt/lists/*
RUN curl -sSf https://sh.rustup.rs | sh -s -- -y --profile minimal --default-toolchain 1.95.0
ENV PATH="/root/.cargo/bin:${PATH}"
RUN pip install --no-cache-dir "maturin>=1.16,<2"
WORKDIR /src
COPY Cargo.toml Cargo.lock pyproject.toml README.md ./
COPY rust ./rust
COPY python ./python
RUN maturin build --release --locked --out /wheels

FROM python:3.12-slim-bookworm AS runtime
COPY --from=builder /wheels /wheels
RUN pip install --no-cache-dir /wheels/*.whl && rm -rf /wheels
RUN useradd --create-home --uid 10001 adk
COPY examples /app/agents
USER adk
WORKDIR /app
ENV PYTHONUNBUFFERED=1
EXPOSE 8000
HEALTHCHECK --interval=10s --timeout=5s --retries=6 \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/list-apps')"]
CMD ["adk-postgres", "api_server", "--host", "0.0.0.0", "--port", "8000", "/app/agents"]
