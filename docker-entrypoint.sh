#!/bin/sh
# Apply pending migrations, then serve the app. Migrations are transactional: a
# failed upgrade leaves the schema as it was and the container stops.
set -eu
flask db upgrade
exec gunicorn \
    --bind "0.0.0.0:${PORT:-8000}" \
    --workers "${WEB_CONCURRENCY:-3}" \
    --threads "${GUNICORN_THREADS:-4}" \
    --access-logfile - \
    --forwarded-allow-ips "${FORWARDED_ALLOW_IPS:-127.0.0.1}" \
    wsgi:app
