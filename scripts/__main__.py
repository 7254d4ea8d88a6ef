"""``python -m forgetbench ...`` is the ``forgetbench`` command."""
from forgetbench.cli import main

main()
