"""Supervised fine-tuning of a pretrained eegfm encoder on a labeled task (HMS six-class votes ...).

One process per device, launched like pretraining::

    python -m eegfm.training.finetune --pretrained RUN/model --data D --task hms6 --output O --config cpu-tiny
    torchrun --nproc_per_node=2 -m eegfm.training.finetune --pretrained ... --output O     # DDP
    horovodrun -np 2 -H localhost:2 python -m eegfm.training.finetune --backend horovod ...

A run: ``plan`` splits the task's labeled windows by subject (or site) and counts the class
prior (the baseline); ``setup`` loads ``--pretrained`` and chooses what trains (linear, adapter,
full); ``loop`` trains, evaluates the validation split every epoch, checkpoints and stops early;
``report`` reloads the best weights, fits a temperature and writes ``eval.json``. SIGTERM
checkpoints and exits 143; ``--resume auto`` continues in the same stage, epoch and data position.
"""

from eegfm.training.finetune.cli import FinetuneJob, build_parser, config_from_args, finetune, job_from_args, main

__all__ = ["FinetuneJob", "build_parser", "config_from_args", "finetune", "job_from_args", "main"]
