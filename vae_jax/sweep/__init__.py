"""Seed sweeps: many seeds trained in one compiled program, evaluated and aggregated."""
