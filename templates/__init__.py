"""Message text: templates/<channel>/<KIND or default>.<part>.j2, rendered by engine.templating."""
