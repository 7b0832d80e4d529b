#!/usr/bin/env bash
# `make deploy-test`: build the image of deploy/Dockerfile and run deploy/docker-compose.yml as
# written on this machine, then drive it from the host (tests/deploy_live). Needs root.
#
#  1. installs what is missing from Debian's packages: docker.io, debootstrap, a Compose
#     implementation (the v2 plugin when present, else Debian's docker-compose);
#  2. starts a dockerd (vfs storage driver) only when none answers, and stops the one it started;
#  3. uses the Dockerfile's default base image (PYTHON_IMAGE) when present or pullable, else a
#     stand-in made from Debian's packages (debootstrap + Debian's python3 in a virtualenv),
#     kept in the daemon between runs;
#  4. builds the pakr image from the locked wheels, fetched on the host into deploy/wheelhouse/
#     (an offline build: no package index is contacted from inside the build);
#  5. runs the live tests: Compose cluster up, register/recover, kill a node, recover with n-1,
#     restart it, process/filesystem/volume checks, layer scan, teardown with volumes.
# Every step is bounded; figures go to build/deploy-test/report.json and the end of the output.
set -euo pipefail
cd "$(dirname "$0")/.."

VENV_PY=${VENV_PY:-.venv/bin/python}
IMAGE=${PAKR_DEPLOY_IMAGE:-pakr:latest}
OUT=build/deploy-test
REPORT=$OUT/report.json
# Bump the version when the stand-in recipe below changes (the tag is the cache key).
STANDIN=pakr-python-standin:3.11-bookworm-2
OFFICIAL=$(sed -n 's/^ARG PYTHON_IMAGE=//p' deploy/Dockerfile)
PORTS="7000 7001 7002 7003 7004 7005 9100 9101 9102 9103 9104 9105"

log() { printf 'deploy-test: %s\n' "$*" >&2; }
die() { log "$*"; exit 1; }
now() { date +%s.%N; }
since() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.1f", b - a }'; }
figure() {  # figure KEY VALUE: add to the JSON report
  "$VENV_PY" - "$REPORT" "$1" "$2" <<'EOF'
import json, sys, pathlib
path = pathlib.Path(sys.argv[1])
data = json.loads(path.read_text()) if path.exists() else {}
value = sys.argv[3]
try:
    value = float(value)
except ValueError:
    pass
data[sys.argv[2]] = value
path.write_text(json.dumps(data, indent=2) + "\n")
EOF
}

[ "$(id -u)" = 0 ] || die "needs root (apt-get, dockerd); run it as root or in CI"
[ -x "$VENV_PY" ] || die "no $VENV_PY: run 'make venv' first"
mkdir -p "$OUT"
rm -f "$REPORT"

# -- 1. tools ------------------------------------------------------------------------------------
missing=()
command -v dockerd >/dev/null 2>&1 || missing+=(docker.io)
command -v debootstrap >/dev/null 2>&1 || missing+=(debootstrap)
if ! docker compose version >/dev/null 2>&1 && ! command -v docker-compose >/dev/null 2>&1; then
  missing+=(docker-compose)
