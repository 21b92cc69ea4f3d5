# The calltracker server image; docker-compose.yml runs it beside PostgreSQL, Redis and
# Asterisk (README.md, "Production").
FROM python:3.11-slim

# ffmpeg: pydub converts call recordings to MP3 with it.
RUN apt-get update \
    && apt-get install -y --no-install-recommends ffmpeg \
    && rm -rf /var/lib/apt/lists/*

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /app

# Dependencies in their own layer: a code change rebuilds only the layers below.
COPY pyproject.toml ./
RUN python -c "import tomllib; print('\n'.join(tomllib.load(open('pyproject.toml', 'rb'))['project']['dependencies']))" > /tmp/requirements.txt \
    && pip install -r /tmp/requirements.txt

# Editable, from the copied repo: migrations/ and widget/ are found beside the package.
COPY . .
RUN pip install --no-deps -e . \
    && useradd --system --uid 10001 --home-dir /app calltracker \
    && mkdir -p /data/recordings \
    && chown calltracker /data/recordings

USER calltracker
ENV CALLTRACKER_HOST=0.0.0.0 \
    CALLTRACKER_RECORDINGS_DIR=/data/recordings
EXPOSE 8080 4573
HEALTHCHECK --interval=10s --timeout=5s --start-period=30s --retries=3 \
    CMD ["python", "-c", "import sys, urllib.request; sys.exit(urllib.request.urlopen('http://127.0.0.1:8080/healthz', timeout=4).status != 200)"]
# Migrates once, then runs the workers (calltracker/workers.py).
CMD ["calltracker", "serve", "--host", "0.0.0.0", "--workers", "4"]
