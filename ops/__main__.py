"""`python -m ops` is `sidekiq-fleet`."""

import sys

from .cli import main

sys.exit(main())
