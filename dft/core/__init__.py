"""The bottom layer: atomic file writes and the argparse pieces every command shares (no torch, no verl)."""
