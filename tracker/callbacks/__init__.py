"""Callbacks: the outbox sender and the webhook and email senders behind it."""
