"""The run's seeds keep the numbers every earlier run drew from; the loaders and the run use them."""
from types import SimpleNamespace

import torch
from torch import nn

from datasets.loaders import epoch_permutation, view_generator
from datasets.seeds import crop_seed, draw_seed, order_seed
from utils.training.run import Run

CASES = [(0, 0, 0), (0, 1, 5), (1, 0, 0), (7, 3, 2), (42, 99, 1_281_166), (123_456, 799, 31)]


def test_the_seeds_are_the_formulas_runs_were_made_with():
    for seed, epoch, k in CASES:  # the formulas as written out before they had one home
        assert order_seed(seed, epoch) == seed * 100_003 + epoch
        assert crop_seed(seed, epoch, k) == (seed * 1_000_003 + epoch) * 10_000_019 + k
        assert draw_seed(seed, epoch, k) == (seed * 1_000_003 + epoch) * 8191 + k
    assert (order_seed(42, 3), crop_seed(42, 3, 17), draw_seed(42, 3, 1)) == (4_200_129, 420_002_088_002_468,
                                                                               344_023_056_640)


def test_the_loaders_and_the_run_seed_from_them():
    assert torch.equal(epoch_permutation(50, 42, 3), torch.randperm(50, generator=torch.Generator().manual_seed(4_200_129)))
    assert view_generator(42, 3, 17).initial_seed() == 420_002_088_002_468
    model = nn.Linear(2, 2)
    run = SimpleNamespace(model=model, loader=SimpleNamespace(set_epoch=lambda epoch: None), rank=1,
                          args=SimpleNamespace(seed=42, max_epochs=10, base_lr=0.1, batch_size=256),
                          framework=SimpleNamespace(warmup_epochs=0), optimizer=torch.optim.SGD(model.parameters()),
                          generator=torch.Generator(), host_generator=torch.Generator())
    Run.set_epoch(run, 3)
    assert run.generator.initial_seed() == run.host_generator.initial_seed() == 344_023_056_640
