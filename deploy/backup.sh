#!/usr/bin/env bash
# Back up provisioner's PostgreSQL database (custom format, restorable with pg_restore).
# Usage: deploy/backup.sh /var/backups/provisioner     (reads DATABASE_URL from the environment)
set -euo pipefail
dest=${1:?backup directory}
: "${DATABASE_URL:?set DATABASE_URL (source /etc/provisioner/provisioner.env)}"
mkdir -p "$dest"
file="$dest/provisioner-$(date -u +%Y%m%dT%H%M%SZ).dump"
pg_dump --format=custom --no-owner --dbname="$DATABASE_URL" --file="$file.partial"
mv "$file.partial" "$file"
echo "$file"
