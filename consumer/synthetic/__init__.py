"""A synthetic event stream for demos, tests and benchmarks: the generator of a user population's events and the
producer that sends them to Kafka (``active-users produce``)."""
