"""The Jinja2 sandbox every template renders in, and the budget of one render."""
