"""Training-speed benchmark: ``python -m progan_lightning.bench [key=value ...]``.

For each stage resolution of the configured model the ``stages`` part measures, on
synthetic data, the training step (D step with its gradient penalty, G step, EMA update) and
G_ema inference in images/second, the step's FLOPs, utilization against the dense matmul
peak of the same run and peak memory. ``bench.parts`` adds ``memory``, ``data`` and
``projection``. Nothing is written unless ``bench.out`` (JSON) or ``bench.notes`` (markdown)
names a file. One module per measurement:

- ``timing``: timed repeats (median, IQR, min-max), device names, the matmul peak;
- ``flops``: the dispatch-level FLOP counter;
- ``step``: the training step on synthetic reals that every part runs;
- ``stages``: the ``stages`` part (speed, FLOPs, utilization per stage) and the fading step;
- ``memory``: peak memory, and the ``memory`` part (largest batch per memory budget);
- ``data``: the ``data`` part (the DataLoader from the cache vs decoding the files);
- ``projection``: the ``projection`` part (hours of a growth schedule; pure Python);
- ``plan``: the parts, the batch per stage and the schedules, read from the config;
- ``report``: the marked markdown sections of ``bench.notes`` and the command that reran them;
- ``run``: ``run(cfg)``, the parts in turn, their JSON files and markdown sections.

The model is built from the same Hydra config as training (``conf/bench.yaml`` includes
``conf/train.yaml``), so ``model/precision``, ``model.channels_last``, ``trainer.benchmark``
and ``backend`` apply as in training, and the step is ``ProGAN.train_step`` itself, without
a Trainer. The command is :mod:`progan_lightning.cli.bench`; nothing here imports it. The
project's studies (the equalized-lr forms, the side-by-side with another port, legibility)
live in the checkout's ``benchmarks/``, not in the package.
"""
