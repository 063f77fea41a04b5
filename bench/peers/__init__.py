"""Peer servers for the benchmark: the same stored model behind other stacks (``bench.peers_run``)."""
