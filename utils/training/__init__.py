"""The pretraining application: the run's parts, argument checks, the step and the Ignite engine."""
