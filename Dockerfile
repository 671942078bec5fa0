# The service image: `telemetry migrate | serve | ingest | simulate | roads import`.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_ROOT_USER_ACTION=ignore

WORKDIR /app

# Pinned dependencies first, in their own layer, so that code changes do not reinstall them.
COPY requirements.txt ./
RUN pip install -r requirements.txt

# Installed in place (editable): the migrator reads migrations/ next to the telemetry package.
COPY pyproject.toml README.md ./
COPY telemetry ./telemetry
COPY api ./api
COPY simulators ./simulators
COPY migrations ./migrations
COPY data ./data
RUN pip install --no-deps -e . \
    && useradd --system --uid 10001 --no-create-home --shell /usr/sbin/nologin telemetry

USER telemetry
EXPOSE 8000
ENTRYPOINT ["telemetry"]
CMD ["serve"]
