"""AI-specific features of access logs: the input contract, ingest, extraction SQL and numba kernels.

Imports nothing else of blastwall. Functions take a ClickHouse client as an argument.
"""
