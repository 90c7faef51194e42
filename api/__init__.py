"""The thin HTTP layer: owner API, public tracking, authentication. `create_app()` builds it."""
