"""Helpers shared by several packages: distributed collectives, checkpoints, logging, evaluation."""
