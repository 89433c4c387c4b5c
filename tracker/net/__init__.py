"""Outgoing HTTP safety: where requests may go, and how much of an answer is read."""
