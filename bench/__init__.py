"""Benchmarks of the real thing: the language server over stdio and the local cloud on the engine.

Run `.venv/bin/python -m bench` (or `--quick`); results go to bench/results/latest.json.
"""
