"""Ring 0: the Deterministic Security Core, the Commit Layer and the write-ahead log.

Imports nothing of MAOS but `maos.effects`; never imports or runs agent code.
"""
