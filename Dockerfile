# Production image: gunicorn serving wsgi:app, migrations applied at start, non-root.
# Configure with DATABASE_URL, REDIS_URL and SECRET_KEY (see README).
FROM python:3.11-slim-bookworm

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

# WeasyPrint's system libraries (PDF receipts and reports) and fonts.
RUN apt-get update \
 && apt-get install -y --no-install-recommends \
      libpango-1.0-0 libpangoft2-1.0-0 libharfbuzz0b libharfbuzz-subset0 \
      libjpeg62-turbo libopenjp2-7 libffi8 shared-mime-info fonts-dejavu-core \
 && rm -rf /var/lib/apt/lists/*

RUN useradd --system --create-home --home-dir /home/portal --uid 10001 portal
WORKDIR /app

# Dependencies first, so code changes do not reinstall them.
COPY pyproject.toml README.md ./
RUN mkdir -p portal amply_verify && touch portal/__init__.py amply_verify/__init__.py \
 && pip install -e . && rm -rf portal amply_verify

COPY portal ./portal
COPY amply_verify ./amply_verify
COPY templates ./templates
COPY static ./static
COPY migrations ./migrations
COPY wsgi.py docker-entrypoint.sh ./

RUN mkdir -p /app/instance && chown portal:portal /app/instance
USER portal

ENV PORTAL_ENV=production \
    FLASK_APP=wsgi \
    INSTANCE_PATH=/app/instance \
    PORT=8000
EXPOSE 8000
HEALTHCHECK --interval=30s --timeout=5s \
  CMD python -c "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/healthz')"

ENTRYPOINT ["/app/docker-entrypoint.sh"]
