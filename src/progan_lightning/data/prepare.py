"""``python -m progan_lightning.data.prepare``: the ``progan-prepare`` command under its old
name (see :mod:`progan_lightning.cli.prepare`)."""

if __name__ == "__main__":
    from progan_lightning.cli.prepare import main

    main()
