"""What `fastkd plan` prints, one module per method family: the arithmetic of a run (steps, events, intervals,
schedules) from the config's numbers, free of torch so it is unit-tested on its own. The methods build on it."""
