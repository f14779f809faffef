"""Dagster assets and asset checks of the nightly learning run (extra [pipeline])."""
