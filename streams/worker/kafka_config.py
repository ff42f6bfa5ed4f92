"""The worker's Kafka client configuration, from the settings.

:func:`faust_credentials` for Faust's own clients, :func:`aiokafka_config` for
the order consumer (:mod:`streams.worker.batchconsumer`), both with the same
TLS context (:func:`ssl_context`) and SASL keywords (:func:`sasl_config`, which
the kafka-python clients of the tools use too). :func:`group_membership` adds
the group settings (session timeout, heartbeat, static instance id) for a
consumer that joins a group, the same as Faust's consumer gets.

:func:`check_kafka_access` is run before any client starts, by the worker and
by the tools, on a secured cluster. Without it a wrong SASL password or an
untrusted broker certificate shows as aiokafka's "Unable to bootstrap" (the
reason only in a log line before it) and, in kafka-python, as a 30 s timeout
with no reason at all; with it, both fail in well under a second with a
message that names the setting to fix.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
from typing import Any

import faust
from aiokafka import errors as aiokafka_errors
from aiokafka.conn import create_conn

from streams.settings import Settings

__all__ = [
    "KafkaAccessError",
    "aiokafka_config",
    "check_kafka_access",
    "check_kafka_access_sync",
    "faust_credentials",
    "group_membership",
    "sasl_config",
    "ssl_context",
]

logger = logging.getLogger(__name__)


class KafkaAccessError(RuntimeError):
    """The brokers refused this client's credentials or were not trusted: retrying cannot help."""


def sasl_config(settings: Settings) -> dict[str, Any]:
    """SASL mechanism and credentials, the same keywords in kafka-python and aiokafka."""
    if not settings.kafka.security_protocol.startswith("SASL"):
        return {}
    return {
        "sasl_mechanism": settings.kafka.sasl_mechanism,
        "sasl_plain_username": settings.kafka.sasl_username,
        "sasl_plain_password": settings.kafka.sasl_password.get_secret_value(),
    }


def ssl_context(settings: Settings) -> ssl.SSLContext | None:
    """The TLS context for SSL and SASL_SSL (CA, and a client certificate if set)."""
    if settings.kafka.security_protocol not in ("SSL", "SASL_SSL"):
        return None
    cafile = str(settings.kafka.ssl_cafile) if settings.kafka.ssl_cafile else None
    context = ssl.create_default_context(cafile=cafile)
    if settings.kafka.ssl_certfile:
        context.load_cert_chain(
            str(settings.kafka.ssl_certfile),
            str(settings.kafka.ssl_keyfile) if settings.kafka.ssl_keyfile else None,
        )
    return context


def aiokafka_config(settings: Settings) -> dict[str, Any]:
    """Keyword arguments for an aiokafka client: brokers, security, message size."""
    conf: dict[str, Any] = {
        "bootstrap_servers": list(settings.kafka.brokers),
        "client_id": settings.kafka.app_id,
        "security_protocol": settings.kafka.security_protocol,
        "ssl_context": ssl_context(settings),
        "max_partition_fetch_bytes": settings.kafka.max_message_bytes + 64 * 1024,
        "fetch_max_wait_ms": settings.kafka.fetch_max_wait_ms,
    }
    conf.update(sasl_config(settings))
    return conf


def group_membership(settings: Settings) -> dict[str, Any]:
    """Keywords of an aiokafka consumer in a group: session, heartbeat, static instance id.

    aiokafka 0.14 sends ``group_instance_id`` in JoinGroup (v5) and SyncGroup
    (v3), so a member started again with the same id is handed its partitions
    back without a rebalance; with an id it also sends no LeaveGroup on stop.
    """
    return {
        "session_timeout_ms": settings.kafka.session_timeout_ms,
        "heartbeat_interval_ms": settings.kafka.heartbeat_interval_ms,
        "group_instance_id": settings.group_instance_id,
    }


