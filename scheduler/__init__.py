"""The control plane: what decides when work is sent (``run``'s watch and sweeps, ``submit`` and its
``--at``), the Python API over it (``api``, ``records``), the planner, and three subpackages:
``commands`` (the command line, a thin layer over the API), ``stack`` (the embedded Redis, the
simulator process, leases, the broker, workers, Flower, the fleet's scheduler) and ``views``
(progress, status, notifications, report, export)."""

__all__ = ["api", "records", "plan", "run", "submit", "preflight", "history", "reuse", "sizing",
           "commands", "stack", "views"]
