#!/bin/sh
# One-shot initialisation for deploy/docker-compose.yml (runs in the `init` service).
#
# Creates, once: a tenant token key, five node directories (each on its own volume), a
# coordinator directory and the signed manifest. Re-running it is a no-op, so
# `docker compose up` after a restart keeps every key, node id and user.
#
# Custody: the operator key signs manifests and stays in the `keys` volume; in production keep
# it offline. The tenant key is copied to /out only because this is a development stack: in
# production it lives in the tenant's backend, which mints tokens after its own login.
set -eu

NODES=5
THRESHOLD="${PAKR_THRESHOLD:-3}"
TENANT="${PAKR_TENANT:-demo}"
ADVERTISE="${PAKR_ADVERTISE_HOST:-127.0.0.1}"
DATA="${PAKR_DATA_ROOT:-/var/lib/pakr}"
KEYS="$DATA/keys"
OUT="${PAKR_OUT:-/out}"

if [ -f "$OUT/manifest.json" ]; then
  echo "pakr init: already initialised; manifest at $OUT/manifest.json"
  exit 0
fi

umask 077
[ -f "$KEYS/operator.key" ] || pakr manifest keygen "$KEYS/operator.key" >/dev/null
[ -f "$KEYS/$TENANT.key" ] || pakr tenant create "$TENANT" --dir "$KEYS" >/dev/null 2>&1
pubkey() { python -c 'import json,sys; print(json.load(open(sys.argv[1]))["public_key"])' "$1"; }
KID="$TENANT:1"
PUB="$(pubkey "$KEYS/$TENANT.key")"
# The coordinator's canary probe gets its own tenant: its key can mint tokens for that tenant
# only, so a compromised coordinator cannot spend the guesses of real users.
coord="$DATA/coordinator"
[ -f "$coord/canary.key" ] || pakr tenant create canary --dir "$coord" >/dev/null 2>&1
CANARY_PUB="$(pubkey "$coord/canary.key")"

configs=""
addresses=""
i=1
while [ "$i" -le "$NODES" ]; do
  dir="$DATA/node$i"
  if [ ! -f "$dir/node.toml" ]; then
    pakr node init --dir "$dir" --index "$i" --listen "0.0.0.0:700$i" \
      --metrics-listen "0.0.0.0:910$i" --tenant "$KID=$PUB" \
      --tenant "canary:1=$CANARY_PUB" >/dev/null
  fi
  configs="$configs $dir/node.toml"
  addresses="$addresses --address $i=$ADVERTISE:700$i"
  i=$((i + 1))
done

# shellcheck disable=SC2086 # word splitting of the lists is intended
pakr manifest create --operator-key "$KEYS/operator.key" --node-config $configs \
  --threshold "$THRESHOLD" $addresses --out "$OUT/manifest.json.new" >/dev/null

[ -f "$coord/coordinator.toml" ] || pakr coordinator init --dir "$coord" --listen 127.0.0.1:7000 \
  --manifest "$OUT/manifest.json" --canary-key "$coord/canary.key" \
  --metrics-listen 127.0.0.1:9100 --host "$ADVERTISE" >/dev/null

umask 022
cp "$KEYS/$TENANT.key" "$OUT/$TENANT.key"
chmod 0600 "$OUT/$TENANT.key"
cp "$coord/tls/coordinator.crt" "$OUT/coordinator.crt"
chmod 0644 "$OUT/manifest.json.new" "$OUT/coordinator.crt"
mv "$OUT/manifest.json.new" "$OUT/manifest.json"
echo "pakr init: $THRESHOLD-of-$NODES cluster initialised; manifest at $OUT/manifest.json"
echo "pakr init: operator public key (pin it in clients): $(pubkey "$KEYS/operator.key")"
