"""``python -m airflow_provider_cfbilling.testing.simulator``: the ``cfbilling-simulator`` command."""

import sys

from airflow_provider_cfbilling.testing.simulator.cli import main

sys.exit(main())
