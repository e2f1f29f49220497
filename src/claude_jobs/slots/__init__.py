"""Slots always come back: the ways a job can leave the system without the write that frees
its tenant's pending and running slots (a message that dead-letters, an item that expires)."""
