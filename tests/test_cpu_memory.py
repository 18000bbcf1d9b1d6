"""CPU training returns freed vocabulary-sized blocks to the system (training/cpu_memory.py).

The memory bench's anomaly (4.1 GB peak RSS at vocabulary 32k x sequence 2048, 1.2 GB at 152k) in
miniature: blocks of a 256-token x 32k-vocabulary chunk's size, freed between small survivors, as
the chunked loss does. Without a fixed mmap threshold glibc keeps them on a growing heap; after the
trainer has run, they are mmapped and returned, so peak RSS stays near the live memory.
"""

from __future__ import annotations

import os
import platform
import subprocess
import sys
import textwrap

import pytest

SCRIPT = textwrap.dedent("""
    import resource, sys, torch
    from helpers import micro_setup
    from reasondistill.methods import get_method
    from reasondistill.training import TrainConfig, train
    examples, model, tok = micro_setup(n=8)
    train(get_method("answer_only"), model, tok, examples, sys.argv[1],
          TrainConfig(max_steps=1, batch_size=8, checkpoint_every=0), tiny=True, progress=False)
    rss = lambda: resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**10  # MB
    base, w, keep = rss(), torch.randn(32000, 64), []
    for _ in range(24):
        logits = torch.randn(256, 64) @ w.t()         # 32.8 MB: just under glibc's 32 MiB mmap ceiling
        p = logits.log_softmax(-1)
        keep.append(p[:, :3].clone())                 # small tensors that outlive each chunk
        del logits, p
    print(round(rss() - base))
""")


@pytest.mark.skipif(platform.system() != "Linux" or platform.libc_ver()[0] != "glibc", reason="glibc malloc only")
def test_after_cpu_training_freed_chunk_sized_blocks_do_not_grow_the_heap(tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "MALLOC_MMAP_THRESHOLD_"}
    env.update(OMP_NUM_THREADS="1", PYTHONPATH=os.pathsep.join([os.path.dirname(__file__), env.get("PYTHONPATH", "")]))
    done = subprocess.run([sys.executable, "-c", SCRIPT, str(tmp_path / "run")], capture_output=True, text=True,
                          env=env, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    growth_mb = int(done.stdout.strip().splitlines()[-1])
    assert growth_mb < 300, growth_mb  # about 800 MB with glibc's dynamic threshold, about 70 with it fixed
