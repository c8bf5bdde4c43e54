"""Checkpoints: atomic step checkpoints, sharded (DCP) checkpoints, the final save, Hub downloads."""
