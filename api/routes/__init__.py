"""HTTP handlers, one module per group of endpoints; :func:`api.app.create_app` wires them."""
