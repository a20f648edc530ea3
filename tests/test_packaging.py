"""The wheel carries what an installed streammatte needs: the catalog and the web pages."""

from __future__ import annotations

import os
import subprocess
import sys
import zipfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def test_wheel_carries_catalog_and_static_files(tmp_path: Path) -> None:
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps",
                    "-w", str(tmp_path), str(REPO)], check=True, capture_output=True)
    (wheel,) = tmp_path.glob("streammatte-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    catalog = {Path(n).name for n in names if n.startswith("streammatte/_catalog/")}
    assert catalog == {p.name for p in (REPO / "engines").glob("*.toml")}
    assert "streammatte/server/static/index.html" in names
    assert "streammatte/py.typed" in names  # type checkers read the package's annotations
    # installed away from the checkout, the catalog is read from inside the package
    target = tmp_path / "site"
    zipfile.ZipFile(wheel).extractall(target)
    code = ("import streammatte.models.catalog as c; "
            "print(sorted(c.load_catalog())[:3], c._catalog_dirs())")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, cwd=tmp_path,
                         env={**os.environ, "PYTHONPATH": str(target)})
    assert str(target / "streammatte" / "_catalog") in out.stdout
    assert str(REPO / "engines") not in out.stdout
    assert "birefnet-general" in out.stdout

