"""Stored per-sample predictions -> numbers: metrics, statistics (bootstrap intervals, paired tests), leaderboards."""
