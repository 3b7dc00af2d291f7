"""Benchmarks of tether side by side with LangGraph and DBOS (see BENCHMARKS.md)."""
