"""`maos demo`: boot a kernel in a fresh data dir and run a small task end to end."""
