"""The published numbers the zoo table is compared against (docs/zoo.md is generated from the
rows and these constants, secompile/reports.py)."""

# The SE paper, Table 2: GFLOPs (one multiply-add = one FLOP) at 224 x 224 (299 for
# Inception-ResNet-v2): spec file stem -> (network as the paper names it, G multiply-adds).
PAPER_TABLE2 = {
    "resnet50": ("ResNet-50", 3.86), "se_resnet50": ("SE-ResNet-50", 3.87),
    "resnet101": ("ResNet-101", 7.58), "se_resnet101": ("SE-ResNet-101", 7.60),
    "resnet152": ("ResNet-152", 11.30), "se_resnet152": ("SE-ResNet-152", 11.32),
    "resnext50": ("ResNeXt-50 (32x4d)", 4.24), "se_resnext50": ("SE-ResNeXt-50 (32x4d)", 4.25),
    "resnext101_32x4d": ("ResNeXt-101 (32x4d)", 7.99),
    "se_resnext101_32x4d": ("SE-ResNeXt-101 (32x4d)", 8.00),
    "vgg16_bn": ("VGG-16 (BN)", 15.47), "se_vgg16_bn": ("SE-VGG-16 (BN)", 15.48),
    "bn_inception": ("BN-Inception", 2.03), "se_bn_inception": ("SE-BN-Inception", 2.04),
    "inception_resnet_v2": ("Inception-ResNet-v2", 11.75),
    "se_inception_resnet_v2": ("SE-Inception-ResNet-v2", 11.76),
}

# ../shared/reference/caffe/README.md: the authors' prototxt files counted under Caffe's rules
# (conv + fc multiply-adds; params = conv weights and biases, Scale gamma/beta, fc).
CAFFE_REFERENCE = {
    "se_bn_inception": ("SE-BN-Inception.prototxt", 2_033_239_424, 11_931_622),
    "se_resnet50": ("SE-ResNet-50.prototxt", 3_860_488_192, 28_088_024),
    "se_resnet101": ("SE-ResNet-101.prototxt", 7_574_937_600, 49_326_872),
    "se_resnet152": ("SE-ResNet-152.prototxt", 11_288_993_792, 66_821_848),
    "se_resnext50": ("SE-ResNeXt-50.prototxt", 4_232_994_816, 27_559_896),
    "se_resnext101_32x4d": ("SE-ResNeXt-101.prototxt", 7_974_739_968, 48_955_416),
    "senet154": ("SENet-154.prototxt", 20_688_363_520, 115_088_984),
}
# Parameters a README row counts that the network does not have. None since the README was
# corrected: it once gave SE-BN-Inception a weight per channel of its ten two-input SE `Scale`
# layers (6,624 in all), which own no weights.
CAFFE_README_EXTRA_PARAMS: dict = {}

__all__ = ["PAPER_TABLE2", "CAFFE_REFERENCE", "CAFFE_README_EXTRA_PARAMS"]
