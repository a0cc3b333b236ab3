"""`env init` and `env check --run`: commands over an environment that draft files with a
model and run the baseline through the job runner, so they sit above llm/ and execution/
(the manifest, inference and scaffold they use stay in environments/)."""
