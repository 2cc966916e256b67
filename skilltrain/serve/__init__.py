"""Skill extraction as a service: ``skilltrain serve`` on Ray Serve.

One module per job: :mod:`~skilltrain.serve.config` (the one config object, printable as a Serve
config file), :mod:`~skilltrain.serve.schema` (request and response bodies, the OpenAPI schema),
:mod:`~skilltrain.serve.messages` (what the two deployments send each other),
:mod:`~skilltrain.serve.api` (the FastAPI app: auth, limits, one-line errors),
:mod:`~skilltrain.serve.ingress` (the HTTP deployment), :mod:`~skilltrain.serve.batching` (the model
deployment, batching across requests), :mod:`~skilltrain.serve.app` (the application builder),
:mod:`~skilltrain.serve.deploy` (starting Serve, deploying, stopping), :mod:`~skilltrain.serve.modeldir` (local or s3:// model dirs, ``/v1/model``),
:mod:`~skilltrain.serve.metrics` (``skilltrain_serve_*``) and :mod:`~skilltrain.serve.cli`.
Everything but ``config``, ``schema``, ``messages`` and ``cli`` needs the ``serve`` extra.
"""
