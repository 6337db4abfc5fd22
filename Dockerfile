# Argon proxy. Without ARGON_UPSTREAM it runs the embedded SecantusDB with its data in /data.
#
# Clients must authenticate (ARGON_AUTH below): this image listens on all
# interfaces, because it sets ARGON_HOST, so that `docker run -p` can reach it.
# Create the first user from inside the container, where loopback lets the
# first one in (mongod's localhost exception):
#   docker exec -it <container> argon user create admin
# then connect with mongodb://admin:<password>@<host>:27018/. TLS for clients:
# mount a certificate and set ARGON_TLS_CERT_FILE (see the README's Security).
# The metrics port (9216) serves /metrics and /healthz without authentication.
#
# tests/test_packaging.py replays this recipe step by step (COPY, RUN, ENV,
# USER, HEALTHCHECK, ENTRYPOINT/CMD) outside Docker: keep it a plain sequence.
FROM python:3.11-slim
WORKDIR /app

# Runtime dependencies only, at the tested versions; SecantusDB in its own
# environment, as it runs as a separate process and is never imported.
COPY requirements/runtime.lock requirements/upstream.lock ./requirements/
RUN python -m venv /app/.venv \
 && /app/.venv/bin/pip install --no-cache-dir -r requirements/runtime.lock \
 && python -m venv /app/.venv-upstream \
 && /app/.venv-upstream/bin/pip install --no-cache-dir -r requirements/upstream.lock

# The distribution itself, built from every package it ships.
COPY pyproject.toml README.md ./
COPY wire ./wire
COPY argon_proxy ./argon_proxy
COPY argon ./argon
RUN /app/.venv/bin/pip install --no-cache-dir --no-deps . \
 && rm -rf build ./*.egg-info

# An unprivileged user that owns the data volume and nothing else.
RUN useradd --system --user-group --uid 10001 --home-dir /app --shell /usr/sbin/nologin argon \
 && mkdir -p /data \
 && chown argon:argon /data
USER argon

ENV ARGON_HOST=0.0.0.0 \
    ARGON_AUTH=true \
    ARGON_METRICS_HOST=0.0.0.0 \
    ARGON_DATA_DIR=/data \
    ARGON_EMBEDDED_COMMAND=/app/.venv-upstream/bin/secantusd-py
VOLUME /data
EXPOSE 27018 9216
# /healthz answers 200 while the upstream answers, 503 (unhealthy) while it does not.
HEALTHCHECK --interval=15s --timeout=5s --start-period=60s --retries=3 \
  CMD ["/app/.venv/bin/python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/healthz' % os.environ.get('ARGON_METRICS_PORT', '9216'), timeout=4)"]
STOPSIGNAL SIGTERM
ENTRYPOINT ["/app/.venv/bin/argon"]
CMD ["serve"]
