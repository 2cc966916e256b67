"""Where skilltrain caches what it derives from a model: skill indexes, ONNX graphs, unpacked named encoders.

Its own module at the bottom of the layers, because both the encoder loader
(:mod:`skilltrain.encoders.named`) and extraction need it and neither may import the other. The location
itself is skillgen's (:func:`skillgen.common.user_cache_dir`): skillgen's relevance report caches there too.
"""

from __future__ import annotations

from skillgen.common import CACHE_DIR_ENV, user_cache_dir

__all__ = ["CACHE_DIR_ENV", "user_cache_dir"]
