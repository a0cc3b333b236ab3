"""Running jobs: the job runner, backends and the scheduler."""
