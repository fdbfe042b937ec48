"""Helpers shared by the tests, one module per concern (imported as ``tests.support.<module>``)."""
