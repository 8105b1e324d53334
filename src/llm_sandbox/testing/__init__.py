"""Test doubles that ship with the library, so that code built on it can be tested without a real cluster.

``llm_sandbox.testing.fake_kube.FakeKubeServer`` is a small Kubernetes API server: it speaks the real HTTP API for
pods and namespaces and the websocket exec protocol (``v4.channel.k8s.io`` and ``v5.channel.k8s.io``), and backs
every pod with a real local Docker container. The unmodified ``kubernetes`` client talks to it through a
kubeconfig that the server writes. ``llm_sandbox.testing.local.LOCAL_BACKEND`` is a backend entry (pass it as
``backend=``) that runs the guest helper and every command as plain subprocesses of the host, with no isolation at
all, to test the whole path from a session to the guest without an engine. Nothing here is imported by
``import llm_sandbox``.
"""
