"""Backends that simulate a lowered tensorir program on hardware profiles."""
