"""The chain: frame → alpha (→ composite), the part of the data flow between a Source and a
Sink that every path shares.

- :mod:`.build`: :class:`Chain`, built from one MatteConfig (an open engine and a temporal
  filter optional), and the one choice between the host and the all-GPU chain;
- :mod:`.matter`: :class:`Matter`, the engine's steps on the host (preprocess, infer,
  postprocess and upsampling);
- :mod:`.host`: the host chain as pipeline stages (preprocess → infer → alpha/temporal/compose
  → encode);
- :mod:`.gpu`: the all-GPU chain as pipeline stages, over the device runtime and kernels of
  ``streammatte.cuda``.

Below it: ``inference`` (engines), ``cuda`` (device runtime), ``temporal``, ``compose``;
above it: ``api`` (files, stills, the frames API), the commands and the server.
"""

from __future__ import annotations

from .build import Chain, open_configured_engine, resolved_background
from .matter import Matter

__all__ = ["Chain", "Matter", "open_configured_engine", "resolved_background"]
