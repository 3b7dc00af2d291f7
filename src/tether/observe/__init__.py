"""Observability: events, metrics, traces and structured logs."""

from __future__ import annotations
