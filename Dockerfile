# The service image: `telemetry migrate | serve | ingest | broker run | vehicles | simulate |
# roads import`.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_ROOT_USER_ACTION=ignore

WORKDIR /app

# Mosquitto 2.0 for `telemetry broker run` (docker-compose's broker service runs this image).
RUN apt-get update \
    && apt-get install -y --no-install-recommends mosquitto \
    && rm -rf /var/lib/apt/lists/*

# Pinned dependencies first, in their own layer, so that code changes do not reinstall them.
COPY requirements.txt ./
RUN pip install -r requirements.txt

# Installed in place (editable): the migrator reads migrations/ next to the telemetry package.
COPY pyproject.toml README.md ./
COPY telemetry ./telemetry
COPY api ./api
COPY simulators ./simulators
COPY migrations ./migrations
COPY deploy/mosquitto ./deploy/mosquitto
COPY data ./data
# The broker's state directory belongs to the service account; a new volume mounted there
# takes this ownership.
RUN pip install --no-deps -e . \
    && useradd --system --uid 10001 --no-create-home --shell /usr/sbin/nologin telemetry \
    && install -d -o telemetry -g telemetry /var/lib/telemetry-broker

USER telemetry
EXPOSE 8000 1883 8883
ENTRYPOINT ["telemetry"]
CMD ["serve"]
