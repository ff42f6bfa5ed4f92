#!/usr/bin/env bash
# The docker-compose stack (deploy/docker-compose.yml) with Docker or Podman,
# whichever is present: build the images, start the services in dependency
# order, wait until each is healthy, run the compose tests, tear down.
#
#   deploy/compose/stack.sh build|up|test|down|ps|logs [service]
#
# Images (STACK_IMAGES): `official` pulls apache/kafka, redis,
# prom/prometheus and grafana/grafana (the default with Docker); `local` builds
# Kafka, Redis and Prometheus from Debian packages and the official Kafka jars
# on a Debian base made here (the default with Podman, for machines without a
# registry; deploy/compose/podman-setup.sh). Grafana is not packaged by Debian:
# with local images it is left out. The worker is always built from
# deploy/docker/Dockerfile.cpu.
#
# Why start in steps rather than one `up`: podman-compose ignores
# `depends_on: condition`, and Podman runs health checks only from systemd
# timers, which a container or CI machine may not have; this script runs them.
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
cd "$root"
compose_file=deploy/docker-compose.yml
project=${STACK_PROJECT:-vitrine}
python=${PYTHON:-.venv/bin/python}
kafka_version=${STACK_KAFKA_VERSION:-3.9.1}
health_timeout_s=${STACK_HEALTH_TIMEOUT_S:-180}

log() { echo "compose: $*" >&2; }
die() { log "$*"; exit 1; }

engine=${CONTAINER_ENGINE:-}
if [ -z "$engine" ]; then
  if command -v docker >/dev/null && docker info >/dev/null 2>&1; then
    engine=docker
  elif command -v podman >/dev/null || command -v apt-get >/dev/null; then
    engine=podman
  else
    die "neither a Docker daemon nor Podman found; install one (deploy/README.md)"
  fi
fi
images=${STACK_IMAGES:-$([ "$engine" = podman ] && echo local || echo official)}

if [ "$engine" = podman ]; then
  bash deploy/compose/podman-setup.sh >&2
  export CONTAINERS_CONF="$root/deploy/compose/containers.conf"
  compose=(podman-compose -p "$project" -f "$compose_file")
else
  compose=(docker compose -p "$project" -f "$compose_file")
fi

if [ "$images" = local ]; then
  base=${STACK_BASE_IMAGE:-localhost/debian:bookworm}
  export KAFKA_IMAGE=localhost/vitrine-kafka:$kafka_version
  export REDIS_IMAGE=localhost/vitrine-redis:7
  export PROMETHEUS_IMAGE=localhost/vitrine-prometheus:2
  services=(worker prometheus)
else
  services=(worker prometheus grafana)
fi

# A compose command with its chatter (podman-compose echoes every podman call
# and the errors of ones it need not have made) in build/compose/compose.log;
# the log goes to stderr when the command fails.
compose_log=build/compose/compose.log
run_compose() {
  mkdir -p "$(dirname "$compose_log")"
  "${compose[@]}" "$@" >>"$compose_log" 2>&1 || { tail -n 50 "$compose_log" >&2; return 1; }
}

# The one container of a compose service (both tools label them alike).
container() {
  $engine ps -a -q --filter "label=com.docker.compose.project=$project" \
    --filter "label=com.docker.compose.service=$1" | head -n 1
}

# Blocks until the service's health check passes; fails (with its logs) if the
# container exits or the timeout passes.
wait_healthy() {
  local svc=$1 id state t0=$SECONDS
  id=$(container "$svc")
  [ -n "$id" ] || die "no container for service $svc"
  while true; do
    state=$($engine inspect --format '{{.State.Status}}' "$id")
    if [ "$state" = exited ]; then
      $engine logs --tail 50 "$id" >&2 || true
      die "$svc exited"
    fi
    if [ "$engine" = podman ]; then
      podman healthcheck run "$id" >/dev/null 2>&1 && break
    else
      [ "$($engine inspect --format '{{.State.Health.Status}}' "$id")" = healthy ] && break
    fi
    if ((SECONDS - t0 > health_timeout_s)); then
      $engine logs --tail 50 "$id" >&2 || true
      die "$svc not healthy after ${health_timeout_s} s"
    fi
    sleep 1
  done
  log "$svc healthy after $((SECONDS - t0)) s"
}

# Blocks until a one-shot service exits; fails unless it exits 0.
wait_done() {
  local svc=$1 id rc
  id=$(container "$svc")
  [ -n "$id" ] || die "no container for service $svc"
  rc=$($engine wait "$id" | tail -n 1)
  [ "$rc" = 0 ] || { $engine logs "$id" >&2; die "$svc exited $rc"; }
}

