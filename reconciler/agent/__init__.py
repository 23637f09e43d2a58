"""The desired-state agent: `reconciler watch` and what it decides, records and reports."""
