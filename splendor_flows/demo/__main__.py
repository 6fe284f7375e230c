"""Run the demo: `python -m splendor_flows.demo`."""

import sys

from splendor_flows.demo.run import main

sys.exit(main())
