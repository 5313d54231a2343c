"""MAOS: an operating system for AI agents.

The rings are the folders, innermost last; a module may import only from its own ring
and the rings below it (enforced by ``lint-imports`` and ``tests/test_layers.py``):

    cli                       the command line
    commander, bench, demo    what a person looks at
    services, llm, pod, ...   Ring 1 services and the Agent Execution Pod
    kernel                    Ring 0: DSC, Commit Layer, WAL; never runs agent code
    effects                   adapters to the outside world, called only by the Commit Layer

``maos.sdk`` is what agent code imports; it stands alone and imports nothing above.
"""

__version__ = "0.1.0"
