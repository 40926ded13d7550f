"""Test data kept in the repository, so that a plain clone runs its own tests.

``STRATUSLAB``: the original StratusLab metadata library's test documents and keys (see the
README beside them for their origin and licence).
"""

from pathlib import Path

STRATUSLAB = Path(__file__).resolve().parent / "stratuslab"
