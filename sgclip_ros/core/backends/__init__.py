"""Compiled runtimes behind :class:`~sgclip_ros.core.backend.EncoderBackend`.

``onnxruntime_backend`` (CPU / CUDA providers), ``aoti_backend`` (AOTInductor ``.pt2``) and
``tensorrt_backend`` (TensorRT 10 plans). They only LOAD artefacts made by ``training.export``
and ``training.build_engine``; :mod:`sgclip_ros.core.backend_select` picks one.
Optional runtime packages (onnxruntime, tensorrt) are imported only when a backend is built.
"""

from sgclip_ros.core.backends.artefacts import Artefacts, BackendUnavailable, load_artefacts

__all__ = ["Artefacts", "BackendUnavailable", "load_artefacts"]
