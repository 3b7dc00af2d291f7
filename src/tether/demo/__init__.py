"""The offline demo: a multi-step agent killed mid-task and resumed from its journal."""

from __future__ import annotations
