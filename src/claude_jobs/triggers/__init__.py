"""Event triggers: S3 objects and EventBridge events become jobs.

`config` (the deployment's versioned trigger list), `templates` (versioned prompt templates),
`service` (event → job), `inputs` (S3 objects into a job's workspace), `aws` (adapters).
"""
