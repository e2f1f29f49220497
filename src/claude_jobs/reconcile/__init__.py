"""The reconciler: the jobs table is the truth, the queue only a wake-up (docs/adr/0001)."""
