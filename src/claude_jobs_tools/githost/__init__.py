"""A local stand-in for a Git host (issue 24): real smart-HTTP clone and push through
`git http-backend`, and the subset of GitHub's REST API the service uses. For `claude-jobs dev`
and the tests; never shipped."""

from .server import GitHost as GitHost
from .server import HostedApp as HostedApp