fi
if [ ${#missing[@]} -gt 0 ]; then
  log "installing ${missing[*]} from Debian's packages"
  timeout 300 apt-get update -qq
  DEBIAN_FRONTEND=noninteractive timeout 600 apt-get install -y -qq --no-install-recommends \
    "${missing[@]}" >"$OUT/apt.log" 2>&1 || { tail -20 "$OUT/apt.log"; die "apt-get failed"; }
fi
if docker compose version >/dev/null 2>&1; then
  export PAKR_COMPOSE="docker compose"
else
  export PAKR_COMPOSE="docker-compose"
fi

# -- 2. daemon -----------------------------------------------------------------------------------
started_pid=""
compose_down() {
  $PAKR_COMPOSE -p pakr-deploy-test -f deploy/docker-compose.yml down --volumes \
    --remove-orphans --timeout 20 >/dev/null 2>&1 || true
}
cleanup() {
  status=$?
  trap - EXIT INT TERM
  if [ -n "$started_pid" ]; then
    compose_down  # normally done by the tests already; this covers an interrupted run
    log "stopping the dockerd this run started (pid $started_pid)"
    kill -TERM "$started_pid" 2>/dev/null || true
    for _ in $(seq 60); do kill -0 "$started_pid" 2>/dev/null || break; sleep 1; done
    kill -0 "$started_pid" 2>/dev/null && kill -KILL "$started_pid" 2>/dev/null || true
  fi
  exit "$status"
}
trap cleanup EXIT
trap 'exit 143' INT TERM

if ! timeout 20 docker info >/dev/null 2>&1; then
  log "no Docker daemon answers: starting dockerd (vfs storage driver)"
  # Its own session: a timeout signalling this script's process group must not kill it before
  # cleanup has taken the cluster down.
  setsid dockerd --storage-driver=vfs >"$OUT/dockerd.log" 2>&1 </dev/null &
  started_pid=$!
  for _ in $(seq 60); do timeout 5 docker info >/dev/null 2>&1 && break; sleep 1; done
  timeout 20 docker info >/dev/null 2>&1 || { tail -20 "$OUT/dockerd.log"; die "dockerd did not start"; }
fi
figure "docker server version" "$(docker version --format '{{.Server.Version}}')"
figure "compose" "$($PAKR_COMPOSE version 2>/dev/null | head -1)"

for port in $PORTS; do
  if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
    compose_down
    (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null &&
      die "127.0.0.1:$port is in use: deploy/docker-compose.yml publishes 7000-7005 and 9100-9105"
  fi
done

# -- 3. base image -------------------------------------------------------------------------------
debian_mirror() {
  local uri
  uri=$(sed -n 's/^URIs: *\([^ ]*debian\/*\)$/\1/p' /etc/apt/sources.list.d/*.sources 2>/dev/null | head -1)
  [ -n "$uri" ] || uri=$(awk '$1 == "deb" && $2 ~ /debian\/?$/ { print $2; exit }' \
    /etc/apt/sources.list /etc/apt/sources.list.d/*.list 2>/dev/null)
  echo "${uri:-http://deb.debian.org/debian}"
}

build_standin() {
  # A stand-in for python:3.11-slim-bookworm: Debian bookworm (minbase) with Debian's
  # python3 (3.11). Debian marks its Python externally managed (PEP 668), so pip works in a
  # virtualenv at /opt/python, first on PATH, as pip and python do in the official image.
  local root mirror
  root=$(mktemp -d /tmp/pakr-standin.XXXXXX)
  chmod 0755 "$root"  # the image's / (mktemp makes it 0700: no one but root could run anything)
  mirror=$(debian_mirror)
  log "building $STANDIN with debootstrap from $mirror"
  timeout 600 debootstrap --variant=minbase --include=python3,python3-venv,ca-certificates \
    bookworm "$root" "$mirror" >"$OUT/debootstrap.log" 2>&1 ||
    { tail -20 "$OUT/debootstrap.log"; rm -rf "$root"; die "debootstrap failed"; }
  timeout 120 chroot "$root" /usr/bin/python3 -m venv /opt/python
  rm -rf "$root"/usr/share/doc/* "$root"/usr/share/man/* "$root"/usr/share/info/* \
    "$root"/var/cache/apt/*.bin "$root"/var/lib/apt/lists/* "$root"/var/log/*.log
  find "$root/usr/share/locale" -mindepth 1 -maxdepth 1 ! -name locale.alias -exec rm -rf {} +
  tar -C "$root" -c . | timeout 300 docker import \
    --change 'ENV PATH=/opt/python/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
    --change 'ENV LANG=C.UTF-8' --change 'CMD ["python3"]' - "$STANDIN" >/dev/null
  rm -rf "$root"
  timeout 300 docker run --rm --user 10001:10001 "$STANDIN" python -c 'import ssl, venv' ||
    die "the stand-in base image does not run Python as an unprivileged user"
  # Earlier stand-ins (other recipe versions) only take disk space.
  docker images --format '{{.Repository}}:{{.Tag}}' "${STANDIN%%:*}" | grep -vx "$STANDIN" |
    xargs -r docker rmi >/dev/null 2>&1 || true
}

base=$OFFICIAL
if ! docker image inspect "$OFFICIAL" >/dev/null 2>&1; then
  if timeout 120 docker pull "$OFFICIAL" >"$OUT/pull.log" 2>&1; then
    log "pulled $OFFICIAL"
  else
    log "$OFFICIAL cannot be pulled ($(tail -1 "$OUT/pull.log")); using $STANDIN"
    base=$STANDIN
    if docker image inspect "$STANDIN" >/dev/null 2>&1; then
      figure "base image" "$STANDIN (cached)"
    else
      t0=$(now)
      build_standin
      figure "base image" "$STANDIN (built)"
      figure "stand-in base image build, s" "$(since "$t0")"
    fi
  fi
fi
[ "$base" = "$OFFICIAL" ] && figure "base image" "$OFFICIAL"

# -- 4. the pakr image ---------------------------------------------------------------------------
log "fetching the locked wheels into deploy/wheelhouse (hash-checked)"
mkdir -p deploy/wheelhouse
timeout 600 "$VENV_PY" -m pip download --quiet --require-hashes --only-binary=:all: --no-deps \
  --dest deploy/wheelhouse -r deploy/requirements.lock -r deploy/requirements-build.lock

log "building $IMAGE on $base"
t0=$(now)
timeout 1500 docker build --file deploy/Dockerfile --build-arg "PYTHON_IMAGE=$base" \
  --build-arg PIP_OFFLINE=1 --tag "$IMAGE" . >"$OUT/build.log" 2>&1 ||
  { tail -40 "$OUT/build.log"; die "docker build failed (log: $OUT/build.log)"; }
cached=$(grep -c -- '---> Using cache' "$OUT/build.log" || true)
figure "image build, s" "$(since "$t0")"
figure "image build steps taken from the cache" "$cached"
# Earlier builds of the image, now untagged, would fill the disk (vfs stores full copies).
docker image prune --force --filter "label=org.opencontainers.image.title=pakr" >/dev/null || true

# -- 5. the live tests ---------------------------------------------------------------------------
log "running tests/deploy_live against $IMAGE"
PAKR_DEPLOY_TEST=1 PAKR_DEPLOY_IMAGE=$IMAGE PAKR_DEPLOY_BASE=$base PAKR_DEPLOY_REPORT=$REPORT \
  timeout 1200 .venv/bin/pytest -q -p no:cacheprovider tests/deploy_live
