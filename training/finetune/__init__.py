"""Supervised fine-tuning of a pretrained eegfm encoder on a labeled task (HMS six-class votes ...).

One process per device, launched like pretraining::

    python -m eegfm.training.finetune --pretrained RUN/model --data D --task hms6 --output O --config cpu-tiny
    torchrun --nproc_per_node=2 -m eegfm.training.finetune --pretrained ... --output O     # DDP
    horovodrun -np 2 -H localhost:2 python -m eegfm.training.finetune --backend horovod ...

What a run does, in order:

1. **Plan** (``plan``; rank 0, broadcast): the task's labeled windows (hms6: with expert votes;
   other tasks: ``label >= 0``), their subjects (or sites, ``split_group: site``) split into train /
   validation (/ test) by :func:`training.splits.split_groups` (no subject in two splits), and the
   training split's class counts and mean target: the class-prior baseline, and the fresh head's
   initial bias, so training starts at the baseline.
2. **Model** (``setup``): ``EEGFMModel.from_pretrained(--pretrained)``; a pretraining output loads
   its encoder and gets a fresh task head, a fine-tuned model of the same task keeps its head.
   Modes: ``linear`` (frozen encoder), ``adapter`` (LoRA / bottleneck adapters + head), ``full``
   (layer-wise lr decay ``optim.layer_decay``, gradual unfreezing ``unfreeze_schedule``).
3. **Train** (``loop``): step-based like pretraining, an *epoch* being ``ceil(training windows /
   (batch_size * world_size))`` steps. Every epoch (or ``eval_every`` steps) the validation split is
   evaluated (hms6: KL(target || prediction), the Kaggle metric; else the head's loss), a checkpoint
   written and marked ``best`` when the metric improved; ``early_stopping_patience`` evaluations
   without improvement end the stage. With ``two_stage_min_votes: N`` a second stage continues from
   the best weights on the training windows with at least N votes.
4. **Calibrate and evaluate** (``report``): the best weights reloaded, a temperature fitted on the
   validation logits (``temperature_scaling``, stored in the model's ``config.temperature``), and
   validation (and test) metrics before and after calibration, beside the class-prior baseline,
   written to ``eval.json``.

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
