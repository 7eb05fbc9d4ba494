"""`python -m retain_ros.demo`: see `retain_ros.demo.main`."""

import sys

from retain_ros.demo.main import main

sys.exit(main())
