"""The README's configuration reference lists every parameter the node declares, with its declared default."""

from __future__ import annotations

import json
import re
from pathlib import Path

from retain_ros.control.params import PARAMS

README = Path(__file__).resolve().parent.parent / "README.md"


def test_configuration_reference_matches_the_declared_parameters():
    rows = {m.group(1): m.group(2) for m in re.finditer(r"^\| `(\w+)` \| `(.*?)` \|", README.read_text(), re.M)}
    for param in PARAMS:
        assert param.name in rows, f"README's configuration reference lacks `{param.name}`"
        shown = rows[param.name]
        expected = f'"{param.default}"' if isinstance(param.default, str) else json.dumps(param.default)
        assert shown == expected or (shown.endswith("...]") and expected.startswith(shown[:-4])), param.name
    assert set(rows) <= {p.name for p in PARAMS}
