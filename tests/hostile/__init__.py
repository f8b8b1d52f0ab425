"""Hostile inputs through the real fetch → parse → normalise → store → alert path (issue 9)."""
