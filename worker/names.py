"""Task names: all a sender needs to enqueue work (the API imports this, never the task code)."""

TASK_RUN_JOB = "dqbart.run_job"
