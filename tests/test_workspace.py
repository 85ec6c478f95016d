"""Workspace stays bounded: im2col packs panels straight from the input, so a large
batch needs no column matrix (DESIGN.md section 3). Measured as the growth of the
process's peak RSS in a fresh interpreter, with input, output and weights already
touched."""
import json
import subprocess
import sys

import pytest

SCRIPT = r"""
import json, resource, sys
import numpy as np, cconv
N, C, H, O, K, s, p, layout = json.loads(sys.argv[1])
rng = np.random.default_rng(0)
OH = (H + 2 * p - K) // s + 1
if layout == "NCHW":
    x = rng.standard_normal((N, C, H, H), dtype=np.float32)
    w = rng.standard_normal((O, C, K, K), dtype=np.float32)
    out = np.empty((N, O, OH, OH), np.float32)
else:
    x = rng.standard_normal((N, H, H, C), dtype=np.float32)
    w = rng.standard_normal((K, K, C, O), dtype=np.float32)
    out = np.empty((N, OH, OH, O), np.float32)
out.fill(np.nan)
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
cconv.conv2d(x, w, None, s, p, layout=layout, out=out)
after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
assert not np.isnan(out).any()
print(json.dumps({"growth_mib": (after - before) / 1024,
                  "data_mib": (x.nbytes + w.nbytes + out.nbytes) / 2**20}))
"""


@pytest.mark.parametrize("layout", ["NCHW", "NHWC"])
@pytest.mark.parametrize("case", [
    (64, 3, 224, 64, 7, 2, 3),   # ResNet stem, batch 64: its cols matrix would be 1.4 GiB
    (32, 64, 56, 64, 3, 1, 1),   # 3x3 stride 1, batch 32: cols would be 0.8 GiB
], ids=["stem_b64", "3x3_b32"])
def test_peak_memory_above_data_is_bounded(case, layout):
    r = subprocess.run([sys.executable, "-c", SCRIPT, json.dumps(list(case) + [layout])],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    res = json.loads(r.stdout.strip().splitlines()[-1])
    assert res["growth_mib"] <= 64, res
