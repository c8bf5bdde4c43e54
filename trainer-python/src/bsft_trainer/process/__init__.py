"""Process life: events to the worker, the parent lifeline, the job lease, the run fence."""
