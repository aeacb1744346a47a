"""Helpers shared by every layer: distributed collectives, atomic checkpoints, logging, the lr schedule and
preemption signals (leaf modules, which import nothing of the project). The training application is
``utils.training``, frozen-feature evaluation ``utils.evaluation`` (docs/architecture.md)."""
