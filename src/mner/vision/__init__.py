"""The vision stage: ImageNet attributes, regional features and image vectors of images (paper Eq. 1, §3.3).

    from mner.vision import load_encoder, FeatureCache
    enc = load_encoder("lite0")              # weights from the installed package; nothing is downloaded
    f = enc.encode_file("photo.jpg")         # ImageFeatures: .attributes, .regions (49, C), .vector (C,)

torch and Pillow are imported only when an encoder is loaded or an image is opened.
"""

from mner.vision.cache import FeatureCache
from mner.vision.config import BACKBONES, BackboneSpec, EncoderConfig
from mner.vision.decode import ImageError
from mner.vision.encoder import ImageEncoder, ImageFeatures, imagenet_labels, load_encoder
from mner.vision.extract import ExtractSummary, extract_folder, list_images

__all__ = [
    "BACKBONES",
    "BackboneSpec",
    "EncoderConfig",
    "ExtractSummary",
    "FeatureCache",
    "ImageEncoder",
    "ImageError",
    "ImageFeatures",
    "extract_folder",
    "imagenet_labels",
    "list_images",
    "load_encoder",
]
