"""``python -m dssdn_edge``: the ``dssdn-edge`` command, the entry point torchrun starts (``torchrun … -m
dssdn_edge train …``) and the one ``train --nproc N`` starts its workers with."""

from .cli import main

if __name__ == "__main__":
    main()