def faust_credentials(settings: Settings) -> Any:
    """Faust's ``broker_credentials``: None for PLAINTEXT, else TLS and/or SASL."""
    proto = settings.kafka.security_protocol
    if proto == "PLAINTEXT":
        return None
    context = ssl_context(settings)
    if proto == "SSL":
        return faust.SSLCredentials(context)
    return faust.SASLCredentials(
        username=settings.kafka.sasl_username,
        password=settings.kafka.sasl_password.get_secret_value(),
        ssl_context=context,
        mechanism=settings.kafka.sasl_mechanism,
    )


_SASL_REFUSED = (
    aiokafka_errors.SaslAuthenticationFailed,
    aiokafka_errors.AuthenticationFailedError,
)


def _split_host_port(broker: str) -> tuple[str, int]:
    host, _, port = broker.rpartition(":")
    return host.strip("[]") or broker, int(port or 9092)


def tls_refused_message(broker: str, settings: Settings, exc: ssl.SSLError) -> str:
    """Why a TLS handshake failed, naming the setting that decides it."""
    reason = getattr(exc, "verify_message", None) or exc.reason or str(exc)
    cafile = settings.kafka.ssl_cafile or "unset: the system CAs"
    return (
        f"Kafka at {broker}: the TLS handshake failed ({reason}); the broker's certificate "
        f"must be signed by the CA in kafka_ssl_cafile={cafile} (VITRINE_KAFKA_SSL_CAFILE) "
        "and name the host in kafka_bootstrap_servers (VITRINE_KAFKA_BOOTSTRAP_SERVERS)"
    )


def sasl_refused_message(broker: str, settings: Settings) -> str:
    """Why SASL authentication failed, naming the settings (never the password)."""
    return (
        f"Kafka at {broker} refused the SASL credentials of user "
        f"{settings.kafka.sasl_username!r} ({settings.kafka.sasl_mechanism}); check "
        "kafka_sasl_username and kafka_sasl_password (VITRINE_KAFKA_SASL_USERNAME, "
        "VITRINE_KAFKA_SASL_PASSWORD) and kafka_sasl_mechanism (VITRINE_KAFKA_SASL_MECHANISM)"
    )


async def check_kafka_access(settings: Settings, timeout_s: float = 10.0) -> None:
    """Connect to the first broker that answers as the settings say; raise on refusal.

    Raises :class:`KafkaAccessError` when TLS verification or SASL
    authentication fails. A broker that cannot be reached at all is left to
    the clients' own retries (a cluster that is starting is not an error).
    Does nothing for PLAINTEXT.
    """
    if settings.kafka.security_protocol == "PLAINTEXT":
        return
    conf = aiokafka_config(settings)
    keys = ("ssl_context", "security_protocol", *sasl_config(settings))
    for broker in settings.kafka.brokers:
        host, port = _split_host_port(broker)
        try:
            conn = await asyncio.wait_for(
                create_conn(
                    host,
                    port,
                    client_id=settings.kafka.app_id,
                    request_timeout_ms=int(timeout_s * 1000),
                    **{k: conf[k] for k in keys},
                ),
                timeout_s,
            )
        except ssl.SSLError as exc:
            raise KafkaAccessError(tls_refused_message(broker, settings, exc)) from None
        except (
            aiokafka_errors.SaslAuthenticationFailed,
            aiokafka_errors.AuthenticationFailedError,
        ):
            raise KafkaAccessError(sasl_refused_message(broker, settings)) from None
        except (OSError, TimeoutError, aiokafka_errors.KafkaError) as exc:
            logger.info("Kafka at %s not reachable yet (%s)", broker, exc.__class__.__name__)
            continue
        conn.close()
        return


def check_kafka_access_sync(settings: Settings, timeout_s: float = 10.0) -> None:
    """:func:`check_kafka_access` for code with no event loop (the tools)."""
    asyncio.run(check_kafka_access(settings, timeout_s))
