# syntax=docker/dockerfile:1
# One image for every orderflow role; the command picks the role:
#   api (default)                      REST + WebSocket on :8000 (/healthz, /readyz, /metrics)
#   api --role gateway                 the same server, deployed separately for /ws traffic
#   worker orderflow.agents.orders:app           (orderflow.agents.delivery:app, orderflow.agents.notifications:app,
#                                       orderflow.agents.simulator:app) /metrics /livez /readyz on ORDERFLOW_ADMIN_PORT
#   seed | refill                      demo-menu Job / stock-refill CronJob
#
# Build from the repository root:  docker build -t orderflow:local .

ARG PYTHON_IMAGE=python:3.11-slim

# ---- builder: turn the project and all its dependencies into wheels --------
FROM ${PYTHON_IMAGE} AS builder
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /src
COPY pyproject.toml setup.cfg README.md ./
COPY agents ./agents
COPY models ./models
COPY web ./web
RUN pip wheel --wheel-dir /wheels ".[mongo,postgres,tracing]"

# ---- runtime: only the installed wheels, run as an unprivileged user --------
FROM ${PYTHON_IMAGE} AS runtime
RUN groupadd --system --gid 10001 orderflow \
    && useradd --system --uid 10001 --gid 10001 --home-dir /app --no-create-home \
       --shell /usr/sbin/nologin orderflow \
    && mkdir -p /app \
    && chown 10001:10001 /app
COPY --from=builder /wheels /wheels
RUN pip install --no-cache-dir --no-index --find-links=/wheels "orderflow[mongo,postgres,tracing]" \
    && rm -rf /wheels
WORKDIR /app
ENV PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    ORDERFLOW_HOST=0.0.0.0 \
    ORDERFLOW_PORT=8000 \
    ORDERFLOW_LOG_FORMAT=json \
    ORDERFLOW_DATA_DIR=/tmp/orderflow
USER 10001:10001
EXPOSE 8000 9100
# No HEALTHCHECK here: the image serves several roles and only the API roles
# listen on :8000. compose.yaml and the Helm chart declare a check per role.
ENTRYPOINT ["orderflow"]
CMD ["api"]
