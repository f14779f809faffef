"""Dagster Definitions, jobs, schedules and resources; the pure learning math (extra [pipeline])."""
