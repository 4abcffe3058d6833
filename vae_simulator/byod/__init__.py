"""Bring your own data: learn a PK-VAE from a clinic's NONMEM table, forecast with it."""
