"""``python -m orchestrator``: the ``orchestrate`` command, for batch scripts that name the
interpreter rather than rely on PATH."""

from orchestrator.cli import main

main()
