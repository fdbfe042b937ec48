"""The query API: a Rocket.Chat-compatible active-users endpoint and our distinct-users summary over HTTP."""
