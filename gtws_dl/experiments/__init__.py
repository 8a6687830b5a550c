"""Experiment runners: the top floor, the only place that trains, reconstructs and evaluates together."""
