"""GitHub (issue 24): tenants' credentials (a token, or a GitHub App installation whose
short-lived tokens are minted here), and the REST calls the worker makes (the repository, the
pull request). The Git traffic itself goes through the worker's broker (`worker/git_broker.py`).
"""
