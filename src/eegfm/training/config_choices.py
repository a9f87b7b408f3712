"""The choices of the run configs' fields (``training.config``), where a command line can read them
without importing torch or the model (tests/test_commands.py: ``--help`` stays light)."""

# loader.num_workers (and a training command's --threads): as many as this process's share of the
# machine's CPUs and memory allows
AUTO = "auto"
PRECISIONS = ("fp32", "bf16", "fp16")
# torch.compile's modes; reduce-overhead adds CUDA graphs (the base step at batch 64 on an H100:
# 12.7 ms against 40.5 ms compiled without, benchmarks/train_gpu_profile.py; not yet timed in the loop).
COMPILE_MODES = ("default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs")
BACKENDS = ("auto", "gloo", "nccl", "horovod")
FINETUNE_MODES = ("linear", "adapter", "full")
HEAD_INITS = ("prior", "probe")  # a new head: random at the class prior, or fitted as a linear probe
# who chooses a probe head's C and inputs: the training people's grouped CV, or the validation people
PROBE_CHOOSERS = ("cv", "validation")
# who chooses the fine-tuned checkpoint's epoch: the validation people's loss, the mean loss curve
# of cross-validation grouped by person over the training people, or none (the last epoch is kept)
EPOCH_CHOOSERS = ("validation", "training_people", "none")
LOSSES = ("kl", "ce", "focal")
SPLIT_GROUPS = ("subject", "site")
UNFREEZE_UNITS = ("epoch", "step")
# Fine-tuning task -> registered head (model.heads); classes from eegfm.core.tasks.
TASK_HEADS = {
    "hms6": "hms6",
    **dict.fromkeys(("eegmat", "tuab", "tuep", "tusz", "chbmit", "siena"), "binary"),
    **dict.fromkeys(("tuev", "tuar", "eegmmi"), "multiclass"),
    **{head: head for head in ("binary", "multiclass", "regression")},
}
