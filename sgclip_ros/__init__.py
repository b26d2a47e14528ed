"""sgclip_ros: open-vocabulary video scene-graph perception (SGClip / ESCA) for ROS 2.

The generated interfaces live beside this package as ``sgclip_ros.msg`` and ``sgclip_ros.srv``
once the package is built with colcon; the core (``sgclip_ros.core``) needs no ROS at all.
"""
__version__ = "0.1.0"

# A source checkout and the colcon install space both hold a `sgclip_ros` folder; the generated
# msg/srv modules exist only in the latter. Merging every `sgclip_ros` on sys.path lets code run
# from the repository root (tests, `python -m`) still find the generated interfaces.
__path__ = __import__("pkgutil").extend_path(__path__, __name__)
