"""The README's quickstart: `python -m perturbkit demo` trains DeepCellState and prints model vs baseline."""

import re
import subprocess
import sys


def test_demo_prints_model_beating_baseline():
    out = subprocess.run([sys.executable, "-m", "perturbkit", "demo", "--quiet", "--n-drugs", "200"],
                         capture_output=True, text=True, timeout=600, check=True).stdout
    pcc = {name: float(v) for name, v in re.findall(r"(DeepCellState|ridge map|naive baseline)\s+mean PCC ([\d.-]+)", out)}
    assert set(pcc) == {"DeepCellState", "ridge map", "naive baseline"}, out
    assert pcc["DeepCellState"] > 1.5 * pcc["naive baseline"], out
    assert "fold increase" in out
