#!/bin/sh
# One-time set-up of the Compose stack (deploy/docker-compose.yml):
#   1. deploy/.env with random passwords (PostgreSQL, Redis, the smoke-test client secret),
#      readable only by you; kept if it already exists;
#   2. both images built from deploy/Dockerfile;
#   3. the first RS256 signing key in the gateway-keys volume, when .env was just created.
# Afterwards: `docker compose up -d` in deploy/.
set -eu

cd "$(dirname "$0")/.."

random_hex() {
    # 24 random bytes as hex: safe inside URLs without escaping.
    od -An -N24 -tx1 /dev/urandom | tr -d ' \n'
}

new_env=no
if [ ! -f .env ]; then
    umask 077
    cat > .env <<ENV
# Written by deploy/compose/init.sh. Secrets for the Compose stack; never commit this file.
SSO_POSTGRES_PASSWORD=$(random_hex)
SSO_REDIS_PASSWORD=$(random_hex)
SSO_SMOKE_CLIENT_SECRET=$(random_hex)
ENV
    new_env=yes
    echo "wrote deploy/.env"
fi

docker compose build

if [ "$new_env" = yes ]; then
    docker compose --profile tools run --rm keygen
else
    echo "deploy/.env existed: no new signing key generated."
    echo "If the gateway-keys volume is empty (after 'docker compose down -v'), run:"
    echo "  docker compose --profile tools run --rm keygen"
fi

echo "ready: docker compose up -d"
