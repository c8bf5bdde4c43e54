"""Training: the loop, the loss, precision, schedule, packing, memory, attention, metrics."""
