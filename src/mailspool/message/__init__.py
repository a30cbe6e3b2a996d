"""The message: templates, rendering and validation, addresses, MIME composition (pure)."""
