"""`python -m featviz <verb>`: the same as the `featviz` command."""
import sys

from .cli import main

sys.exit(main())
