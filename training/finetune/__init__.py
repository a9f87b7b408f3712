"""Supervised fine-tuning of a pretrained eegfm encoder on a labeled task (HMS six-class votes ...).

One process per device, launched like pretraining::

    python -m eegfm.training.finetune --pretrained RUN/model --data D --task hms6 --output O --config cpu-tiny
    torchrun --nproc_per_node=2 -m eegfm.training.finetune --pretrained ... --output O     # DDP
    horovodrun -np 2 -H localhost:2 python -m eegfm.training.finetune --backend horovod ...

A run, in order: ``plan`` (rank 0, broadcast) splits the task's labeled windows by subject (or
site) into train / validation (/ test) and counts the training split's classes and mean target,
the class-prior baseline; ``setup`` loads ``--pretrained`` (a pretraining output gets a fresh task
head) and chooses what trains (``linear``: the head; ``adapter``: adapters + head; ``full``: all,
with layer-wise lr decay and gradual unfreezing); ``loop`` trains step by step, evaluates the
validation split every epoch (hms6: KL(target || prediction), the Kaggle metric; else the head's
loss), checkpoints, marks the best and stops early (``two_stage_min_votes``: a second stage on the
windows with enough votes); ``report`` reloads the best weights, fits a temperature on the
validation logits and writes ``eval.json`` and its pictures.

Outputs in ``--output``: ``model/`` (Hugging Face, with the label names, the temperature and
``preprocess.json``), ``eval.json``, ``confusion.png`` and ``calibration.png`` (classifiers),
``sites.png`` (held-out windows from several sites), ``metrics.jsonl`` and ``curves.png``,
``run.json`` (config, split, parameter counts), ``checkpoints/`` (``best`` names the best one),
``wandb/`` (offline by default).

Preemption: SIGTERM makes every rank finish the step, rank 0 checkpoint, and the job exit 143;
``--resume auto`` (the default) continues in the same stage, epoch and data position.
"""

from eegfm.training.finetune.cli import build_parser, config_from_args, main

__all__ = ["build_parser", "config_from_args", "main"]
