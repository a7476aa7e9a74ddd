"""``python -m progan_lightning.bench``: the benchmark command, :mod:`progan_lightning.cli.bench`.

An entry point itself: no module imports this one.
"""

from progan_lightning.cli.bench import main

main()
