"""The job service's use cases, independent of HTTP and of AWS: each module one use case over
a shared `ServiceContext`; `claude_jobs.job_service.JobService` puts them behind one object."""
