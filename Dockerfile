# The calltracker server image; docker-compose.yml runs it beside PostgreSQL, Redis and
# Asterisk (README.md, "Production").

# Build the wheel from the tree: the image runs the installed package, not the checkout.
FROM python:3.11-slim AS wheel
WORKDIR /src
COPY . .
RUN pip wheel --no-cache-dir --no-deps -w /wheels .

FROM python:3.11-slim

# ffmpeg: pydub converts call recordings to MP3 with it.
RUN apt-get update \
    && apt-get install -y --no-install-recommends ffmpeg \
    && rm -rf /var/lib/apt/lists/*

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

# Dependencies in their own layer: a code change rebuilds only the layers below.
COPY pyproject.toml /tmp/
RUN python -c "import tomllib; print('\n'.join(tomllib.load(open('/tmp/pyproject.toml', 'rb'))['project']['dependencies']))" > /tmp/requirements.txt \
    && pip install -r /tmp/requirements.txt

# The wheel carries the widget, the migrations, templates and static files.
COPY --from=wheel /wheels /wheels
RUN pip install --no-deps /wheels/*.whl \
    && rm -rf /wheels \
    && useradd --system --uid 10001 --home-dir /data calltracker \
    && mkdir -p /data/recordings \
    && chown -R calltracker /data

USER calltracker
WORKDIR /data
ENV CALLTRACKER_HOST=0.0.0.0 \
    CALLTRACKER_RECORDINGS_DIR=/data/recordings
EXPOSE 8080 4573
HEALTHCHECK --interval=10s --timeout=5s --start-period=30s --retries=3 \
    CMD ["python", "-c", "import sys, urllib.request; sys.exit(urllib.request.urlopen('http://127.0.0.1:8080/healthz', timeout=4).status != 200)"]
# Migrates once, then runs the workers (calltracker/web/server.py).
CMD ["calltracker", "serve", "--host", "0.0.0.0", "--workers", "4"]
