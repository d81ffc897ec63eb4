"""The LEAD ledger in plain numpy: benchmark rules, banded schedules, settlement of each track."""
