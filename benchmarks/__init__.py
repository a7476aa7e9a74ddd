"""Studies of the project, run from a checkout (not installed); see README.md here."""
