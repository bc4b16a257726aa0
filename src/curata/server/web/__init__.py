"""Curata's pages: Jinja2 templates over the stage services, under /ui."""
