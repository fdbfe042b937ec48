"""Shared core of the active-users service: settings, event model, day math, Redis key schema and store."""
