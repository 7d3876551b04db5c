#!/bin/sh
# With no arguments: apply pending migrations, then serve the app. Migrations are
# transactional: a failed upgrade leaves the schema as it was and the container stops.
# With arguments, run them instead (for example `flask jobs worker`), without migrating.
set -eu
if [ "$#" -gt 0 ]; then
    exec "$@"
fi
flask db upgrade
exec gunicorn \
    --bind "0.0.0.0:${PORT:-8000}" \
    --workers "${WEB_CONCURRENCY:-3}" \
    --threads "${GUNICORN_THREADS:-4}" \
    --access-logfile - \
    --forwarded-allow-ips "${FORWARDED_ALLOW_IPS:-127.0.0.1}" \
    wsgi:app
