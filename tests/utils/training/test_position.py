"""utils.training.position: the record of where a run stands, and the refusal of a resume inside an epoch
with another number of processes (each rank's draws are its own). The exact resume itself:
tests/utils/training/test_preemption.py and tests/scripts/test_sweeps.py."""
import pytest
import torch

from utils.training.position import check_resumable, position


def test_an_epoch_boundary_needs_no_draws_and_a_step_inside_one_needs_every_rank_s():
    assert position(8, 4) == {"epoch": 2, "step": 0}
    draws = [{"device": torch.zeros(2), "host": torch.ones(2)}] * 2
    assert position(6, 4, draws) == {"epoch": 1, "step": 2, "draws": draws}
    with pytest.raises(ValueError, match="needs the ranks' draw states"):
        position(6, 4)


def test_a_checkpoint_from_inside_an_epoch_resumes_only_with_as_many_processes():
    ckpt = {"epoch": 1, "step": 2, "draws": [{}, {}]}
    check_resumable(ckpt, world=2)
    with pytest.raises(ValueError, match=r"^--resume x.pth: written inside an epoch \(after step 2\) by 2 "
                                         r"process\(es\); continue it with as many, not 1, or resume from an "
                                         r"epoch's checkpoint$"):
        check_resumable(ckpt, world=1, flag="--resume x.pth")
    check_resumable({"epoch": 2, "step": 0}, world=1)  # an epoch's end resumes with any number
