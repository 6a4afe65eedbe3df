"""What the tests, ``scripts/chaos.py`` and the benchmarks share, as ``optuna.testing`` is to
Optuna: one module per concept, each importing what it needs.

- :mod:`orchestrator.testing.servers`: servers of one's own to break at will (PostgreSQL, an
  MLflow server, a single-node Slurm cluster), free ports, stopping a process group;
- :mod:`orchestrator.testing.sweeps`: small sweep documents and writing them to YAML;
- :mod:`orchestrator.testing.cli`: the real ``orchestrate`` CLI in a subprocess, as a user runs it;
- :mod:`orchestrator.testing.results`: reading back what a sweep stored (trials, runs, curves)
  and waiting for a state to appear.

Nothing is imported here: importing the package must stay as cheap as importing the CLI
(no torch, MLflow or Optuna until a module that needs them is imported).
"""
