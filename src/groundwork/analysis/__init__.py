"""Making sense of runs: summaries now; statistics, plots and reports next."""
