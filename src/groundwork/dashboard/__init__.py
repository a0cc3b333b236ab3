"""The live web dashboard (`groundwork serve`)."""
