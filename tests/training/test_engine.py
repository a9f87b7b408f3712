"""The training engine: a step over micro-batches equals one step over their union, the interval's
metrics are means and minima, and the state's random stream and training mode are the loop's."""

from __future__ import annotations

import dataclasses
import types

import torch

from eegfm.training import engine
from eegfm.training.config import OptimConfig
from eegfm.training.distributed import Dist
from eegfm.training.run_state import TrainState
from eegfm.training.steps import step_seed


@dataclasses.dataclass(kw_only=True)
class _Linear(TrainState):
    """A state whose steps draw from (seed, step) and whose model keeps dropout in training mode."""

    def seed_parts(self) -> tuple[int, ...]:
        return (self.cfg.seed, self.step)


def _state(accum: int) -> _Linear:
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.Dropout(0.0))
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    cfg = types.SimpleNamespace(seed=7, optim=OptimConfig(grad_accum_steps=accum, grad_clip=0.0))
    return _Linear(
        cfg=cfg,
        dist=Dist(backend="none"),
        model=model,
        optimizer=optimizer,
        scheduler=torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1.0),
        scaler=None,
        loader=None,
        amp_dtype=torch.float32,
    )


def _forward(run: TrainState, seeds: list[int]):
    def forward(batch: dict[str, torch.Tensor], micro: int) -> engine.MicroBatch:
        seeds.append(torch.initial_seed())
        loss = torch.nn.functional.mse_loss(run.model(batch["x"]), batch["y"])
        return engine.MicroBatch(
            loss, samples=len(batch["x"]), tokens=4 * len(batch["x"]), minima={"min_y": float(batch["y"].min())}
        )

    return forward


def test_two_micro_batches_step_as_one_batch_of_both_and_count_every_window():
    data = torch.Generator().manual_seed(1)
    x, y = torch.randn(16, 4, generator=data), torch.randn(16, 3, generator=data)
    whole, halves = _state(accum=1), _state(accum=2)
    seeds: list[int] = []
    one = engine.train_step(whole, iter([{"x": x, "y": y}]), _forward(whole, []))
    two = engine.train_step(halves, iter([{"x": x[:8], "y": y[:8]}, {"x": x[8:], "y": y[8:]}]), _forward(halves, seeds))
    for a, b in zip(whole.model.parameters(), halves.model.parameters()):
        torch.testing.assert_close(a, b)
    torch.testing.assert_close(one.metrics["loss"], two.metrics["loss"])
    assert (two.samples, two.tokens, halves.step, halves.samples) == (16, 64, 1, 16)
    assert two.minima["min_y"] == float(y.min()) and two.metrics["lr"] == 0.1
    assert float(two.metrics["grad_norm"]) > 0
    # Each micro-batch draws from its own stream, fixed by the state's parts and its index.
    assert seeds[0] != seeds[1] and seeds == [step_seed(7, 0, m) for m in (0, 1)]


def test_the_state_chooses_which_modules_train():
    run = _state(accum=1)
    run.model.eval()
    data = {"x": torch.zeros(2, 4), "y": torch.zeros(2, 3)}
    engine.train_step(run, iter([data]), _forward(run, []))
    assert run.model.training


def test_an_interval_reports_means_minima_and_the_latest_rate():
    interval = engine.Interval()
    for loss, votes, lr in ((1.0, 5.0, 0.3), (3.0, 2.0, 0.2)):
        metrics = {"loss": torch.tensor(loss), "grad_norm": torch.tensor(2 * loss), "lr": lr}
        interval.add(engine.Step(metrics, samples=4, tokens=0, minima={"min_votes": votes}))
    dist = Dist(backend="none")
    assert interval.reduce(dist) == {"loss": 2.0, "grad_norm": 4.0, "min_votes": 2.0, "lr": 0.2}
    assert interval.mean_loss(dist) == 2.0
    assert engine.Interval().mean_loss(dist) != engine.Interval().mean_loss(dist)  # nan: no step yet
