"""More than one process: the torchrun launcher, the world of ranks, FSDP2 sharding."""
