"""Reinforcement learning of the ideator from execution reward (GRPO).

The policy is a local Hugging Face causal language model. Each step it writes a group of
ideas per prompt; the research loop implements and runs them exactly as it runs any
ideas (same implementer, backend, scheduler and run store); their measured results
become rewards; the policy is updated with GRPO. Importing this package needs no torch:
the modules that do (`policy`, `grpo`, `learner`, `tiny`) import it themselves.
"""
