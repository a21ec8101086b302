"""`python -m conveyor_launcher` (what `make run` runs)."""

from __future__ import annotations

from conveyor_launcher.main import main

if __name__ == "__main__":
    main()
