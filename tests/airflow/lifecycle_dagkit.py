"""Helpers for the lifecycle DAG tests (rotate_rewrap, shred, erase): load a DAG, run it, read results.

A plain module (not a conftest), imported by the three test modules as ``lifecycle_dagkit``.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
_DEFAULTS: dict[str, dict[str, Any]] = {}


def load_dag(dag_id: str) -> Any:
    """The DAG of ``dags/<dag_id>.py``, parsed the way the scheduler does (no import errors)."""
    from airflow.dag_processing.dagbag import DagBag

    bag = DagBag(dag_folder=str(REPO / "dags" / f"{dag_id}.py"))
    assert not bag.import_errors, bag.import_errors
    dag = bag.get_dag(dag_id)
    _DEFAULTS[dag_id] = copy.deepcopy(dict(dag.params.dump()))
    return dag


@dataclass
class DagResult:
    """One ``dag.test()`` run: task states and XCom return values (mapped tasks: per map index)."""

    run_id: str
    state: str
    states: dict[str, str] = field(default_factory=dict)
    mapped_states: dict[str, dict[int, str]] = field(default_factory=dict)
    values: dict[str, Any] = field(default_factory=dict)
    mapped_values: dict[str, dict[int, Any]] = field(default_factory=dict)
    xcoms: dict[tuple[str, str], Any] = field(default_factory=dict)


def run_dag(dag: Any, **conf: Any) -> DagResult:
    """``dag.test(run_conf=conf)`` and everything it recorded.

    Params not in ``conf`` are given their declared defaults explicitly: with Airflow 3.3.2 a second
    ``dag.test()`` of the same DAG object hands its tasks the previous run's values for params the
    new conf leaves out (its ``dag_run.conf`` is right), so a run would inherit e.g. ``rotate_first``.
    """
    from airflow.models.xcom import XComModel
    from airflow.utils.session import create_session

    dag_run = dag.test(run_conf={**copy.deepcopy(_DEFAULTS[dag.dag_id]), **conf})
    result = DagResult(run_id=dag_run.run_id, state=str(dag_run.state))
    with create_session() as session:
        for ti in dag_run.get_task_instances(session=session):
            if ti.map_index >= 0:
                result.mapped_states.setdefault(ti.task_id, {})[ti.map_index] = str(ti.state)
            else:
                result.states[ti.task_id] = str(ti.state)
        rows = session.scalars(XComModel.get_many(run_id=dag_run.run_id, dag_ids=dag.dag_id))
        for row in rows:
            value = XComModel.deserialize_value(row)
            if row.key != "return_value":
                result.xcoms[(row.task_id, row.key)] = value
            elif row.map_index >= 0:
                result.mapped_values.setdefault(row.task_id, {})[row.map_index] = value
            else:
                result.values[row.task_id] = value
    return result


def failure_messages(capfd: Any) -> list[str]:
    """The ``AirflowFailException`` messages the task runner printed since the last call.

    ``dag.test()`` runs tasks in-process and prints their tracebacks; the metadata DB keeps states
    only, so this is how a test checks *why* a task failed.
    """
    marker = "AirflowFailException: "
    out = capfd.readouterr().out
    return [line.split(marker, 1)[1] for line in out.splitlines() if marker in line]
