"""The main job from a source checkout: ``python train.py [options]`` is ``pkdose train [options]``.

``python train.py <command> ...`` runs any other pkdose command (``python train.py vae --drug
vancomycin``, ``python train.py generate ...``), as ``pkdose <command>`` does; ``pkdose --help``
lists them. The job itself, readable top to bottom, is :mod:`agents.main_job`.
"""

from __future__ import annotations

import sys

from agents.cli import main as pkdose


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    return pkdose(argv, default_command="train", prog="python train.py")


if __name__ == "__main__":
    raise SystemExit(main())
