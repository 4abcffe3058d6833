"""The README's id table is the only one: every registered id must match one of its rows."""

from __future__ import annotations

import re
from pathlib import Path

import pk_envs

README = Path(__file__).resolve().parents[1] / "README.md"
DRUG = r"(Vancomycin|Phenytoin|Mycophenolate|Theophylline|Pembrolizumab)"


def row_patterns() -> list[re.Pattern]:
    patterns = []
    for line in README.read_text().splitlines():
        match = re.match(r"\| `(PKDose/[^`]+)` \|", line)
        if not match:
            continue
        text = re.escape(match.group(1)).replace(re.escape("<Drug>"), DRUG)
        # [-A,-B] lists optional variant suffixes
        text = re.sub(r"\\\[(.*?)\\\]", lambda m: "(" + "|".join(m.group(1).split(",")) + ")?", text)
        patterns.append(re.compile(text + "$"))
    return patterns


def test_every_registered_id_is_in_the_readme_table():
    patterns = row_patterns()
    assert len(patterns) >= 8
    missing = [i for i in (*pk_envs.ALL_IDS, *pk_envs.CUSTOM_IDS) if not any(p.match(i) for p in patterns)]
    assert not missing, f"ids missing from the README table: {missing}"
