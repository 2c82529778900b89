"""Performer / FAVOR+ attention; see issue 5."""
