#!/usr/bin/env bash
# Runs a Kafka main class on the image's jars, as Kafka's own script of this name.
set -euo pipefail
exec java ${KAFKA_HEAP_OPTS:--Xmx256m} -XX:+UseG1GC -Djava.awt.headless=true \
  -Dlog4j.configuration=file:/opt/kafka/config/log4j.properties \
  -cp '/opt/kafka/libs/*' "$@"
