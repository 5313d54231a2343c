"""Adapters to the outside world (filesystem, HTTP, SMTP); only the Commit Layer calls them.

This is the lowest ring: it imports nothing else of MAOS.
"""
