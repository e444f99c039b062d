"""Data-parallel training: a minipeft model under DistributedDataParallel (gloo, CPU).

`examples/train_accelerate.py` is the appendix's script; here it runs under
`torchrun --nproc_per_node 2` on the embedded model, and every process must end with the same prefix.
"""

import os
import socket
import subprocess
import sys

import pytest
import torch
import torch.distributed as dist
from helpers import REPO
from safetensors.torch import load_file
from torch.nn.parallel import DistributedDataParallel

from minipeft import PrefixTuningConfig, get_peft_model, position_ids_kwargs

SCRIPT = REPO / "examples" / "train_accelerate.py"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def one_process_group():
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{free_port()}", rank=0, world_size=1)
    yield
    dist.destroy_process_group()


def test_position_ids_reach_a_model_wrapped_in_ddp(tiny_model, one_process_group):
    # DDP's forward takes (*inputs, **kwargs): the helpers must look at the wrapped model's signature
    peft_model = get_peft_model(tiny_model, PrefixTuningConfig(num_virtual_tokens=3))
    ddp = DistributedDataParallel(peft_model)
    mask = torch.tensor([[0, 0, 1, 1], [1, 1, 1, 1]])
    expected = position_ids_kwargs(peft_model, mask)
    got = position_ids_kwargs(ddp, mask)
    assert got.keys() == expected.keys()
    for key in expected:
        assert torch.equal(got[key], expected[key])


@pytest.mark.skipif(not SCRIPT.is_file(), reason="needs the repository checkout (not the installed-wheel run)")
def test_torchrun_two_processes_end_with_identical_prefixes(smollm2, tmp_path):
    pytest.importorskip("accelerate")
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore"}
    command = [
        sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", str(free_port()),
        str(SCRIPT), "--steps", "3", "--batch-size", "4", "--output", str(tmp_path),
    ]  # fmt: skip
    result = subprocess.run(command, env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    tables = [load_file(tmp_path / f"table_rank{r}.safetensors")["prompt_embeddings"] for r in (0, 1)]
    initial = [load_file(tmp_path / f"initial_rank{r}.safetensors")["prompt_embeddings"] for r in (0, 1)]
    assert torch.equal(initial[0], initial[1])  # both start from rank 0's prefix
    assert torch.equal(tables[0], tables[1])  # the gradients were averaged, so the updates agree
    assert not torch.equal(tables[0], initial[0])  # and training moved the prefix
    saved = load_file(tmp_path / "adapter" / "adapter_model.safetensors")["prompt_embeddings"]
    assert torch.equal(saved, tables[0])
