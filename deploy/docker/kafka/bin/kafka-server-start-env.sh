#!/usr/bin/env bash
# Starts one KRaft node configured from the environment, as apache/kafka does:
# KAFKA_FOO_BAR=x becomes foo.bar=x (`__` -> `_`, `___` -> `-`); CLUSTER_ID
# formats the storage on first start. KAFKA_HEAP_OPTS is the JVM's heap.
set -euo pipefail
conf=/opt/kafka/config/server.properties
: > "$conf"
while IFS='=' read -r name value; do
  case "$name" in
    KAFKA_HEAP_OPTS|KAFKA_OPTS|KAFKA_JVM_PERFORMANCE_OPTS|KAFKA_LOG4J_OPTS) continue ;;
    KAFKA_*) ;;
    *) continue ;;
  esac
  key=${name#KAFKA_}
  key=${key,,}
  key=${key//___/-}
  key=${key//__/@}
  key=${key//_/.}
  key=${key//@/_}
  printf '%s=%s\n' "$key" "$value" >> "$conf"
done < <(env)
: "${CLUSTER_ID:?CLUSTER_ID is not set (any 16-byte base64url id)}"
/opt/kafka/bin/kafka-run-class.sh kafka.tools.StorageTool format -t "$CLUSTER_ID" -c "$conf" --ignore-formatted
exec /opt/kafka/bin/kafka-run-class.sh kafka.Kafka "$conf"
