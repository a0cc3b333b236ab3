"""Ideators: who proposes research ideas (the offline catalog now; language models next)."""
