"""Many nodes, one Hearth (SPEC §12): the web tier's part. ``membership.join`` makes this node a
member of the cluster its settings name; ``middleware.ClusterMiddleware`` then relays, merges
and places."""
