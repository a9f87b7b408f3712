"""eegfm training: pretraining (``pretrain``) and fine-tuning (``finetune``) under torchrun or
Horovod, fed by the TFRecord loader (``data``), with checkpoints that survive preemption."""
