"""Library option names → command-line flags, for the messages of library errors.

Library errors name options as they are spelled in code (`weights`, `tile=16`); the command
line shows the flag that sets each one (--weights, --tile 16).
"""

from __future__ import annotations

import re

OPTION_FLAGS = {"weights": "--weights", "backbone": "--backbone", "tile": "--tile", "steps": "--steps",
                "seed": "--seed", "device": "--device", "dtype": "--dtype", "fuse_lora": "--fuse-lora",
                "refine": "--refine", "allow_missing": "--allow-missing", "max_memory": "--max-memory"}
"""Library option names (``ReconstructOptions`` fields) → the flags that set them."""
_OPTION = re.compile(r"`(\w+)(?:=([^`]*))?`")


def as_flags(message: str) -> str:
    """A library message with its `option` / `option=value` mentions written as CLI flags."""
    def flag(match: re.Match) -> str:
        name, value = match.group(1), match.group(2)
        if name not in OPTION_FLAGS:
            return match.group(0).strip("`")
        if value in ("True", "False"):  # a boolean option is a --flag/--no-flag pair
            return OPTION_FLAGS[name] if value == "True" else "--no-" + OPTION_FLAGS[name][2:]
        return OPTION_FLAGS[name] + (f" {value}" if value is not None else "")

    return _OPTION.sub(flag, message)
