"""Search strategies: what to ask the ideator for next, given the results so far."""
