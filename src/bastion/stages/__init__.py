"""One package per pipeline stage: ``config.py`` (its schema) and ``stage.py`` (its hooks)."""
