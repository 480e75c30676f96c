"""Test-only ComfyUI node pack for tests/test_e2e_server.py. NOT part of the AdaCache pack.

Why it exists: the end-to-end test runs a real ComfyUI server on a tiny random Wan checkpoint,
but Wan's UMT5-XXL text encoder cannot be loaded on the test machines, so the workflow needs
another conditioning source. This pack provides exactly that and nothing else:

- ``AdaCacheTestConditioning``: seed + length -> CONDITIONING ``[[randn(1, length, 4096), {}]]``
  (Wan's text embedding width), drawn from a seeded ``torch.Generator`` so it is reproducible.
  It always re-executes (``fingerprint_inputs`` is new on every queue), so queuing the same
  workflow twice runs the sampler twice while the loader and AdaCache Apply stay cached in the
  server, which is what a user re-queuing a workflow in the UI gets.

Where it lives and how it is loaded: ``tests/e2e_pack/`` in the repository. The pack's own
root ``__init__.py`` never imports it, so it is not shipped as one of the pack's nodes. Only the
test server loads it: the test symlinks this folder into a temporary ``custom_nodes`` folder
named in an ``--extra-model-paths-config`` YAML and whitelists it with
``--disable-all-custom-nodes --whitelist-custom-nodes``.
"""

from __future__ import annotations

import uuid

import torch
from comfy_api.latest import ComfyExtension, io

TEXT_DIM = 4096  # Wan's text embedding width (UMT5-XXL)


class AdaCacheTestConditioning(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="AdaCacheTestConditioning",
            display_name="AdaCache Test Conditioning (test only)",
            category="_for_testing/adacache",
            description="Random text conditioning for tiny test checkpoints (test only).",
            inputs=[
                io.Int.Input("seed", default=0, min=0, max=2**31 - 1, tooltip="Generator seed."),
                io.Int.Input("length", default=8, min=1, max=512, tooltip="Number of tokens."),
            ],
            outputs=[io.Conditioning.Output(tooltip="[[randn(1, length, 4096), {}]]")],
        )

    @classmethod
    def fingerprint_inputs(cls, **kwargs):
        return uuid.uuid4().hex  # re-execute on every queue (see the module docstring)

    @classmethod
    def execute(cls, seed, length) -> io.NodeOutput:
        generator = torch.Generator().manual_seed(seed)
        context = torch.randn(1, length, TEXT_DIM, generator=generator)
        return io.NodeOutput([[context, {}]])


class _TestExtension(ComfyExtension):
    async def get_node_list(self) -> list[type[io.ComfyNode]]:
        return [AdaCacheTestConditioning]


async def comfy_entrypoint() -> _TestExtension:
    return _TestExtension()
