# Argon proxy. Without ARGON_UPSTREAM it runs the embedded SecantusDB in /data.
FROM python:3.11-slim
WORKDIR /app
COPY requirements ./requirements
RUN python -m venv /app/.venv \
 && /app/.venv/bin/pip install --no-cache-dir -r requirements/dev.lock \
 && python -m venv /app/.venv-upstream \
 && /app/.venv-upstream/bin/pip install --no-cache-dir -r requirements/upstream.lock
COPY pyproject.toml README.md ./
COPY wire ./wire
COPY argon_proxy ./argon_proxy
COPY config ./config
RUN /app/.venv/bin/pip install --no-cache-dir --no-deps .
ENV ARGON_HOST=0.0.0.0 \
    ARGON_METRICS_HOST=0.0.0.0 \
    ARGON_DATA_DIR=/data \
    ARGON_EMBEDDED_COMMAND=/app/.venv-upstream/bin/secantusd-py
VOLUME /data
EXPOSE 27018 9216
STOPSIGNAL SIGTERM
ENTRYPOINT ["/app/.venv/bin/argon"]
CMD ["serve"]
