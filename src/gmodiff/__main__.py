import sys

from gmodiff.cli import main

sys.exit(main())
