"""The patch library: diffs out of model answers, strict and safe application, search/replace
edits, catalog edits, codebase copies and hashes. It knows nothing of models or the loop."""
