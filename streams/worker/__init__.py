"""The worker: everything ``vitrine worker`` runs, and nothing else.

``app`` wires the pieces; ``topics`` lists the topics, ``batcher`` cuts
micro-batches, ``batches`` runs one through an agent, ``labelling`` and
``enrich`` process them, ``routes`` sends each result to its topics, ``cache``
keeps labels in Redis, ``fetch`` reads image URIs, ``windows`` aggregates
sales, ``delivery`` produces and confirms outputs, ``deadletter``, ``metrics``
and ``lag`` report, ``batchconsumer`` reads orders, ``model`` builds the
engine, ``kafka_config`` the clients, ``transport`` bounds Faust, ``web`` serves
``/metrics`` and ``/ready``. Never imports :mod:`streams.tools`.
"""
