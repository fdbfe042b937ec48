"""The ingestion consumer: Kafka activity events into per-day Redis sets, at least once, exactly-once results."""
