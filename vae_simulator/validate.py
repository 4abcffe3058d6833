"""Validation report of the trained PK-VAEs: ``python -m vae_simulator.validate --help``.

A thin entry point; the work is in :mod:`vae_simulator.validation`.
"""

from __future__ import annotations

from vae_simulator.validation.cli import main

if __name__ == "__main__":
    raise SystemExit(main())
