"""The team stack on loopback (`segen team up/status/down`): PostgreSQL, an S3-compatible
store (moto), a Prefect server and an MLflow server on PostgreSQL, and a Prefect process
work pool with one worker, each a process group of its own, with state and logs under one
folder and the variables that point segen at them in its team.env.

processes: starting, checking and stopping detached process groups (also used by the tests'
servers); postgres: the cluster run as an unprivileged user; services: the other servers'
command lines and health checks; stack: up, status and down.
"""
