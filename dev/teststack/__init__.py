"""Local test bed: a real Apache Kafka broker (KRaft) and a real Redis server on loopback.

Usage::

    dev/stack up [--redis-aof] [--timeout S] [--redis-port P] [--kafka-port P] [--controller-port P]
                 [--secure [--sasl-ssl-port P] [--redis-tls-port P]]
                 [--cluster [--redis-cluster-port P] [--redis-cluster-tls-port P]]
    dev/stack status
    dev/stack down [--purge]

``up`` starts (or reuses) a private ``redis-server`` and a single-node Kafka broker+controller, waits until
both really answer, and writes ``$STACK_DIR/env`` (default ``.stack/env`` in the repository root)::

    KAFKA_BOOTSTRAP_SERVERS=127.0.0.1:19092
    REDIS_URL=redis://127.0.0.1:6390/0

which a shell can ``source``. ``up --secure`` also gives the broker a ``SASL_SSL`` listener (SCRAM-SHA-512, the
credentials created when the storage is formatted; client certificates required), starts a TLS-only
``redis-server`` that requires client certificates and an ACL user (the default user is off), generates a CA,
server and client certificates with ``openssl`` under ``$STACK_DIR/tls`` and writes ``$STACK_DIR/secure.env``:
the service's own settings for both secured services, with the passwords as ``*_FILE`` paths. The TLS servers'
ACL users (``$STACK_DIR/secrets/redis-users.acl``): the service's, with only the rights it needs
(``SERVICE_RIGHTS``), and ``stack-admin`` with every right for ``dev/stack`` itself.

``up --cluster`` also starts a Redis Cluster of three masters (no replicas; ports ``P``, ``P+1``, ``P+2``, their
cluster bus ports 10000 above), each with its own folder and ``nodes.conf`` under ``$STACK_DIR/redis-cluster``,
creates it with ``redis-cli --cluster create`` on first start, waits until every node reports
``cluster_state:ok`` and adds ``REDIS_CLUSTER_URL=redis://127.0.0.1:P/0`` (a seed node) to the env file.
``up --cluster --secure`` also starts a second, TLS-only cluster the same way (default ports 6395-6397): client
certificates required, the cluster bus and replication over TLS, the TLS Redis's ACL users (``default`` off),
and adds its ``REDIS_CLUSTER_URL=rediss://127.0.0.1:P/0`` to ``secure.env``, whose user, password and
certificates reach it.

The Kafka jars come from Maven Central through ``dev/kafka/pom.xml`` and are cached per user in
``${XDG_CACHE_HOME:-~/.cache}/active-users/kafka-<version>/libs``.

Standard library only: this runs before any virtualenv exists (``dev/stack`` puts this package and the
repository root on the path; the broker probe shares ``consumer/kafkawire.py`` with the service's broker check).
Only loopback addresses are ever used.
"""
