"""Prediction checks as pure functions: does an answer match what a check
expects (expect), and which pods may take traffic (gate)."""
