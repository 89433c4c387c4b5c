"""The poll loop: the daemon, the poller, the upstream client and the decisions they follow."""