kafka_context() {
  # The native stack's jars (deploy/local/pom.xml) plus kafka-tools for
  # kafka-topics.sh, in a build context of their own.
  local libs tools ctx=build/compose/kafka
  libs=$("$python" -c "from streams.settings import get_settings; from streams.tools.stack import resolve_kafka_jars; print(resolve_kafka_jars(get_settings().state_dir, '$kafka_version'))")
  tools="$(dirname "$libs")/../kafka-tools/$kafka_version"
  if [ ! -f "$tools/kafka-tools-$kafka_version.jar" ]; then
    log "resolving org.apache.kafka:kafka-tools:$kafka_version with Maven"
    mvn -B -q dependency:copy -Dartifact="org.apache.kafka:kafka-tools:$kafka_version:jar" \
      -DoutputDirectory="$tools" >&2
  fi
  rm -rf "$ctx" && mkdir -p "$ctx/libs"
  cp "$libs"/*.jar "$tools/kafka-tools-$kafka_version.jar" "$ctx/libs/"
  cp -r deploy/docker/kafka/. "$ctx/"
  echo "$ctx"
}

# Kafka, Redis and Prometheus from the Debian base (apt, the jars).
build_infra() {
  local t0=$SECONDS b
  # Docker's image format: OCI has no HEALTHCHECK.
  b=(podman build -q --format docker --build-arg "BASE_IMAGE=$base")
  [ "$engine" = docker ] && b=(docker build -q --build-arg "BASE_IMAGE=$base")
  "${b[@]}" -f deploy/docker/Dockerfile.redis -t "$REDIS_IMAGE" deploy/docker >/dev/null
  "${b[@]}" -f deploy/docker/Dockerfile.prometheus -t "$PROMETHEUS_IMAGE" deploy/docker >/dev/null
  "${b[@]}" -f deploy/docker/Dockerfile.kafka -t "$KAFKA_IMAGE" "$(kafka_context)" >/dev/null
  log "Kafka, Redis, Prometheus images built in $((SECONDS - t0)) s"
}

build_base() {
  [ "$images" = local ] || return 0
  local b=(podman build -q --format docker)
  [ "$engine" = docker ] && b=(docker build -q)
  "${b[@]}" --build-arg "BASE_IMAGE=$base" \
    -f deploy/docker/Dockerfile.python -t localhost/vitrine-python:3.11 deploy/docker >/dev/null
}

# A digest of the files the worker image installs (tracked and untracked, not
# ignored): the Dockerfile bind-mounts the tree, whose content no build cache
# keys on, so this is what makes a changed tree rebuild the project's layer.
source_digest() {
  { git ls-files -z -co --exclude-standard 2>/dev/null | xargs -0 -r sha256sum 2>/dev/null; } \
    | sha256sum | cut -c1-16
}

build_worker() {
  local t0=$SECONDS worker_args=()
  worker_args=(--build-arg "SOURCE_DIGEST=$(source_digest)")
  [ "$images" = local ] && worker_args+=(--build-arg PYTHON_IMAGE=localhost/vitrine-python:3.11)
  if [ "$engine" = podman ]; then
    # pip in the build trusts what the host trusts (a proxy's CA, say); the
    # bundle is mounted for the build only, never copied into the image.
    local ca=${PIP_CERT:-/etc/ssl/certs/ca-certificates.crt}
    if [ -f "$ca" ]; then
      worker_args+=(-v "$ca:/etc/vitrine-build-ca.crt:ro,z" --build-arg PIP_CERT=/etc/vitrine-build-ca.crt)
    fi
    podman build -q --format docker "${worker_args[@]}" \
      --ignorefile deploy/docker/Dockerfile.cpu.dockerignore \
      -f deploy/docker/Dockerfile.cpu -t vitrine:cpu . >/dev/null
  else
    docker build -q "${worker_args[@]}" -f deploy/docker/Dockerfile.cpu -t vitrine:cpu . >/dev/null
  fi
  log "worker image built in $((SECONDS - t0)) s"
}

# Kafka and Redis up and healthy, the topics created.
start_infra() {
  run_compose up -d --no-build kafka redis
  wait_healthy kafka
  wait_healthy redis
  run_compose up -d --no-deps --no-build kafka-init
  wait_done kafka-init
}

# The worker's build waits on PyPI and pip most of its time: the other images
# are built (and, for `up`, Kafka and Redis started) beside it.
build() {
  local t0=$SECONDS then=${1:-} pid
  build_base
  (
    if [ "$images" = local ]; then build_infra; fi
    if [ -n "$then" ]; then "$then"; fi
  ) &
  pid=$!
  build_worker
  wait "$pid" || die "building the Kafka, Redis or Prometheus image (or starting them) failed"
  log "images built in $((SECONDS - t0)) s"
}

up() {
  local t0=$SECONDS
  build start_infra
  local t1=$SECONDS
  run_compose up -d --no-deps --no-build "${services[@]}"
  wait_healthy worker
  wait_healthy prometheus
  log "stack up: healthy $((SECONDS - t1)) s after the worker image, $((SECONDS - t0)) s in all"
}

down() {
  run_compose down -v || true
  if [ "$engine" = podman ]; then
    # podman-compose 1.0.3 leaves the project's network behind.
    podman network rm -f "${project}_default" >/dev/null 2>&1 || true
  fi
}

# Kubernetes schemas, offline, for tests/compose/test_k8s_images.py: kept out
# of the project's venv (it brings its own PyYAML, jsonschema, ...).
install_pylib() {
  local pylib=build/compose/pylib
  if [ ! -d "$pylib/kubernetes_validate" ]; then
    "$python" -m pip install -q --target "$pylib" 'kubernetes-validate>=1.30,<2'
  fi
}

run_tests() {
  local rc=0 c
  CONTAINER_ENGINE=$engine STACK_PROJECT=$project \
    "$python" -m pytest -p no:cacheprovider -m compose tests/compose "$@" || rc=$?
  if [ $rc -ne 0 ]; then
    # The stack goes down on exit: keep the worker's log for the report.
    for c in $("$engine" ps -a -q --filter "label=com.docker.compose.project=$project" \
                 --filter "label=com.docker.compose.service=worker"); do
      echo "compose: the worker's log ($c), last 400 lines:"
      "$engine" logs --tail 400 "$c" 2>&1 || true
    done
  fi
  return $rc
}

cmd=${1:-up}
shift || true
case "$cmd" in
  build) build ;;
  up) up ;;
  down) down ;;
  test)
    trap down EXIT
    install_pylib &
    pylib_pid=$!
    up
    wait "$pylib_pid" || die "installing kubernetes-validate failed"
    run_tests "$@"
    ;;
  ps) "${compose[@]}" ps ;;
  logs) "${compose[@]}" logs "$@" ;;
  *) die "usage: $0 build|up|test|down|ps|logs" ;;
esac
