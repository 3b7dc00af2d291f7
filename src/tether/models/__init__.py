"""Models: the Model protocol, the OpenAI-compatible client and the scripted model."""

from __future__ import annotations
