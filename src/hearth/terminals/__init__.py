"""Terminal sessions: shells on PTYs whose output is addressed by absolute byte offsets."""
