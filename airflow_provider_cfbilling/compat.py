"""Names that moved between the Airflow 3 releases we support (3.1 and newer).

Airflow 3.2 moved the task-control exceptions into the Task SDK (``airflow.sdk.exceptions``); 3.1 has them
in ``airflow.exceptions``. Import them from here so every module works on both.
"""

from __future__ import annotations

try:
    from airflow.sdk.exceptions import (
        AirflowFailException,
        AirflowRescheduleException,
        AirflowSensorTimeout,
        AirflowSkipException,
        TaskDeferred,
    )
except ImportError:  # Airflow 3.1
    from airflow.exceptions import (  # type: ignore[no-redef]
        AirflowFailException,
        AirflowRescheduleException,
        AirflowSensorTimeout,
        AirflowSkipException,
        TaskDeferred,
    )

__all__ = [
    "AirflowFailException",
    "AirflowRescheduleException",
    "AirflowSensorTimeout",
    "AirflowSkipException",
    "TaskDeferred",
]
