"""Every tool's --help says what it does, its own options, three examples and where the docs
are, and prints without loading torch or Lightning (so it appears at once)."""

from __future__ import annotations

import subprocess
import sys

import pytest

OPTIONS = {
    "genlab.train": ["resume=auto|RUN_DIR", "ckpt_path=CKPT", "experiment=NAME", "model: ae"],
    "genlab.eval": ["tasks=[test,report]", "tasks.generation.classifier_ckpt"],
    "genlab.sample": ["n=64", "temperature=1.0", "classes=[0,3]", "save_individual=true"],
    "genlab.latent": ["op=interpolate", "op=attribute", "source=data"],
    "genlab.translate": ["input_dir=DIR", "mode=derive", "mask_dir=DIR", "resize=true|false"],
    "genlab.reconstruct3d": ["input_dir=DIR", "source=data", "threshold=0.5"],
}
# runs the module as `python -m` would, then says which heavy packages got imported
PROBE = """
import runpy, sys
sys.argv = [sys.argv[1], "--help"]
try:
    runpy.run_module(sys.argv[0], run_name="__main__", alter_sys=True)
except SystemExit:
    pass
print("LOADED:", sorted(m for m in ("torch", "lightning") if m in sys.modules))
"""


@pytest.mark.parametrize("module", sorted(OPTIONS))
def test_help_names_the_tool_its_options_examples_and_docs(module):
    proc = subprocess.run(
        [sys.executable, "-c", PROBE, module], capture_output=True, text=True, timeout=120
    )
    out = proc.stdout
    tool = "genlab-" + module.split(".")[1]
    assert f"Usage: {tool}" in out and "Examples:" in out and "Docs: docs/" in out, out
    assert out.count(f"\n  {tool} ") == 3  # three examples
    for option in OPTIONS[module]:
        assert option in out, option
    assert "LOADED: []" in out, out[-300:]
