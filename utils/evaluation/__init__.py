"""Evaluation of frozen features: extraction, k-NN, linear evaluation, few-shot, LooC probe, analysis."""
