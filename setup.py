"""pip install of the ROS-free core (and, as extras, the training and engine tools).

colcon never reads this file: in a ROS 2 workspace the package is built by CMakeLists.txt.
This is for people who train or evaluate SGClip on a workstation without ROS:
    pip install -e .[training,engines]
"""
from setuptools import find_packages, setup

setup(
    name="sgclip_ros",
    version="0.1.0",
    description="SGClip open-vocabulary video scene-graph model: ROS-free core and training tools",
    license="Apache-2.0",
    python_requires=">=3.10",
    packages=find_packages(include=["sgclip_ros", "sgclip_ros.*", "training", "training.*"]),
    package_data={"sgclip_ros.core": ["model_configs/*.json"]},
    install_requires=[
        "numpy>=1.24",
        "pyyaml>=6.0",
        "opencv-python-headless>=4.8",
        "safetensors>=0.4",
        "scipy>=1.10",
        "torch>=2.4",
        "open_clip_torch==3.3.0",
        "torchvision>=0.19",
    ],
    extras_require={
        "training": ["tqdm>=4.60", "matplotlib>=3.7", "transformers>=4.40"],
        "engines": ["onnx>=1.16", "onnxruntime>=1.18", "onnxscript>=0.1"],
        "bags": ["rosbags>=0.10"],
    },
)
