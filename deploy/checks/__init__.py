"""Offline checks of the deployment files (Dockerfile, .dockerignore, compose, Kubernetes manifests).

``python -m deploy.checks [--repo models]`` prints one line per problem, ``FILE: KEY: what is wrong``,
and exits 1 if there is any. The tests in tests/unit/deploy run the same checks.
"""
